/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The L2 bridge of a fastnet network, done per port: anti-spoofing, forwarding by the
 * static FDB, flooding, proxy ARP and the hand-off to the host at the gateway MAC.
 *
 * fn_bridge_from_container() returns a negative drop reason or an FN_BR_* outcome
 * (fn_bridge_ret); the entry turns an outcome into a verdict with fn_bridge_verdict(), which
 * also counts it, or hands FN_BR_TO_GATEWAY to the NAT path.
 */
#ifndef FN_LIB_BRIDGE_H
#define FN_LIB_BRIDGE_H

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "arp.h"
#include "metrics.h"
#include "helpers.h"
#include "map_access.h"

/* Values above every TC verdict and below FN_NOT_OURS, so that an outcome never passes for a
 * verdict nor a verdict for an outcome (FN_BR_TO_HOST used to equal TC_ACT_OK). */
enum fn_bridge_outcome {
	FN_BR_TO_HOST = 0x100, /* continue into the host stack */
	FN_BR_TO_GATEWAY,    /* IPv4 to the gateway MAC: the NAT path decides */
	FN_BR_REDIRECTED,    /* fn_redirect_*() already chose the target */
	FN_BR_FLOOD,         /* to every port of the network: fn_tail_flood, a tail call */
	FN_BR_ARP_ANSWERED,  /* reply written in place; send it back out the same port */
};

_Static_assert(FN_BR_TO_HOST > TC_ACT_VALUE_MAX && FN_BR_ARP_ANSWERED < FN_NOT_OURS,
	       "bridge outcomes must not overlap TC verdicts or FN_NOT_OURS");


/* Clones the frame to every port of ep's network but the sender's (fn_tail_flood). */
FN_INLINE int fn_bridge_flood(struct __sk_buff *skb, const struct fn_endpoint *ep)
{
	struct fn_network *net = fn_network_of(ep->net_id);
	struct fn_flood_key key = { .net_id = ep->net_id };
	__u32 self = skb->ingress_ifindex;
	__u32 n, i;

	if (!net)
		return -FN_DROP_NO_NETWORK;
	n = net->flood_ports;
	for (i = 0; i < FN_MAX_FLOOD_PORTS; i++) {
		__u32 *port;

		if (i >= n)
			break;
		key.slot = i;
		port = fn_flood_port(&key);
		if (port && *port != self)
			fn_clone_to(skb, *port);
	}
	return 0;
}

FN_INLINE fn_bridge_ret fn_bridge_arp(struct __sk_buff *skb, const struct fn_endpoint *ep,
			    struct ethhdr *eth, void *data_end)
{
	struct fn_arp *arp = fn_arp_header(eth + 1, data_end);
	struct fn_network *net;
	struct fn_ip_entry *peer;

	if (!arp)
		return -FN_DROP_MALFORMED_ARP;
	/* A probe (RFC 5227) has sender address 0; anything else must be the port's own. */
	if (!fn_mac_equal(arp->sha, ep->mac) || (arp->spa != ep->ipv4 && arp->spa != 0))
		return -FN_DROP_SPOOF_ARP;
	if (arp->op != bpf_htons(FN_ARP_REQUEST))
		return -FN_DROP_ARP_REPLY;

	net = fn_network_of(ep->net_id);
	if (!net)
		return -FN_DROP_NO_NETWORK;
	if (arp->tpa == net->gateway) {
		fn_arp_answer(eth, arp, net->gateway_mac);
		return FN_BR_ARP_ANSWERED;
	}
	peer = fn_ipcache_of(arp->tpa);
	if (peer && peer->net_id == ep->net_id && arp->tpa != ep->ipv4) {
		fn_arp_answer(eth, arp, peer->mac);
		return FN_BR_ARP_ANSWERED;
	}
	return -FN_DROP_ARP_UNKNOWN;
}

/* IEEE 802.1D reserved group addresses 01:80:c2:00:00:0x: never bridged. */
FN_INLINE int fn_mac_is_link_local(const __u8 *mac)
{
	return mac[0] == 0x01 && mac[1] == 0x80 && mac[2] == 0xc2 && mac[3] == 0 && mac[4] == 0 &&
	       (mac[5] & 0xf0) == 0;
}

