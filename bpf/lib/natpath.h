/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The translating paths of the TC programs: traffic a container sends to its gateway that is
 * not for the host itself, traffic arriving on the uplink, and replies arriving on the other
 * devices the host routes SNAT flows out of.
 */
#ifndef FN_LIB_NATPATH_H
#define FN_LIB_NATPATH_H

#include "common.h"
#include "ct.h"
#include "frag.h"
#include "icmp_reply.h"
#include "ipv4.h"
#include "l4.h"
#include "metrics.h"
#include "nat.h"
#include "route.h"
#include "service.h"
#include "map_access.h"

/* A packet the gateway (`from`) does not route on: it answers with an ICMP error back out of
 * the port the packet came in on, counted as `counter`. */
FN_INLINE int fn_nat_answer(struct __sk_buff *skb, __u32 prog, __be32 from, __u8 type, __u8 code, __u16 mtu,
			    __u32 counter)
{
	__u32 arrived = skb->len;
	int ret = fn_icmp_reply(skb, from, type, code, mtu);

	if (ret < 0)
		return ret;
	fn_count_bytes(prog, counter, arrived);
	return fn_redirect_egress(skb->ingress_ifindex);
}

/* A packet to be routed whose TTL runs out here: the gateway (`from`) answers it. */
FN_INLINE int fn_nat_ttl_exceeded(struct __sk_buff *skb, __u32 prog, __be32 from)
{
	return fn_nat_answer(skb, prog, from, ICMP_TIME_EXCEEDED, ICMP_EXC_TTL, 0, FN_FWD_TTL_EXCEEDED);
}

/*
 * An ICMP error about a tracked flow, translated and sent where the flow's packets go. One
 * about no flow of its sender's side is not translated: from outside it is the host's own
 * (or nobody's: from a martian source); from a container, the host's when addressed to one
 * of the host's addresses, else dropped (it would leave untranslated, or reach a flow of
 * another container).
 */
FN_INLINE int fn_nat_error(struct __sk_buff *skb, __u32 prog, struct fn_l4 *l4, const struct fn_host_config *cfg,
			   int from_container)
{
	/* the host's own traffic from outside is counted on the uplink only */
	__u32 host_counter = from_container ? FN_FWD_HOST :
			     prog == FN_PROG_FROM_UPLINK ? FN_FWD_UPLINK_HOST : FN_COUNTER_MAX;
	struct fn_ct_entry e;
	int ret = fn_nat_icmp_error(skb, l4, cfg, from_container, &e);

	if (ret < 0)
		return ret;
	if (ret == 0 && from_container && !fn_host_addr_get(l4->key.daddr))
		return -FN_DROP_ICMP_ERROR;
	if (ret == 0 || fn_ttl_decrement(skb)) {
		if (host_counter != FN_COUNTER_MAX)
			fn_count(skb, prog, host_counter);
		return TC_ACT_OK;
	}
	fn_count(skb, prog, FN_FWD_ICMP_ERROR);
	return fn_nat_deliver(skb, &e, cfg ? cfg->uplink_ifindex : 0);
}

/*
 * 0 when a packet leaving by the entry's way fits the device it leaves by, else that
 * device's MTU. bpf_redirect_neigh skips the forwarding path's MTU check: a packet too big
 * would vanish in the device, with no ICMP to tell the sender (a path-MTU black hole). Into
 * a container nothing is checked (a veth takes what it is given, like the host's own stack).
 * A packet within the uplink's known MTU needs no helper call: a GSO packet, longer, is
 * checked segment by segment.
 */
FN_INLINE __u32 fn_nat_too_big(struct __sk_buff *skb, const struct fn_ct_entry *e, const struct fn_host_config *cfg)
{
	if (e->flags & FN_CT_F_ROUTED)
		return fn_check_mtu(skb, e->out_ifindex);
	if (e->out_ifindex || !cfg)
		return 0;
	if (cfg->uplink_mtu && skb->len <= ETH_HLEN + cfg->uplink_mtu)
		return 0;
	return fn_check_mtu(skb, cfg->uplink_ifindex);
}

