/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Overlay networks across hosts: VXLAN with eBPF tunnel keys (control/netdrivers/overlay.py).
 *
 *   host A                                                  host B
 *   container ==veth== fn_from_container                    fn_from_vxlan ==peer==> container
 *                        | unknown dst MAC / ARP               ^ VNI -> network, inner source
 *                        v (tail call)                         | = a container of the remote
 *                      fn_tail_overlay                         |
 *                        | (VNI, dst IPv4) in fn_ovl_remotes   |
 *                        | -> tunnel key {VNI, host B}         |
 *                        `-> bpf_redirect(VXLAN device) ==UDP 4789 over the underlay==
 *
 * A container of the overlay reaches the containers of its network on this host exactly as
 * on a bridge network (fn_from_container); only what no port of this host answers comes here.
 * ARP for a container of another host is answered from fn_ovl_remotes (its MAC is in the
 * entry): nothing is flooded across hosts. Broadcasts stay on this host.
 *
 * Needs fn_ovl_net_of(), fn_ovl_vni_net(), fn_ovl_remote_of() from fastnet.c's accessors.
 */
#ifndef FN_LIB_OVERLAY_H
#define FN_LIB_OVERLAY_H

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "arp.h"
#include "metrics.h"
#include "helpers.h"
#include "map_access.h"
#include "bridge.h"

/* fn_overlay_ret: an enum fn_overlay_outcome, or a negated drop reason. The values lie above
 * every TC verdict and bridge outcome and below FN_NOT_OURS (lib/metrics.h). */
typedef int fn_overlay_ret;

enum fn_overlay_outcome {
	FN_OVL_SENT = 0x180,    /* tunnel key set: out of the VXLAN device */
	FN_OVL_ARP_ANSWERED,    /* reply written in place; send it back out the same port */
};

_Static_assert(FN_OVL_SENT > FN_BR_ARP_ANSWERED && FN_OVL_ARP_ANSWERED < FN_NOT_OURS,
	       "overlay outcomes must not overlap TC verdicts, bridge outcomes or FN_NOT_OURS");

/* ---- the tunnel key: the test build's seam (a test run's skb carries no tunnel) ---------- */
#ifdef FN_TEST
FN_INLINE int fn_set_tunnel(struct __sk_buff *skb, __u32 vni, __be32 remote)
{
	struct fn_test_state *t = fn_test_state_get();

	if (t) {
		t->tun_id = vni;
		t->tun_remote = bpf_ntohl(remote);
	}
	return 0;
}

FN_INLINE int fn_get_tunnel(struct __sk_buff *skb, __u32 *vni, __be32 *remote)
{
	struct fn_test_state *t = fn_test_state_get();

	if (!t || !t->tun_remote)
		return -1;
	*vni = t->tun_id;
	*remote = bpf_htonl(t->tun_remote);
	return 0;
}
#else
FN_INLINE int fn_set_tunnel(struct __sk_buff *skb, __u32 vni, __be32 remote)
{
	struct bpf_tunnel_key key;

	__builtin_memset(&key, 0, sizeof(key));
	key.tunnel_id = vni;
	key.remote_ipv4 = bpf_ntohl(remote);  /* the helper takes host order */
	key.tunnel_ttl = 64;
	return bpf_skb_set_tunnel_key(skb, &key, sizeof(key), 0);
}

FN_INLINE int fn_get_tunnel(struct __sk_buff *skb, __u32 *vni, __be32 *remote)
{
	struct bpf_tunnel_key key;

	__builtin_memset(&key, 0, sizeof(key));
	if (bpf_skb_get_tunnel_key(skb, &key, sizeof(key), 0))
		return -1;
	*vni = key.tunnel_id;
	*remote = bpf_htonl(key.remote_ipv4);
	return 0;
}
#endif

/* ARP for a container of another host on the sender's overlay: answered with its MAC. */
FN_INLINE fn_overlay_ret fn_overlay_arp(const struct fn_endpoint *ep, const struct fn_ovl_net *ovl,
			     struct ethhdr *eth, void *data_end)
{
	struct fn_arp *arp = fn_arp_header(eth + 1, data_end);
	struct fn_ovl_remote *r;

	if (!arp)
		return -FN_DROP_MALFORMED_ARP;
	if (!fn_mac_equal(arp->sha, ep->mac) || (arp->spa != ep->ipv4 && arp->spa != 0))
		return -FN_DROP_SPOOF_ARP;
	if (arp->op != bpf_htons(FN_ARP_REQUEST))
		return -FN_DROP_ARP_REPLY;
	r = fn_ovl_remote_of(ovl->vni, arp->tpa);
	if (!r)
		return -FN_DROP_ARP_UNKNOWN;
	fn_arp_answer(eth, arp, r->mac);
	return FN_OVL_ARP_ANSWERED;
}

/* Unicast IPv4 to a container of another host on the sender's overlay: the tunnel key. */
FN_INLINE fn_overlay_ret fn_overlay_ipv4(struct __sk_buff *skb, const struct fn_endpoint *ep,
			      const struct fn_ovl_net *ovl, struct ethhdr *eth, void *data_end)
{
	struct iphdr *ip = fn_ipv4_header(skb, eth + 1, data_end);
	struct fn_ovl_remote *r;

	if (!ip)
		return -FN_DROP_MALFORMED_IP;
	if (ip->saddr != ep->ipv4)
		return -FN_DROP_SPOOF_IP;
	r = fn_ovl_remote_of(ovl->vni, ip->daddr);
	/* the MAC must be the one ARP gave for that address: no frame to a stranger's MAC */
	if (!r || !fn_mac_equal(eth->h_dest, r->mac))
		return -FN_DROP_UNKNOWN_DST_MAC;
	if (fn_set_tunnel(skb, ovl->vni, r->host))
		return -FN_DROP_OVERLAY_TUNNEL;
	return FN_OVL_SENT;
}

/* A frame fn_from_container found no port of this host for (fn_tail_overlay); *out is the
 * VXLAN device an FN_OVL_SENT leaves by. */
FN_INLINE fn_overlay_ret fn_overlay_from_container(struct __sk_buff *skb, __u32 *out)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_endpoint *ep;
	struct fn_ovl_net *ovl;
	int is_arp;

	if ((void *)(eth + 1) > data_end)
		return -FN_DROP_MALFORMED_ETH;
	is_arp = eth->h_proto == fn_htons_c(ETH_P_ARP);
	ep = fn_endpoint_of(skb->ingress_ifindex);
	if (!ep)
		return -FN_DROP_NO_ENDPOINT;
	/* fn_from_container checked this before it called, as everything below: again, so that
	 * what this program forwards never depends on who called it */
	if (!fn_mac_equal(eth->h_source, ep->mac))
		return -FN_DROP_SPOOF_MAC;
	ovl = fn_ovl_net_of(ep->net_id);
	if (!ovl) /* a bridge network: what fn_from_container found */
		return is_arp ? -FN_DROP_ARP_UNKNOWN : -FN_DROP_UNKNOWN_DST_MAC;
	if (is_arp)
		return fn_overlay_arp(ep, ovl, eth, data_end);
	if (eth->h_proto != fn_htons_c(ETH_P_IP) || fn_mac_is_group(eth->h_dest))
		return -FN_DROP_UNKNOWN_DST_MAC;
	*out = ovl->vxlan_ifindex;
	return fn_overlay_ipv4(skb, ep, ovl, eth, data_end);
}

FN_INLINE fn_tc_ret fn_overlay_verdict(struct __sk_buff *skb, __u32 prog, fn_overlay_ret outcome, __u32 out)
{
	if (outcome == FN_OVL_ARP_ANSWERED) {
		fn_count(skb, prog, FN_FWD_ARP_REPLY);
		return fn_redirect_egress(skb->ingress_ifindex);
	}
	fn_count(skb, prog, FN_FWD_OVERLAY_OUT);
	return fn_redirect_egress(out);
}

/*
 * A frame from the VXLAN device (fn_from_vxlan): its VNI names the overlay network, its
 * inner source must be a container the store places on the tunnel's remote host, and its
 * destination a port of that network on this host (*peer). IPv4 only: ARP never crosses.
 */
FN_INLINE int fn_overlay_from_vxlan(struct __sk_buff *skb, __u32 *peer)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_ovl_remote *r;
	struct fn_ip_entry *target;
	struct iphdr *ip;
	__be32 remote;
	__u32 vni, *net_id;

	if (fn_get_tunnel(skb, &vni, &remote))
		return -FN_DROP_OVERLAY_VNI;
	net_id = fn_ovl_vni_net(vni);
	if (!net_id)
		return -FN_DROP_OVERLAY_VNI;
	if ((void *)(eth + 1) > data_end)
		return -FN_DROP_MALFORMED_ETH;
	if (eth->h_proto != fn_htons_c(ETH_P_IP))
		return -FN_DROP_UNSUPPORTED_L3;
	ip = fn_ipv4_header(skb, eth + 1, data_end);
	if (!ip)
		return -FN_DROP_MALFORMED_IP;
	r = fn_ovl_remote_of(vni, ip->saddr);
	if (!r || r->host != remote || !fn_mac_equal(eth->h_source, r->mac))
		return -FN_DROP_OVERLAY_SPOOF;
	/* One lookup of the destination address names the port (a gateway is no container: not
	 * there); the MAC must be that port's: no frame to one container with another's address. */
	target = fn_ipcache_of(ip->daddr);
	if (!target || target->net_id != *net_id)
		return -FN_DROP_UNKNOWN_DST_MAC;
	if (!fn_mac_equal(eth->h_dest, target->mac))
		return -FN_DROP_ISOLATION;
	*peer = target->ifindex;
	return 0;
}

#endif
