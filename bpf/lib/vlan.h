/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 802.1Q sub-interfaces without the kernel's 8021q driver (control/drivers.py): IF.VLAN is
 * one end of a veth pair and these programs make it behave like a VLAN device of the parent:
 *
 *   wire --tag VID--> parent (fn_from_parent / fn_from_uplink) --untagged--> tagger egress
 *                                                                 == veth ==> IF.VLAN
 *   IF.VLAN == veth ==> tagger (fn_from_tagger) --tag VID--> parent egress --> wire
 *
 * macvlan and ipvlan devices then sit on IF.VLAN as on any interface.
 */
#ifndef FN_LIB_VLAN_H
#define FN_LIB_VLAN_H

#include "common.h"
#include "eth.h"
#include "metrics.h"
#include "helpers.h"
#include "map_access.h"

#define FN_VLAN_VID_MASK 0x0fff

struct fn_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* FN_NOT_OURS: not a frame of a sub-interface */
FN_INLINE fn_claim_ret fn_vlan_from_parent(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_vlan_key key = { .ifindex = skb->ingress_ifindex };
	struct fn_vlan *v;

	/* The stack moves the outer tag into skb->vlan_tci before TC ingress; a test run (and
	 * a driver that does not) leaves it in the frame. */
	if (fn_vlan_tagged(skb)) {
		key.vid = fn_vlan_tci(skb) & FN_VLAN_VID_MASK;
	} else {
		struct fn_vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end || eth->h_proto != fn_htons_c(ETH_P_8021Q))
			return FN_NOT_OURS;
		key.vid = bpf_ntohs(vh->tci) & FN_VLAN_VID_MASK;
	}
	if (!key.vid)
		return FN_NOT_OURS;
	v = fn_vlan_of(&key);
	if (!v)
		return FN_NOT_OURS; /* another VLAN: the host's (which has no 802.1Q) */
	if (bpf_skb_vlan_pop(skb))
		return -FN_DROP_VLAN_TAG;
	fn_count(skb, prog, FN_FWD_VLAN_IN);
	return fn_redirect_egress(v->ifindex);
}

FN_INLINE fn_tc_ret fn_vlan_from_tagger(struct __sk_buff *skb, __u32 prog)
{
	struct fn_vlan_key key = { .ifindex = skb->ingress_ifindex, .vid = 0 };
	struct fn_vlan *v = fn_vlan_of(&key);

	if (!v)
		return -FN_DROP_NO_ENDPOINT;
	/* Into skb->vlan_tci: the device (or the stack, for one without VLAN offload) writes
	 * the tag into the frame on transmit. */
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), v->vid))
		return -FN_DROP_VLAN_TAG;
	fn_count(skb, prog, FN_FWD_VLAN_OUT);
	return fn_redirect_egress(v->ifindex);
}

#endif
