/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seam between the programs and the helpers a test run cannot observe or control:
 * moving packets between devices, the clock, the host's routing table and device MTUs, and
 * the skb's shape (its linear part, an 802.1Q tag the stack took out of the frame). The test build (FN_TEST) records each
 * redirect in fn_test_state instead of performing it, reads the time from there and routes by
 * fn_test_fib; the production build calls the helpers directly.
 */
#ifndef FN_LIB_HELPERS_H
#define FN_LIB_HELPERS_H

#include "common.h"
#include "map_access.h"

#ifdef FN_TEST
FN_INLINE void fn_test_record(__u32 kind, __u32 ifindex)
{
	struct fn_test_state *t = fn_test_state_get();

	if (t && t->count < FN_TEST_MAX_REDIRECTS) {
		__u32 i = t->count;

		t->ifindex[i] = ifindex;
		t->kind[i] = kind;
		t->count = i + 1;
	}
}

FN_INLINE __u64 fn_test_now(void)
{
	struct fn_test_state *t = fn_test_state_get();

	return t ? t->now : 0;
}

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

FN_INLINE int fn_redirect_neigh(__u32 ifindex)
{
	fn_test_record(FN_REDIRECT_NEIGH, ifindex);
	return TC_ACT_REDIRECT;
}

FN_INLINE int fn_clone_to(struct __sk_buff *skb, __u32 ifindex)
{
	fn_test_record(FN_REDIRECT_CLONE, ifindex);
	return 0;
}

FN_INLINE __u64 fn_now(void)
{
	return fn_test_now();
}

/* A linear part shorter than the frame (until the program pulls): what a NIC that keeps only
 * the first bytes linear hands TC. The run's skb itself is always linear. */
FN_INLINE __u32 fn_linear_len(struct __sk_buff *skb)
{
	struct fn_test_state *t = fn_test_state_get();
	__u32 len = (long)skb->data_end - (long)skb->data;

	if (t && t->linear && !t->pulled && t->linear < len)
		len = t->linear;
	return len;
}

FN_INLINE long fn_pull_data(struct __sk_buff *skb, __u32 len)
{
	struct fn_test_state *t = fn_test_state_get();

	if (t)
		t->pulled = len;
	return bpf_skb_pull_data(skb, len);
}

/* The outer 802.1Q tag the stack moves out of the frame before TC (a run cannot set it). */
FN_INLINE int fn_vlan_tagged(struct __sk_buff *skb)
{
	struct fn_test_state *t = fn_test_state_get();

	return t && t->vlan;
}

FN_INLINE __u32 fn_vlan_tci(struct __sk_buff *skb)
{
	struct fn_test_state *t = fn_test_state_get();

	return t ? t->vlan & 0xffff : 0;
}

/* bpf_check_mtu on the test's device MTUs (fn_test_state.mtu; 1500 for the others): 0 when
 * the packet fits, else the MTU. A GSO packet (the run's ctx sets gso_size) fits when each
 * segment does: IP and transport headers plus gso_size, as skb_gso_validate_network_len. */
FN_INLINE __u32 fn_check_mtu(struct __sk_buff *skb, __u32 ifindex)
{
	struct fn_test_state *t = fn_test_state_get();
	__u32 mtu = 1500, len = skb->len - ETH_HLEN, i;
	__u8 b;

	if (t) {
		for (i = 0; i < FN_TEST_MAX_MTUS; i++)
			if (t->mtu_ifindex[i] == ifindex && t->mtu[i])
				mtu = t->mtu[i];
	}
	if (skb->gso_size) {
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &b, 1))
			return 0;
		len = (b & 0xf) * 4;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + len + 12, &b, 1)) /* TCP data offset */
			return 0;
		len += (b >> 4) * 4 + skb->gso_size;
	}
	return len > mtu ? mtu : 0;
}

/* The routing table of the test (fn_test_fib): no entry is "no route", which the kernel
 * answers BPF_FIB_LKUP_RET_NOT_FWDED. */
FN_INLINE long fn_fib_lookup(struct __sk_buff *skb, struct bpf_fib_lookup *p, __u32 flags)
{
	struct fn_test_fib_key key = { .prefixlen = 32 };
	struct fn_test_route *r;

	__builtin_memcpy(key.addr, &p->ipv4_dst, 4);
	r = fn_test_fib_of(&key);
	if (!r)
		return BPF_FIB_LKUP_RET_NOT_FWDED;
	if (r->ret == BPF_FIB_LKUP_RET_SUCCESS) {
		p->ifindex = r->ifindex;
		if (flags & FN_FIB_LOOKUP_SRC)
			p->ipv4_src = r->src;
	}
	return r->ret;
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

/* Out of the device with the next hop's MAC resolved by the kernel's neighbour table.
 * bcc 0.26 declares the pre-5.13 prototype (3 arguments): call the helper by its id. */
static long (*fn_bpf_redirect_neigh)(__u32 ifindex, void *params, int plen, __u64 flags) =
	(void *)BPF_FUNC_redirect_neigh;

FN_INLINE int fn_redirect_neigh(__u32 ifindex)
{
	return fn_bpf_redirect_neigh(ifindex, NULL, 0, 0);
}

FN_INLINE int fn_clone_to(struct __sk_buff *skb, __u32 ifindex)
{
	return bpf_clone_redirect(skb, ifindex, 0);
}

FN_INLINE __u64 fn_now(void)
{
	return bpf_ktime_get_ns();
}

FN_INLINE long fn_fib_lookup(struct __sk_buff *skb, struct bpf_fib_lookup *p, __u32 flags)
{
	return bpf_fib_lookup(skb, p, sizeof(*p), flags);
}

FN_INLINE __u32 fn_linear_len(struct __sk_buff *skb)
{
	return (long)skb->data_end - (long)skb->data;
}

/* 0 when the packet fits out of ifindex (a GSO packet: each of its segments), else the
 * device's MTU. */
FN_INLINE __u32 fn_check_mtu(struct __sk_buff *skb, __u32 ifindex)
{
	__u32 mtu = 0;

	return bpf_check_mtu(skb, ifindex, &mtu, 0, FN_MTU_CHK_SEGS) > 0 ? mtu : 0;
}

FN_INLINE long fn_pull_data(struct __sk_buff *skb, __u32 len)
{
	return bpf_skb_pull_data(skb, len);
}

FN_INLINE int fn_vlan_tagged(struct __sk_buff *skb)
{
	return skb->vlan_present;
}

FN_INLINE __u32 fn_vlan_tci(struct __sk_buff *skb)
{
	return skb->vlan_tci;
}
#endif

#define FN_NSEC_PER_SEC 1000000000ULL

#endif
