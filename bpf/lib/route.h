/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host's routing, as the NAT paths ask it about a new flow: bpf_fib_lookup (through the
 * seam in helpers.h) made as if the packet arrived on fastnet's FIB device
 * (fn_host_config.fib_ifindex). The kernel answers a lookup only for a device that forwards
 * (BPF_FIB_LKUP_RET_FWD_DISABLED otherwise), and neither the container ports (forwarding=0:
 * without fastnet's programs nothing is routed) nor the uplink may forward; the FIB device
 * is down, has no address and receives nothing, so its forwarding=1 lets nothing through.
 * fn_host_addr_get() is one of fastnet.c's accessors (lib/map_access.h).
 */
#ifndef FN_LIB_ROUTE_H
#define FN_LIB_ROUTE_H

#include "common.h"
#include "helpers.h"
#include "map_access.h"

#define FN_AF_INET 2

enum fn_route_kind {
	FN_ROUTE_UNKNOWN = 0, /* no FIB device, or the kernel did not answer: callers fall back */
	FN_ROUTE_OUT,         /* routed out of r->ifindex, from r->src */
	FN_ROUTE_LOCAL,       /* the host's own (a local or broadcast address), or no route at all */
	FN_ROUTE_NONE,        /* an unreachable, prohibit or blackhole route */
};

struct fn_route {
	__u32  ifindex;
	__be32 src;
	__u32  kind;          /* FN_ROUTE_* */
	__s32  ret;           /* BPF_FIB_LKUP_RET_* (which FN_ROUTE_NONE it is) */
};

/* Where the host would route a packet from saddr to daddr. */
FN_INLINE __u32 fn_route_lookup(struct __sk_buff *skb, const struct fn_host_config *cfg, __be32 saddr,
				__be32 daddr, struct fn_route *r)
{
	struct bpf_fib_lookup p = {};
	long ret;

	r->kind = FN_ROUTE_UNKNOWN;
	if (!cfg || !cfg->fib_ifindex)
		return r->kind;
	p.family = FN_AF_INET;
	p.ipv4_src = saddr; /* the packet's own source: "ip rule from ..." policies apply */
	p.ipv4_dst = daddr;
	p.ifindex = cfg->fib_ifindex;
	/* SRC: the address MASQUERADE would pick (the route's preferred source, else the
	 * device's); SKIP_NEIGH: bpf_redirect_neigh resolves the next hop itself. */
	ret = fn_fib_lookup(skb, &p, FN_FIB_LOOKUP_SKIP_NEIGH | FN_FIB_LOOKUP_SRC);
	r->ret = ret;
	switch (ret) {
	case BPF_FIB_LKUP_RET_SUCCESS:
	case BPF_FIB_LKUP_RET_FRAG_NEEDED: /* routed; the size is fn_nat_tracked's business */
		r->ifindex = p.ifindex;
		r->src = p.ipv4_src;
		r->kind = FN_ROUTE_OUT;
		break;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		r->kind = FN_ROUTE_LOCAL;
		break;
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		r->kind = FN_ROUTE_NONE;
		break;
	}
	return r->kind;
}

/* Never a packet's source or routed destination (Linux's ip_route_input martians): 0.0.0.0/8,
 * 127.0.0.0/8, multicast 224.0.0.0/4 and 240.0.0.0/4 with the limited broadcast. */
FN_INLINE int fn_ipv4_martian(__be32 addr)
{
	__u32 top = bpf_ntohl(addr) >> 24;

	return top == 0 || top == 127 || top >= 224;
}

/*
 * A source no packet from outside may carry into a container: a martian address, one of the
 * host's own (its addresses, every gateway, a local subnet's broadcast), or one the host has
 * no route back to (the unassigned addresses of a fastnet subnet, whose unreachable route
 * covers them). Asked only when a flow is created: a tracked flow's tuple fixes its source.
 */
FN_INLINE int fn_martian_source(struct __sk_buff *skb, const struct fn_host_config *cfg, __be32 saddr)
{
	struct fn_route r;

	if (fn_ipv4_martian(saddr))
		return 1;
	switch (fn_route_lookup(skb, cfg, 0, saddr, &r)) {
	case FN_ROUTE_LOCAL:
	case FN_ROUTE_NONE:
		return 1;
	case FN_ROUTE_UNKNOWN:
		return fn_host_addr_get(saddr) != NULL;
	}
	return 0;
}

#endif
