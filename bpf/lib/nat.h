/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Address translation: creating a flow's two conntrack entries (SNAT, DNAT, hairpin) and
 * rewriting a packet to the tuple its entry holds.
 */
#ifndef FN_LIB_NAT_H
#define FN_LIB_NAT_H

#include "common.h"
#include "csum.h"
#include "ct.h"
#include "eth.h"
#include "helpers.h"
#include "l4.h"
#include "route.h"
#include "service.h"

/* Rewrites the packet from l4->key to the entry's tuple. 0 or -FN_DROP_CSUM. */
FN_INLINE int fn_nat_apply(struct __sk_buff *skb, const struct fn_l4 *l4, const struct fn_ct_entry *e)
{
	/* TCP and UDP checksums cover the addresses (pseudo-header); ICMP's does not. */
	__u32 pseudo_csum_off = l4->key.proto == IPPROTO_ICMP ? 0 : l4->csum_off;

	if (fn_rewrite_addr(skb, FN_IP_SADDR_OFF, l4->key.saddr, e->to_saddr, pseudo_csum_off, l4->csum_flags) ||
	    fn_rewrite_addr(skb, FN_IP_DADDR_OFF, l4->key.daddr, e->to_daddr, pseudo_csum_off, l4->csum_flags))
		return -FN_DROP_CSUM;
	if (l4->frag == FN_FRAG_LATER)
		return 0; /* no transport header here: the first fragment's carried the changes */
	if (l4->key.proto == IPPROTO_ICMP) {
		if (fn_rewrite_port(skb, l4->l4_off + 4, l4->key.sport, e->to_sport, l4->csum_off, 0))
			return -FN_DROP_CSUM;
		return 0;
	}
	if (fn_rewrite_port(skb, l4->l4_off, l4->key.sport, e->to_sport, l4->csum_off, l4->csum_flags) ||
	    fn_rewrite_port(skb, l4->l4_off + 2, l4->key.dport, e->to_dport, l4->csum_off, l4->csum_flags))
		return -FN_DROP_CSUM;
	return 0;
}

/* Rewrites 4 bytes inside an ICMP error's quoted packet, fixing the quoted IP checksum and
 * the ICMP checksum (which covers the quoted packet, including that IP checksum). */
FN_INLINE int fn_icmp_inner_rewrite32(struct __sk_buff *skb, __u32 off, __be32 old, __be32 new,
				      __u32 inner_ip_csum_off, __u32 icmp_csum_off)
{
	__be16 csum_old, csum_new;

	if (old == new)
		return 0;
	if (bpf_skb_load_bytes(skb, inner_ip_csum_off, &csum_old, 2) ||
	    bpf_skb_store_bytes(skb, off, &new, 4, 0) ||
	    bpf_l3_csum_replace(skb, inner_ip_csum_off, old, new, 4) ||
	    bpf_skb_load_bytes(skb, inner_ip_csum_off, &csum_new, 2) ||
	    bpf_l4_csum_replace(skb, icmp_csum_off, old, new, 4) ||
	    bpf_l4_csum_replace(skb, icmp_csum_off, csum_old, csum_new, 2))
		return -1;
	return 0;
}

FN_INLINE int fn_icmp_inner_rewrite16(struct __sk_buff *skb, __u32 off, __be16 old, __be16 new, __u32 icmp_csum_off)
{
	if (old == new)
		return 0;
	if (bpf_skb_store_bytes(skb, off, &new, 2, 0) || bpf_l4_csum_replace(skb, icmp_csum_off, old, new, 2))
		return -1;
	return 0;
}

/* Do packets arriving from outside match this entry: an SNAT flow's replies, or a published
 * port's client (not a hairpin flow's, whose both ends are containers)? */
FN_INLINE int fn_ct_from_outside(const struct fn_ct_entry *e)
{
	if (e->flags & FN_CT_F_HAIRPIN)
		return 0;
	if (e->flags & FN_CT_F_REPLY)
		return (e->flags & FN_CT_F_SNAT) != 0;
	return (e->flags & FN_CT_F_DNAT) != 0;
}

/* The device packets from the outside peer of a flow arrive on: the one its SNAT leaves by
 * (the forward entry's, found through the reply entry e), else the uplink. */
FN_INLINE __u32 fn_ct_outside_dev(const struct fn_ct_entry *e, __u8 proto, const struct fn_host_config *cfg)
{
	if ((e->flags & FN_CT_F_SNAT) && (e->flags & FN_CT_F_REPLY)) {
		struct fn_ct_key pkey = {};
		struct fn_ct_entry *fwd;
		int confirmed;

		fn_ct_partner_key(e, proto, &pkey);
		fwd = fn_ct_find(&pkey, &confirmed);
		if (fwd && (fwd->flags & FN_CT_F_ROUTED))
			return fwd->out_ifindex;
	}
	return cfg ? cfg->uplink_ifindex : 0;
}

