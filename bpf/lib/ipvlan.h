/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ipvlan built from veth and TC programs (this kernel has no ipvlan module; see
 * control/drivers.py for why fastnet always takes this path):
 *
 *   container eth0 (MAC = parent's) ==veth== host end (fn_from_ipvlan)
 *        |-- to a sibling's address on the same parent --> bpf_redirect_peer(sibling)
 *        |-- l2: anything else ------------------------> bpf_redirect(parent) as it is
 *        `-- l3: anything else ------------------------> bpf_redirect_neigh(parent): host FIB
 *   parent (fn_from_parent, or first thing in fn_from_uplink)
 *        |-- IPv4 to a container address, to the parent's MAC --> bpf_redirect_peer(container)
 *        |-- l2: ARP whose target is a container -----------------> bpf_redirect_peer(container)
 *        `-- anything else --------------------------------------> the host, untouched
 *
 * Every container is seen on the wire with the parent's MAC. In l2 the container answers
 * ARP for its own address itself (its MAC is the parent's); in l3 its interface is NOARP
 * and ARP for it is never answered: the segment's router routes the subnet to the host.
 */
#ifndef FN_LIB_IPVLAN_H
#define FN_LIB_IPVLAN_H

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "arp.h"
#include "metrics.h"
#include "helpers.h"
#include "map_access.h"

/* FN_NOT_OURS: the frame is not an ipvlan container's */
FN_INLINE fn_claim_ret fn_ipvlan_from_parent(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_ipvlan_key key = { .parent_ifindex = skb->ingress_ifindex };
	struct fn_ipvlan_dst *dst;
	int is_arp = 0;

	/* A tag the stack took out of the frame is another VLAN's (its own are untagged, and a
	 * sub-interface's were popped by fn_vlan_from_parent): not the parent's segment. */
	if ((void *)(eth + 1) > data_end || fn_vlan_tagged(skb))
		return FN_NOT_OURS;
	if (eth->h_proto == fn_htons_c(ETH_P_IP)) {
		struct iphdr *ip = fn_ipv4_header(skb, eth + 1, data_end);

		if (!ip)
			return FN_NOT_OURS; /* the host stack judges malformed traffic */
		key.ipv4 = ip->daddr;
	} else if (eth->h_proto == fn_htons_c(ETH_P_ARP)) {
		struct fn_arp *arp = fn_arp_header(eth + 1, data_end);

		if (!arp)
			return FN_NOT_OURS;
		key.ipv4 = arp->tpa;
		is_arp = 1;
	} else {
		return FN_NOT_OURS;
	}
	dst = fn_ipvlan_dst_of(&key);
	if (!dst)
		return FN_NOT_OURS;
	if (is_arp) {
		/* l3: nobody on the wire learns a container's address from ARP */
		if (dst->flags & FN_IPVLAN_F_L3)
			return FN_NOT_OURS;
		if (!fn_mac_is_group(eth->h_dest) && !fn_mac_equal(eth->h_dest, dst->mac))
			return FN_NOT_OURS;
	} else if (!fn_mac_equal(eth->h_dest, dst->mac)) {
		return FN_NOT_OURS; /* another station's frame seen in promiscuous mode */
	}
	fn_count(skb, prog, FN_FWD_IPVLAN_IN);
	return fn_redirect_peer(dst->ifindex);
}

FN_INLINE fn_tc_ret fn_ipvlan_from_container(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_ipvlan_key key = {};
	struct fn_ipvlan_port *port;
	struct fn_ipvlan_dst *dst;

	if ((void *)(eth + 1) > data_end)
		return -FN_DROP_MALFORMED_ETH;
	port = fn_ipvlan_port_of(skb->ingress_ifindex);
	if (!port)
		return -FN_DROP_NO_ENDPOINT;
	if (!fn_mac_equal(eth->h_source, port->mac))
		return -FN_DROP_SPOOF_MAC;
	if (skb->vlan_present)
		return -FN_DROP_VLAN;
	key.parent_ifindex = port->parent_ifindex;

	if (eth->h_proto == fn_htons_c(ETH_P_IP)) {
		struct iphdr *ip = fn_ipv4_header(skb, eth + 1, data_end);

		if (!ip)
			return -FN_DROP_MALFORMED_IP;
		if (ip->saddr != port->ipv4)
			return -FN_DROP_SPOOF_IP;
		key.ipv4 = ip->daddr;
	} else if (eth->h_proto == fn_htons_c(ETH_P_ARP)) {
		struct fn_arp *arp;

		if (port->flags & FN_IPVLAN_F_L3)
			return -FN_DROP_IPVLAN_L3_ARP;
		arp = fn_arp_header(eth + 1, data_end);
		if (!arp)
			return -FN_DROP_MALFORMED_ARP;
		/* A probe (RFC 5227) has sender address 0; anything else must be the port's own. */
		if (!fn_mac_equal(arp->sha, port->mac) || (arp->spa != port->ipv4 && arp->spa != 0))
			return -FN_DROP_SPOOF_ARP;
		key.ipv4 = arp->tpa;
	} else if (eth->h_proto == fn_htons_c(ETH_P_8021Q) || eth->h_proto == fn_htons_c(ETH_P_8021AD)) {
		return -FN_DROP_VLAN;
	} else {
		return -FN_DROP_UNSUPPORTED_L3; /* IPv4 and ARP only, as on every fastnet port */
	}

	dst = fn_ipvlan_dst_of(&key);
	if (dst) {
		if (dst->ifindex == skb->ingress_ifindex)
			return -FN_DROP_OWN_MAC;
		fn_count(skb, prog, FN_FWD_PEER);
		return fn_redirect_peer(dst->ifindex);
	}
	if (port->flags & FN_IPVLAN_F_L3) {
		fn_count(skb, prog, FN_FWD_IPVLAN_ROUTED);
		return fn_redirect_neigh(port->parent_ifindex);
	}
	fn_count(skb, prog, FN_FWD_IPVLAN_OUT);
	return fn_redirect_egress(port->parent_ifindex);
}

#endif