FN_INLINE fn_bridge_ret fn_bridge_ipv4(struct __sk_buff *skb, const struct fn_endpoint *ep,
			     struct ethhdr *eth, void *data_end, __u32 *peer)
{
	struct iphdr *ip = fn_ipv4_header(skb, eth + 1, data_end);
	struct fn_fdb_key key = { .net_id = ep->net_id };
	struct fn_fdb_entry *dst;

	if (!ip)
		return -FN_DROP_MALFORMED_IP;
	if (ip->saddr != ep->ipv4)
		return -FN_DROP_SPOOF_IP;
	if (fn_mac_is_group(eth->h_dest))
		return FN_BR_FLOOD;

	fn_mac_copy(key.mac, eth->h_dest);
	dst = fn_fdb_of(&key);
	if (!dst)
		return -FN_DROP_UNKNOWN_DST_MAC;
	if (fn_likely(!(dst->flags & FN_FDB_F_GATEWAY))) {
		if (dst->ifindex == skb->ingress_ifindex)
			return -FN_DROP_OWN_MAC;
		*peer = dst->ifindex;
		return FN_BR_REDIRECTED;
	}

	/* Routed by the host: never into a container of another network. */
	{
		struct fn_ip_entry *target = fn_ipcache_of(ip->daddr);

		if (target && target->net_id != ep->net_id)
			return -FN_DROP_ISOLATION;
	}
	return FN_BR_TO_GATEWAY;
}

/* The verdict for a frame from a container; *peer is the port a FN_BR_REDIRECTED goes to. */
FN_INLINE fn_bridge_ret fn_bridge_from_container(struct __sk_buff *skb, __u32 *peer)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_endpoint *ep;

	if ((void *)(eth + 1) > data_end)
		return -FN_DROP_MALFORMED_ETH;
	/* ingress_ifindex, not ifindex: a test run can set it without a real device. */
	ep = fn_endpoint_of(skb->ingress_ifindex);
	if (!ep)
		return -FN_DROP_NO_ENDPOINT;
	if (!fn_mac_equal(eth->h_source, ep->mac))
		return -FN_DROP_SPOOF_MAC;
	/* veth moves an outer 802.1Q tag out of the frame before TC sees it */
	if (skb->vlan_present)
		return -FN_DROP_VLAN;
	if (fn_mac_is_link_local(eth->h_dest))
		return -FN_DROP_LINK_LOCAL;

	switch (eth->h_proto) {
	case fn_htons_c(ETH_P_IP):
		return fn_bridge_ipv4(skb, ep, eth, data_end, peer);
	case fn_htons_c(ETH_P_ARP):
		return fn_bridge_arp(skb, ep, eth, data_end);
	case fn_htons_c(ETH_P_8021Q):
	case fn_htons_c(ETH_P_8021AD):
		return -FN_DROP_VLAN;
	default:
		/* Other protocols are bridged only as broadcast (e.g. IPv6 neighbour discovery
		 * stays inside the network); fastnet does not route or police them. */
		if (fn_mac_is_group(eth->h_dest))
			return FN_BR_FLOOD;
		return -FN_DROP_UNSUPPORTED_L3;
	}
}

/* outcome: an enum fn_bridge_outcome other than FN_BR_TO_GATEWAY (the NAT path's) */
FN_INLINE fn_tc_ret fn_bridge_verdict(struct __sk_buff *skb, __u32 prog, enum fn_bridge_outcome outcome,
				     __u32 peer)
{
	switch (outcome) {
	case FN_BR_REDIRECTED:
		fn_count(skb, prog, FN_FWD_PEER);
		return fn_redirect_peer(peer);
	case FN_BR_FLOOD:
		fn_tail_call(skb, FN_TAIL_FLOOD);
		return -FN_DROP_TAIL_CALL;
	case FN_BR_ARP_ANSWERED:
		fn_count(skb, prog, FN_FWD_ARP_REPLY);
		return fn_redirect_egress(skb->ingress_ifindex);
	default:
		fn_count(skb, prog, FN_FWD_HOST);
		return TC_ACT_OK;
	}
}

#endif