/*
 * An ICMP error (unreachable, fragmentation needed, time exceeded, parameter problem) that
 * quotes a packet of a tracked flow: the error travels the way the flow's reverse entry
 * matches, so that entry translates the outer header, and the quoted header is translated
 * the opposite way (it is a packet of the other direction). Only an error from where the
 * flow's peer is counts: from a container, about a flow of its own (the outer source, which
 * anti-spoofing made the container's, is the quoted packet's destination) and addressed to
 * the flow's peer; from outside, about an outside-facing flow, arriving on the device the
 * flow's peer is behind, addressed to the flow's address on this side and from any router on
 * the path that is not a martian source. Returns
 * 1 and fills *e when the error belongs to a flow, 0 when it does not, or a negative drop
 * reason.
 */
FN_INLINE int fn_nat_icmp_error(struct __sk_buff *skb, const struct fn_l4 *l4, const struct fn_host_config *cfg,
				int from_container, struct fn_ct_entry *e)
{
	__u32 inner = l4->l4_off + 8;
	struct iphdr ip;
	__be16 ports[2];
	struct fn_ct_key key = {};
	struct fn_ct_entry *found;
	int confirmed;

	/* the quoted header and 8 bytes of its payload, within the error's own IP total length */
	if (inner + sizeof(ip) + 8 > l4->l3_end)
		return 0;
	if (bpf_skb_load_bytes(skb, inner, &ip, sizeof(ip)) || ip.ihl != 5 || ip.version != 4)
		return 0;
	if (ip.protocol == IPPROTO_ICMP) {
		if (bpf_skb_load_bytes(skb, inner + sizeof(ip) + 4, &ports[0], 2))
			return 0;
		ports[1] = ports[0];
	} else if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		if (bpf_skb_load_bytes(skb, inner + sizeof(ip), ports, 4))
			return 0;
	} else {
		return 0;
	}
	/* the quoted packet went the other way: its reverse is what this direction matches */
	key.saddr = ip.daddr;
	key.daddr = ip.saddr;
	key.sport = ports[1];
	key.dport = ports[0];
	key.proto = ip.protocol;
	if (l4->key.daddr != key.daddr)
		return 0; /* not sent back to where the quoted packet came from */
	if (from_container && l4->key.saddr != key.saddr)
		return 0; /* a container speaks only for its own flows */
	found = fn_ct_find(&key, &confirmed);
	if (!found)
		return 0;
	if (!from_container && (!fn_ct_from_outside(found) || fn_martian_source(skb, cfg, l4->key.saddr) ||
				fn_ct_outside_dev(found, key.proto, cfg) != skb->ingress_ifindex))
		return 0;
	*e = *found;

	{
		__u32 icmp_csum = l4->csum_off;
		__u32 inner_csum = inner + offsetof(struct iphdr, check);
		__u32 inner_l4 = inner + sizeof(ip);

		if (fn_rewrite_addr(skb, FN_IP_DADDR_OFF, l4->key.daddr, e->to_daddr, 0, 0))
			return -FN_DROP_CSUM;
		if (from_container && fn_rewrite_addr(skb, FN_IP_SADDR_OFF, l4->key.saddr, e->to_saddr, 0, 0))
			return -FN_DROP_CSUM;
		if (fn_icmp_inner_rewrite32(skb, inner + offsetof(struct iphdr, saddr), ip.saddr, e->to_daddr,
					    inner_csum, icmp_csum) ||
		    fn_icmp_inner_rewrite32(skb, inner + offsetof(struct iphdr, daddr), ip.daddr, e->to_saddr,
					    inner_csum, icmp_csum))
			return -FN_DROP_CSUM;
		if (ip.protocol == IPPROTO_ICMP) {
			if (fn_icmp_inner_rewrite16(skb, inner_l4 + 4, ports[0], e->to_dport, icmp_csum))
				return -FN_DROP_CSUM;
		} else if (fn_icmp_inner_rewrite16(skb, inner_l4, ports[0], e->to_dport, icmp_csum) ||
			   fn_icmp_inner_rewrite16(skb, inner_l4 + 2, ports[1], e->to_sport, icmp_csum)) {
			return -FN_DROP_CSUM;
		}
	}
	return 1;
}

/* Sends a translated packet where its entry says: into a container, out of the device its
 * SNAT chose, or out of the uplink. */
FN_INLINE int fn_nat_deliver(struct __sk_buff *skb, const struct fn_ct_entry *e, __u32 uplink_ifindex)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if (e->flags & FN_CT_F_ROUTED)
		return fn_redirect_neigh(e->out_ifindex);
	if (!e->out_ifindex)
		return fn_redirect_neigh(uplink_ifindex);
	if ((void *)(eth + 1) > data_end)
		return -FN_DROP_MALFORMED_ETH;
	fn_mac_copy(eth->h_dest, e->out_dmac);
	fn_mac_copy(eth->h_source, e->out_smac);
	return fn_redirect_peer(e->out_ifindex);
}

FN_INLINE void fn_entry_to(struct fn_ct_entry *e, __be32 saddr, __be32 daddr, __be16 sport, __be16 dport)
{
	e->to_saddr = saddr;
	e->to_daddr = daddr;
	e->to_sport = sport;
	e->to_dport = dport;
}

