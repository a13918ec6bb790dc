/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counting and dropping. Helpers return a counter id (negated for drops) and only the
 * entry point turns it into a verdict, through fn_drop() or fn_count(), so that every
 * drop is counted in exactly one place.
 * Needs fn_metric_slot() from the map accessor section of fastnet.c.
 */
#ifndef FN_LIB_METRICS_H
#define FN_LIB_METRICS_H

#include "common.h"
#include "map_access.h"

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