/* Translates a packet of a tracked flow and sends it on; new_flow_counter (FN_COUNTER_MAX: none)
 * counts a flow's first packet once it is sure to be translated. `gateway`: the address that
 * answers "fragmentation needed" for a packet too big for its way out (a container's
 * gateway; 0 from outside, whose packets only go into containers). Verdict, or negative drop. */
FN_INLINE int fn_nat_tracked(struct __sk_buff *skb, __u32 prog, struct fn_l4 *l4, struct fn_ct_entry *e,
			     int confirmed, __u32 uplink_ifindex, __u32 new_flow_counter, __be32 gateway)
{
	struct fn_ct_entry copy;
	int ret;

	ret = fn_ct_track(l4, e);
	if (ret < 0)
		return ret;
	if (ret == FN_CT_RST_IGNORED)
		fn_count(skb, prog, FN_FWD_CT_RST_IGNORED);
	copy = *e; /* one consistent translation, though another CPU may update the entry meanwhile */
	if (gateway) {
		__u32 mtu = fn_nat_too_big(skb, &copy, fn_host_config_get());

		/* as a router answers (RFC 1191), DF or not: fastnet cannot fragment, and a Linux
		 * sender fragments what it sends later to the MTU it learns */
		if (mtu)
			return fn_nat_answer(skb, prog, gateway, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu,
					     FN_FWD_FRAG_NEEDED);
	}
	if (fn_ttl_decrement(skb)) {
		/* TTL expired: let the host answer with time exceeded */
		fn_count(skb, prog, prog == FN_PROG_FROM_UPLINK ? FN_FWD_UPLINK_HOST : FN_FWD_HOST);
		return TC_ACT_OK;
	}
	ret = fn_nat_apply(skb, l4, &copy);
	if (ret < 0)
		return ret;
	if (l4->frag == FN_FRAG_FIRST)
		fn_frag_record(l4); /* before it leaves: the next fragment may be right behind it */
	if (new_flow_counter != FN_COUNTER_MAX)
		fn_count(skb, prog, new_flow_counter);
	fn_count(skb, prog, FN_FWD_CT);
	return fn_nat_deliver(skb, &copy, uplink_ifindex);
}

FN_INLINE int fn_nat_new_flow(struct __sk_buff *skb, __u32 prog, struct fn_l4 *l4, __u32 uplink_ifindex,
			      __u32 counter, __be32 gateway)
{
	int confirmed;
	struct fn_ct_entry *e = fn_ct_find(&l4->key, &confirmed);

	if (!e)
		return -FN_DROP_CT_INSERT;
	return fn_nat_tracked(skb, prog, l4, e, confirmed, uplink_ifindex, counter, gateway);
}

/*
 * A container's new flow that is not for a published port goes where the host's routing
 * sends it, as under Docker's MASQUERADE: to the host's own addresses (and broadcasts), to
 * the host; out of a device (the uplink, a VPN, a second NIC), with the source the host would
 * send from on it and out of that device. Martian destinations and those without a route (an
 * unassigned address of another fastnet subnet, behind its unreachable route) go nowhere.
 */