/*
 * Creates a flow whose reply comes back to (reply_daddr, port) where port is `want` if free,
 * else one of a bounded number of random picks in [min, max] (never the host's ephemeral
 * range). `fwd` and `rev` are complete but for that port. 0, or a negative drop reason.
 */
FN_INLINE int fn_nat_create_with_port(const struct fn_ct_key *fwd_key, struct fn_ct_entry *fwd,
				      struct fn_ct_entry *rev, __be32 reply_saddr, __be16 reply_sport,
				      __be32 reply_daddr, __be16 want, __u16 min, __u16 max)
{
	struct fn_ct_key rev_key = { .saddr = reply_saddr, .daddr = reply_daddr, .sport = reply_sport,
				     .proto = fwd_key->proto };
	__u32 span = max >= min ? (__u32)(max - min) + 1 : 1;
	__be16 port = want;
	int confirmed, i;

	for (i = 0; i < FN_SNAT_TRIES; i++) {
		rev_key.dport = port;
		if (fwd_key->proto == IPPROTO_ICMP)
			rev_key.sport = port; /* the echo identifier is both "ports" */
		if (fwd_key->proto == IPPROTO_ICMP)
			fwd->to_sport = fwd->to_dport = port;
		else
			fwd->to_sport = port;
		if (!fn_ct_create(fwd_key, fwd, &rev_key, rev))
			return 0;
		if (fn_ct_find(fwd_key, &confirmed)) /* another CPU created this very flow */
			return 0;
		port = bpf_htons(min + bpf_get_prandom_u32() % span);
	}
	return -FN_DROP_SNAT_EXHAUSTED;
}

/* A container's new flow to the outside: the source becomes `src`, the address the host's
 * routing picked on the device it leaves by (`out_dev`; 0: the uplink). */
FN_INLINE int fn_snat_create(const struct fn_l4 *l4, const struct fn_host_config *cfg, __be32 src, __u32 out_dev,
			     __u32 port_ifindex, const __u8 *port_mac, const __u8 *gateway_mac)
{
	struct fn_ct_entry fwd = { .flags = FN_CT_F_SNAT, .out_ifindex = out_dev };
	struct fn_ct_entry rev = { .flags = FN_CT_F_SNAT, .out_ifindex = port_ifindex };

	if (out_dev)
		fwd.flags |= FN_CT_F_ROUTED;
	fn_entry_to(&fwd, src, l4->key.daddr, 0, l4->key.dport);
	fn_entry_to(&rev, l4->key.daddr, l4->key.saddr, l4->key.dport, l4->key.sport);
	fn_mac_copy(rev.out_dmac, port_mac);
	fn_mac_copy(rev.out_smac, gateway_mac);
	return fn_nat_create_with_port(&l4->key, &fwd, &rev, l4->key.daddr, l4->key.dport, src,
				       l4->key.sport, cfg->snat_port_min, cfg->snat_port_max);
}

/*
 * A new flow to a published port. From outside (client_ifindex 0) the client's address is
 * kept. From a container (hairpin) the source also becomes the backend's gateway, so the
 * backend's replies come back through the gateway (and this program) even when client and
 * backend share a network.
 */
FN_INLINE int fn_dnat_create(const struct fn_l4 *l4, const struct fn_service *svc, const struct fn_host_config *cfg,
			     __u32 client_ifindex, const __u8 *client_mac, const __u8 *client_gw_mac)
{
	__be16 bport = fn_service_backend_port(svc, l4->key.dport);
	struct fn_ct_entry fwd = { .flags = FN_CT_F_DNAT, .out_ifindex = svc->backend_ifindex };
	struct fn_ct_entry rev = { .flags = FN_CT_F_DNAT, .out_ifindex = client_ifindex };
	__be32 src = client_ifindex ? svc->gateway : l4->key.saddr;

	fn_entry_to(&fwd, src, svc->backend_ipv4, l4->key.sport, bport);
	fn_entry_to(&rev, l4->key.daddr, l4->key.saddr, l4->key.dport, l4->key.sport);
	fn_mac_copy(fwd.out_dmac, svc->backend_mac);
	fn_mac_copy(fwd.out_smac, svc->gateway_mac);
	if (client_ifindex) {
		fwd.flags |= FN_CT_F_HAIRPIN;
		rev.flags |= FN_CT_F_HAIRPIN;
		fn_mac_copy(rev.out_dmac, client_mac);
		fn_mac_copy(rev.out_smac, client_gw_mac);
		return fn_nat_create_with_port(&l4->key, &fwd, &rev, svc->backend_ipv4, bport, svc->gateway,
					       l4->key.sport, cfg->snat_port_min, cfg->snat_port_max);
	}
	{
		struct fn_ct_key rev_key = { .saddr = svc->backend_ipv4, .daddr = l4->key.saddr, .sport = bport,
					     .dport = l4->key.sport, .proto = l4->key.proto };
		int confirmed;

		if (l4->key.proto == IPPROTO_ICMP)
			return -FN_DROP_NAT_PROTO;
		if (fn_ct_create(&l4->key, &fwd, &rev_key, &rev) && !fn_ct_find(&l4->key, &confirmed))
			return -FN_DROP_CT_INSERT;
		return 0;
	}
}

#endif
