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
#include "map_access.h"

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
		/* the echo identifier: a request's source "port", a reply's destination one */
		int request = l4->icmp_type == ICMP_ECHO;

		if (fn_rewrite_port(skb, l4->l4_off + 4, request ? l4->key.sport : l4->key.dport,
				    request ? e->to_sport : e->to_dport, l4->csum_off, 0))
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
	int confirmed, echo_request = 0;

	/* the quoted header and 8 bytes of its payload, within the error's own IP total length */
	if (inner + sizeof(ip) + 8 > l4->l3_end)
		return 0;
	if (bpf_skb_load_bytes(skb, inner, &ip, sizeof(ip)) || ip.ihl != 5 || ip.version != 4)
		return 0;
	if (ip.protocol == IPPROTO_ICMP) {
		/* a quoted echo request or reply: its identifier in the port it has (fn_l4_parse) */
		__u8 type;
		__be16 id;

		if (bpf_skb_load_bytes(skb, inner + sizeof(ip), &type, 1) ||
		    bpf_skb_load_bytes(skb, inner + sizeof(ip) + 4, &id, 2) ||
		    (type != ICMP_ECHO && type != ICMP_ECHOREPLY))
			return 0;
		echo_request = type == ICMP_ECHO;
		ports[0] = echo_request ? id : 0;
		ports[1] = echo_request ? 0 : id;
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
			if (fn_icmp_inner_rewrite16(skb, inner_l4 + 4, echo_request ? ports[0] : ports[1],
						    echo_request ? e->to_dport : e->to_sport, icmp_csum))
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
 * Would a socket of the host's own stack receive what saddr:sport sends to daddr:dport? A
 * listening, connected or TIME_WAIT TCP socket, a bound or connected UDP socket of the
 * namespace the packet is in (the host's). ICMP echo has nothing to look up: the host's ping
 * and raw sockets cannot be asked.
 */
FN_INLINE int fn_host_socket_holds(struct __sk_buff *skb, __u8 proto, __be32 saddr, __be16 sport,
				   __be32 daddr, __be16 dport)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.saddr = saddr;
	t.ipv4.daddr = daddr;
	t.ipv4.sport = sport;
	t.ipv4.dport = dport;
	if (proto == IPPROTO_TCP)
		sk = bpf_skc_lookup_tcp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	else if (proto == IPPROTO_UDP)
		sk = bpf_sk_lookup_udp(skb, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	else
		return 0;
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* In the SNAT range: outside the host's ip_local_port_range, where its kernel picks the
 * source ports of its own connections (and ICMP echo identifiers alike). */
FN_INLINE int fn_snat_port_in_range(const struct fn_host_config *cfg, __be16 port)
{
	__u16 p = bpf_ntohs(port);

	return p >= cfg->snat_port_min && p <= cfg->snat_port_max;
}

/* Takes the external (addr, port) of `proto` for the container endpoint (int_addr, int_port):
 * 1 when it is now, or already was, that endpoint's; 0 when another endpoint's mapping holds
 * it. BPF_NOEXIST: two CPUs racing for one port agree on its owner. */
FN_INLINE int fn_nat_map_claim(__u8 proto, __be32 addr, __be16 port, __be32 int_addr, __be16 int_port, __u64 now)
{
	struct fn_nat_map_key k = { .addr = addr, .port = port, .proto = proto };
	struct fn_nat_map m = { .used = now, .addr = int_addr, .port = int_port, .flags = FN_NAT_MAP_F_EXTERNAL };
	struct fn_nat_map *held;

	if (!fn_nat_map_insert(&k, &m, BPF_NOEXIST))
		return 1;
	held = fn_nat_map_get(&k);
	if (!held || held->addr != int_addr || held->port != int_port)
		return 0;
	held->used = now;
	return 1;
}

/* The container endpoint's side of its mapping, written once a flow took the port. */
FN_INLINE void fn_nat_map_remember(__u8 proto, __be32 int_addr, __be16 int_port, __be32 addr, __be16 port, __u64 now)
{
	struct fn_nat_map_key k = { .addr = int_addr, .port = int_port, .proto = proto };
	struct fn_nat_map m = { .used = now, .addr = addr, .port = port };

	fn_nat_map_insert(&k, &m, BPF_ANY);
}

/*
 * Creates a container's flow whose replies come from reply_saddr:reply_sport to reply_daddr (an
 * address of the host) and a port chosen here: `first` if it is free (0: none), else one of a
 * bounded number of random picks. Every candidate is in the SNAT range (fn_snat_port_in_range),
 * so the host's kernel never picks it for a socket of its own, and none that a host socket
 * already holds (an explicit bind) is taken. With `claim` (SNAT to the uplink address) the port
 * becomes the container endpoint's mapping: ports another endpoint's mapping holds, and published
 * ports, are skipped. `fwd` and `rev` are complete but for that port. 0, or a negative drop reason.
 */
FN_INLINE int fn_nat_create_with_port(struct __sk_buff *skb, const struct fn_ct_key *fwd_key,
				      struct fn_ct_entry *fwd, struct fn_ct_entry *rev, __be32 reply_saddr,
				      __be16 reply_sport, __be32 reply_daddr, __be16 first,
				      const struct fn_host_config *cfg, int claim)
{
	struct fn_ct_key rev_key = { .saddr = reply_saddr, .daddr = reply_daddr, .sport = reply_sport,
				     .proto = fwd_key->proto };
	__u16 min = cfg->snat_port_min, max = cfg->snat_port_max;
	__u32 span = max >= min ? (__u32)(max - min) + 1 : 1;
	__u64 now = fn_now();
	__be16 port;
	int confirmed, i, ret;

	/* The search only looks (and claims the mapping); the flow is created once, after it:
	 * fn_ct_create inside the loop would have the verifier walk it FN_SNAT_TRIES times. */
	for (i = 0; i < FN_SNAT_TRIES; i++) {
		port = i == 0 && first ? first : bpf_htons(min + bpf_get_prandom_u32() % span);
		if (claim && (fn_port_published(fwd_key->proto, bpf_ntohs(port)) ||
			      !fn_nat_map_claim(fwd_key->proto, reply_daddr, port, fwd_key->saddr, fwd_key->sport, now)))
			continue;
		if (fn_host_socket_holds(skb, fwd_key->proto, reply_saddr, reply_sport, reply_daddr, port))
			continue;
		rev_key.dport = port;
		if (!fn_ct_get(&rev_key))
			break;
	}
	if (i == FN_SNAT_TRIES)
		return -FN_DROP_SNAT_EXHAUSTED;
	fwd->to_sport = port;
	ret = fn_ct_create(fwd_key, fwd, &rev_key, rev);
	if (ret == FN_CT_TAKEN) /* another CPU took the port, or created this very flow, meanwhile */
		return fn_ct_find(fwd_key, &confirmed) ? 0 : -FN_DROP_CT_INSERT;
	if (!ret && claim)
		fn_nat_map_remember(fwd_key->proto, fwd_key->saddr, fwd_key->sport, reply_daddr, port, now);
	return ret;
}

/* The external port a container endpoint tries first: the one its mapping holds (the same
 * for every destination: endpoint-independent mapping; unless the uplink address or the SNAT
 * range changed since), else its own port when that is in the SNAT range (port preservation),
 * else none. */
FN_INLINE __be16 fn_snat_first_port(const struct fn_ct_key *key, const struct fn_host_config *cfg, __be32 src)
{
	struct fn_nat_map_key k = { .addr = key->saddr, .port = key->sport, .proto = key->proto };
	struct fn_nat_map *m = fn_nat_map_get(&k);

	if (m && m->addr == src && fn_snat_port_in_range(cfg, m->port))
		return m->port;
	return fn_snat_port_in_range(cfg, key->sport) ? key->sport : 0;
}

/* A container's new flow to the outside: the source becomes `src`, the address the host's
 * routing picked on the device it leaves by (`out_dev`; 0: the uplink), and the port of the
 * container endpoint's mapping on that address. */
FN_INLINE int fn_snat_create(struct __sk_buff *skb, const struct fn_l4 *l4, const struct fn_host_config *cfg,
			     __be32 src, __u32 out_dev,
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
	return fn_nat_create_with_port(skb, &l4->key, &fwd, &rev, l4->key.daddr, l4->key.dport, src,
				       fn_snat_first_port(&l4->key, cfg, src), cfg, 1);
}

/* Does this packet start a flow that a published port or a mapping may take in? TCP: only a
 * SYN without ACK, RST or FIN; anything else with no tracked flow belongs to the host (a reply
 * to one of its own connections, or a segment of a flow nobody tracks). UDP: every datagram. */
FN_INLINE int fn_nat_starts_flow(const struct fn_l4 *l4)
{
	return l4->key.proto != IPPROTO_TCP ||
	       (l4->tcp_flags & (FN_TCP_SYN | FN_TCP_ACK | FN_TCP_RST | FN_TCP_FIN)) == FN_TCP_SYN;
}

/* The SNAT mapping whose external side is a container's new TCP or UDP flow's destination on
 * the uplink address, if its owner is still a container of this host; NULL otherwise. */
FN_INLINE struct fn_nat_map *fn_nat_mapping_to(const struct fn_l4 *l4, const struct fn_host_config *cfg)
{
	struct fn_nat_map_key k = { .addr = l4->key.daddr, .port = l4->key.dport, .proto = l4->key.proto };
	struct fn_nat_map *m;

	if (l4->key.daddr != cfg->uplink_ipv4 || (l4->key.proto != IPPROTO_TCP && l4->key.proto != IPPROTO_UDP))
		return NULL;
	m = fn_nat_map_get(&k);
	if (!m || !(m->flags & FN_NAT_MAP_F_EXTERNAL) || !fn_ipcache_of(m->addr))
		return NULL;
	return m;
}

/*
 * A container's new flow to another container endpoint's SNAT mapping, as learnt through STUN
 * (RFC 4787 REQ-9: hairpinning). It reaches that endpoint from the sender's own mapping (REQ-9
 * b: "external source IP address and port"), so each sees the other as from outside and the
 * owner's replies, to that address and port, come back the same way. 0 or a negative drop reason.
 */
FN_INLINE int fn_snat_hairpin_create(struct __sk_buff *skb, const struct fn_l4 *l4, const struct fn_host_config *cfg,
				     const struct fn_nat_map *owner, __u32 client_ifindex, const __u8 *client_mac,
				     const __u8 *client_gw_mac)
{
	struct fn_ct_entry fwd = { .flags = FN_CT_F_SNAT | FN_CT_F_HAIRPIN };
	struct fn_ct_entry rev = { .flags = FN_CT_F_SNAT | FN_CT_F_HAIRPIN, .out_ifindex = client_ifindex };
	__be32 owner_addr = owner->addr;
	__be16 owner_port = owner->port;
	struct fn_ip_entry *target = fn_ipcache_of(owner_addr);
	struct fn_network *net;

	if (!target)
		return -FN_DROP_CT_INSERT; /* the owner went away since fn_nat_mapping_to() */
	net = fn_network_of(target->net_id);
	if (!net)
		return -FN_DROP_NO_NETWORK;
	fwd.out_ifindex = target->ifindex;
	fn_mac_copy(fwd.out_dmac, target->mac);
	fn_mac_copy(fwd.out_smac, net->gateway_mac);
	fn_mac_copy(rev.out_dmac, client_mac);
	fn_mac_copy(rev.out_smac, client_gw_mac);
	fn_entry_to(&fwd, cfg->uplink_ipv4, owner_addr, 0, owner_port);
	fn_entry_to(&rev, l4->key.daddr, l4->key.saddr, l4->key.dport, l4->key.sport);
	return fn_nat_create_with_port(skb, &l4->key, &fwd, &rev, owner_addr, owner_port, cfg->uplink_ipv4,
				       fn_snat_first_port(&l4->key, cfg, cfg->uplink_ipv4), cfg, 1);
}

/*
 * A new flow to a published port. From outside (client_ifindex 0) the client's address is
 * kept. From a container (hairpin) the source also becomes the backend's gateway, so the
 * backend's replies come back through the gateway (and this program) even when client and
 * backend share a network.
 */
FN_INLINE int fn_dnat_create(struct __sk_buff *skb, const struct fn_l4 *l4, const struct fn_service *svc,
			     const struct fn_host_config *cfg, __u32 client_ifindex, const __u8 *client_mac,
			     const __u8 *client_gw_mac)
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
		return fn_nat_create_with_port(skb, &l4->key, &fwd, &rev, svc->backend_ipv4, bport, svc->gateway,
					       fn_snat_port_in_range(cfg, l4->key.sport) ? l4->key.sport : 0, cfg, 0);
	}
	{
		struct fn_ct_key rev_key = { .saddr = svc->backend_ipv4, .daddr = l4->key.saddr, .sport = bport,
					     .dport = l4->key.sport, .proto = l4->key.proto };
		int confirmed, ret;

		if (l4->key.proto == IPPROTO_ICMP)
			return -FN_DROP_NAT_PROTO;
		ret = fn_ct_create(&l4->key, &fwd, &rev_key, &rev);
		if (ret == FN_CT_TAKEN)
			return fn_ct_find(&l4->key, &confirmed) ? 0 : -FN_DROP_CT_INSERT;
		return ret;
	}
}

#endif