FN_INLINE int fn_nat_route(struct __sk_buff *skb, __u32 prog, struct fn_l4 *l4, const struct fn_host_config *cfg,
			   const struct fn_endpoint *ep, const struct fn_network *net, __u8 ttl)
{
	__be32 daddr = l4->key.daddr;
	struct fn_route r;
	int ret;

	if (fn_ipv4_martian(daddr) || daddr == (net->subnet | ~net->netmask))
		return -FN_DROP_MARTIAN_DST;
	if (fn_ipcache_of(daddr))
		goto to_host; /* another container's address: not for the NAT */
	switch (fn_route_lookup(skb, cfg, l4->key.saddr, daddr, &r)) {
	case FN_ROUTE_OUT:
		break;
	case FN_ROUTE_LOCAL:
		goto to_host;
	case FN_ROUTE_NONE:
		if (r.ret == BPF_FIB_LKUP_RET_BLACKHOLE)
			return -FN_DROP_NO_ROUTE;
		return fn_nat_answer(skb, prog, net->gateway, ICMP_DEST_UNREACH,
				     r.ret == BPF_FIB_LKUP_RET_PROHIBIT ? ICMP_PKT_FILTERED : ICMP_HOST_UNREACH, 0,
				     FN_FWD_UNREACHABLE);
	default: /* no FIB to ask: the host's addresses are its own, the rest leaves by the uplink */
		if (fn_host_addr_get(daddr))
			goto to_host;
		r.ifindex = cfg->uplink_ifindex;
		r.src = cfg->uplink_ipv4;
	}
	if (ttl <= 1)
		return fn_nat_ttl_exceeded(skb, prog, net->gateway); /* it would be routed: no flow */
	ret = fn_snat_create(skb, l4, cfg, r.src, r.ifindex == cfg->uplink_ifindex ? 0 : r.ifindex, skb->ingress_ifindex,
			     ep->mac, net->gateway_mac);
	if (ret < 0)
		return ret;
	return fn_nat_new_flow(skb, prog, l4, cfg->uplink_ifindex, FN_FWD_SNAT, net->gateway);
to_host:
	fn_count(skb, prog, FN_FWD_HOST);
	return TC_ACT_OK;
}

/*
 * A container's IPv4 packet to its gateway MAC that the bridge allowed. Tracked flows are
 * translated; new flows to a published port of the host, or to another container's SNAT
 * mapping on the uplink address, are hairpinned; new flows to the outside are SNATed; the rest
 * (the host's own addresses, other containers) goes to the host.
 */
FN_INLINE fn_tc_ret fn_nat_from_container(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = fn_ipv4_header(skb, data + ETH_HLEN, data_end);
	struct fn_host_config *cfg = fn_host_config_get();
	struct fn_endpoint *ep;
	struct fn_network *net;
	struct fn_ct_entry *e;
	struct fn_service *svc = NULL;
	struct fn_nat_map *mapping = NULL;
	struct fn_l4 l4 = {};
	int confirmed, ret;
	__u8 ttl;

	if (!ip)
		return -FN_DROP_MALFORMED_IP;
	ttl = ip->ttl;
	ep = fn_endpoint_of(skb->ingress_ifindex);
	if (!ep)
		return -FN_DROP_NO_ENDPOINT;
	net = fn_network_of(ep->net_id);
	if (!net)
		return -FN_DROP_NO_NETWORK;
	if (net->flags & FN_NET_F_INTERNAL) {
		if ((ip->daddr & net->netmask) != net->subnet)
			return -FN_DROP_INTERNAL;
		fn_count(skb, prog, FN_FWD_HOST);
		return TC_ACT_OK;
	}
	ret = fn_l4_parse(ip, data, data_end, &l4);
	if (ret == -FN_DROP_MALFORMED_L4)
		return ret;
	if (ret == 0 && l4.frag == FN_FRAG_LATER)
		ret = fn_frag_ports(&l4);
	if (ret < 0)
		goto untranslatable;
	if (l4.icmp_error)
		return fn_nat_error(skb, prog, &l4, cfg, 1);
	e = fn_ct_find(&l4.key, &confirmed);
	if (e) {
		if (ttl <= 1)
			return fn_nat_ttl_exceeded(skb, prog, net->gateway);
		return fn_nat_tracked(skb, prog, &l4, e, confirmed, cfg ? cfg->uplink_ifindex : 0, FN_COUNTER_MAX,
				      net->gateway);
	}
	if (l4.frag == FN_FRAG_LATER) {
		ret = -FN_DROP_FRAGMENT; /* its flow is gone: no flow starts with a later fragment */
		goto untranslatable;
	}
	if (!cfg || !cfg->uplink_ifindex) {
		fn_count(skb, prog, FN_FWD_HOST);
		return TC_ACT_OK;
	}
	/* Only a flow's first packet (TCP: a SYN) may start one into a container; a SYN-ACK or
	 * data to a host address is a host process's (one connected to a container, from an
	 * ephemeral port that happens to be published) and goes to the host. */
	if (fn_nat_starts_flow(&l4)) {
		svc = fn_service_find(l4.key.proto, l4.key.daddr, l4.key.dport);
		if (!svc)
			mapping = fn_nat_mapping_to(&l4, cfg);
	}
	if (svc && !(svc->flags & FN_SVC_F_LOCAL_ONLY)) {
		if (ttl <= 1)
			return fn_nat_ttl_exceeded(skb, prog, net->gateway); /* it would be routed: no flow */
		ret = fn_dnat_create(skb, &l4, svc, cfg, skb->ingress_ifindex, ep->mac, net->gateway_mac);
		if (ret < 0)
			return ret;
		return fn_nat_new_flow(skb, prog, &l4, cfg->uplink_ifindex, FN_FWD_DNAT, net->gateway);
	}
	if (mapping) {
		if (ttl <= 1)
			return fn_nat_ttl_exceeded(skb, prog, net->gateway);
		ret = fn_snat_hairpin_create(skb, &l4, cfg, mapping, skb->ingress_ifindex, ep->mac, net->gateway_mac);
		if (ret < 0)
			return ret;
		return fn_nat_new_flow(skb, prog, &l4, cfg->uplink_ifindex, FN_FWD_SNAT_HAIRPIN, net->gateway);
	}
	return fn_nat_route(skb, prog, &l4, cfg, ep, net, ttl);
untranslatable:
	/* Another protocol, a fragment of no known datagram: the host's when addressed to it.
	 * Anything else would leave with the container's private source as soon as the host
	 * forwards (writing ip_forward turns the ports' forwarding on too). */
	if (!fn_host_addr_get(l4.key.daddr))
		return ret;
	fn_count(skb, prog, FN_FWD_HOST);
	return TC_ACT_OK;
}

