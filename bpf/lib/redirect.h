/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seam between the programs and the helpers that move packets between devices.
 * BPF_PROG_TEST_RUN cannot show where a redirect would have gone, so the test build
 * (FN_TEST) records each one in fn_test_redir instead of performing it; the production
 * build calls the helpers directly. Needs fn_test_record() in the test build.
 */
#ifndef FN_LIB_REDIRECT_H
#define FN_LIB_REDIRECT_H

#include "common.h"

#ifdef FN_TEST
FN_INLINE int fn_redirect_peer(__u32 ifindex)
{
	fn_test_record(FN_REDIRECT_PEER, ifindex);
	return TC_ACT_REDIRECT;
}

FN_INLINE int fn_redirect_egress(__u32 ifindex)
{
	fn_test_record(FN_REDIRECT_EGRESS, ifindex);
	return TC_ACT_REDIRECT;
}

FN_INLINE int fn_clone_to(struct __sk_buff *skb, __u32 ifindex)
{
	fn_test_record(FN_REDIRECT_CLONE, ifindex);
	return 0;
}
#else
/* Into the peer's namespace without a second pass through the backlog queue. */
FN_INLINE int fn_redirect_peer(__u32 ifindex)
{
	return bpf_redirect_peer(ifindex, 0);
}

FN_INLINE int fn_redirect_egress(__u32 ifindex)
{
	return bpf_redirect(ifindex, 0);
}

FN_INLINE int fn_clone_to(struct __sk_buff *skb, __u32 ifindex)
{
	return bpf_clone_redirect(skb, ifindex, 0);
}
#endif

#endif
