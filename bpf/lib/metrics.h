/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counting and dropping. Helpers return a counter id (negated for drops) and only the
 * entry point turns it into a verdict, through fn_drop() or fn_count(), so that every
 * drop is counted in exactly one place.
 *
 * What a helper returns belongs to one of three number spaces, kept apart by value (checked
 * below) and named by the helper's return type:
 *   fn_tc_ret     a TC_ACT_* verdict (0..TC_ACT_VALUE_MAX; TC_ACT_UNSPEC is never returned),
 *                 or a drop reason negated (-enum fn_counter)
 *   fn_bridge_ret an enum fn_bridge_outcome (lib/bridge.h: a decision, not yet a verdict),
 *                 or a drop reason negated
 *   fn_claim_ret  an fn_tc_ret, or FN_NOT_OURS: the frame is none of this helper's business
 *                 (the entry tries the next helper, or leaves the frame to the host uncounted)
 */
#ifndef FN_LIB_METRICS_H
#define FN_LIB_METRICS_H

#include "common.h"
#include "map_access.h"

typedef int fn_tc_ret;
typedef int fn_bridge_ret;
typedef int fn_claim_ret;

#define FN_NOT_OURS 0x200

_Static_assert(FN_NOT_OURS > TC_ACT_VALUE_MAX, "FN_NOT_OURS must not be a TC verdict");

FN_INLINE void fn_count_bytes(__u32 prog, __u32 counter, __u32 bytes)
{
	struct fn_metric *m = fn_metric_slot(prog * FN_COUNTER_SLOTS + counter);

	if (m) {
		m->packets++;
		m->bytes += bytes;
	}
}

/* Counts the packet as it arrived (call before rewriting it to another length). */
FN_INLINE void fn_count(struct __sk_buff *skb, __u32 prog, __u32 counter)
{
	fn_count_bytes(prog, counter, skb->len);
}

FN_INLINE int fn_drop(struct __sk_buff *skb, __u32 prog, __u32 reason)
{
	fn_count(skb, prog, reason);
	return TC_ACT_SHOT;
}

#endif