/*
 * fn_from_uplink's logic: replies to SNAT, packets to published ports, and the drops that
 * keep containers unreachable except through publishing. The host's own traffic (most of
 * what an uplink carries) leaves early: a packet to the uplink's address skips the container
 * lookup, one of no tracked flow leaves after the conntrack lookups when it is TCP but no
 * SYN, or for a port published nowhere (one bit of fn_pub_ports) -- the published-port tries
 * and the source checks are for the first packet of a new flow to a published port only.
 */
FN_INLINE fn_tc_ret fn_nat_from_uplink(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_host_config *cfg = fn_host_config_get();
	struct iphdr *ip;
	struct fn_ct_entry *e;
	struct fn_service *svc;
	struct fn_l4 l4 = {};
	int confirmed, ret;
	__u8 ttl;

	/* A frame of another VLAN (its tag in skb->vlan_tci: the stack took it out of the frame)
	 * is not the uplink's own traffic: the host's (which has no such VLAN) to judge. */
	if (!cfg || (void *)(eth + 1) > data_end || eth->h_proto != fn_htons_c(ETH_P_IP) || fn_vlan_tagged(skb))
		goto to_host;
	ip = fn_ipv4_header(skb, eth + 1, data_end);
	if (!ip)
		goto to_host; /* not ours to judge: the host stack validates its own traffic */
	if ((ip->daddr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000))
		return -FN_DROP_LOOPBACK_DST;
	if (ip->daddr != cfg->uplink_ipv4 && fn_ipcache_of(ip->daddr))
		return -FN_DROP_DIRECT_ACCESS;
	ttl = ip->ttl;
	ret = fn_l4_parse(ip, data, data_end, &l4);
	if (ret == 0 && l4.frag == FN_FRAG_LATER)
		ret = fn_frag_ports(&l4);
	if (ret < 0)
		goto to_host; /* never translated; the host's own stack judges its traffic */
	if (l4.icmp_error)
		return fn_nat_error(skb, prog, &l4, cfg, 0);
	e = fn_ct_find(&l4.key, &confirmed);
	if (e) {
		/* the tuple of a container's own direction: only its source can make it match */
		if (!fn_ct_from_outside(e))
			return -FN_DROP_UPLINK_SPOOF;
		if (ttl <= 1)
			return fn_nat_ttl_exceeded(skb, prog, cfg->uplink_ipv4);
		return fn_nat_tracked(skb, prog, &l4, e, confirmed, cfg->uplink_ifindex, FN_COUNTER_MAX, 0);
	}
	/* A new flow to a published port starts with its first packet (TCP: a SYN; a first
	 * fragment or a whole datagram); anything else untracked is the host's, e.g. the replies
	 * to its own connections from an ephemeral port inside a published range. */
	if (l4.frag == FN_FRAG_LATER || !fn_nat_starts_flow(&l4) ||
	    !fn_port_published(l4.key.proto, bpf_ntohs(l4.key.dport)))
		goto to_host;
	svc = fn_service_find(l4.key.proto, l4.key.daddr, l4.key.dport);
	if (!svc || (svc->flags & FN_SVC_F_LOCAL_ONLY))
		goto to_host;
	if (fn_ipcache_of(l4.key.saddr))
		return -FN_DROP_UPLINK_SPOOF; /* a container's address from outside: never a client */
	if (fn_martian_source(skb, cfg, l4.key.saddr))
		return -FN_DROP_MARTIAN_SRC; /* the host's own, or no way back: never a client */
	if (ttl <= 1)
		return fn_nat_ttl_exceeded(skb, prog, cfg->uplink_ipv4);
	ret = fn_dnat_create(skb, &l4, svc, cfg, 0, NULL, NULL);
	if (ret < 0)
		return ret;
	return fn_nat_new_flow(skb, prog, &l4, cfg->uplink_ifindex, FN_FWD_DNAT, 0);
to_host:
	fn_count(skb, prog, FN_FWD_UPLINK_HOST);
	return TC_ACT_OK;
}

/*
 * fn_from_route's logic, on the host's other devices a SNAT flow may leave by (a VPN, a
 * second NIC): replies to those flows, and the drops that keep containers unreachable. No
 * port is published there. Everything else is the host's, uncounted; a packet not for one of
 * the host's addresses pays one lookup to learn it is not a container's (routed traffic of
 * other bridges on the host passes here).
 */
FN_INLINE fn_tc_ret fn_nat_from_route(struct __sk_buff *skb, __u32 prog)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct fn_host_config *cfg;
	struct iphdr *ip;
	struct fn_ct_entry *e;
	struct fn_l4 l4 = {};
	int confirmed;

	if ((void *)(eth + 1) > data_end || eth->h_proto != fn_htons_c(ETH_P_IP) || fn_vlan_tagged(skb))
		return TC_ACT_OK;
	ip = fn_ipv4_header(skb, eth + 1, data_end);
	if (!ip)
		return TC_ACT_OK;
	if ((ip->daddr & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000))
		return -FN_DROP_LOOPBACK_DST;
	if (!fn_host_addr_get(ip->daddr))
		return fn_ipcache_of(ip->daddr) ? -FN_DROP_DIRECT_ACCESS : TC_ACT_OK;
	cfg = fn_host_config_get();
	if (!cfg || fn_l4_parse(ip, data, data_end, &l4) < 0 || (l4.frag == FN_FRAG_LATER && fn_frag_ports(&l4) < 0))
		return TC_ACT_OK;
	if (l4.icmp_error)
		return fn_nat_error(skb, prog, &l4, cfg, 0);
	e = fn_ct_find(&l4.key, &confirmed);
	if (!e || !fn_ct_from_outside(e))
		return TC_ACT_OK;
	if (ip->ttl <= 1)
		return fn_nat_ttl_exceeded(skb, prog, l4.key.daddr);
	return fn_nat_tracked(skb, prog, &l4, e, confirmed, cfg->uplink_ifindex, FN_COUNTER_MAX, 0);
}

#endif
