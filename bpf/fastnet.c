/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fastnet's datapath: the one bcc compilation unit. All programs share one set of maps,
 * and bcc only rewrites map accesses written in its main file, so this file holds
 *   1. the map accessors (the only place maps are touched),
 *   2. the entry points, each a short dispatch over the logic in lib/.
 *
 *   container eth0 ==veth== host end (fn_from_container at TC ingress)
 *        |                         |-- same network, unicast --> bpf_redirect_peer(dst port)
 *        |                         |-- broadcast/multicast ----> clone to every port of the network
 *        |                         |-- ARP for gateway/peer ---> answered here, sent back
 *        |                         `-- gateway MAC ------------> host stack (TC_ACT_OK)
 */
#include "lib/common.h"
#include "lib/maps.h"
#include "lib/map_access.h"

/* Every entry below has the signature fastnet/programs.h gives it: a definition that differs,
 * does not build (one declared there and defined nowhere: the loader cannot load it). */
#define FN_DECLARE_PROGRAM(name, prog_type, attach, counts_as, tail_slot) \
	int name(FN_PROG_CTX_##prog_type *ctx);
FN_PROGRAMS(FN_DECLARE_PROGRAM)
#undef FN_DECLARE_PROGRAM

/* ---- map accessors ------------------------------------------------------------------ */

FN_INLINE struct fn_endpoint *fn_endpoint_of(__u32 ifindex)
{
	return fn_endpoints.lookup(&ifindex);
}

FN_INLINE struct fn_network *fn_network_of(__u32 net_id)
{
	return fn_networks.lookup(&net_id);
}

FN_INLINE struct fn_fdb_entry *fn_fdb_of(struct fn_fdb_key *key)
{
	return fn_fdb.lookup(key);
}

FN_INLINE struct fn_ip_entry *fn_ipcache_of(__be32 addr)
{
	return fn_ipcache.lookup(&addr);
}

FN_INLINE __u32 *fn_flood_port(struct fn_flood_key *key)
{
	return fn_flood.lookup(key);
}

FN_INLINE struct fn_metric *fn_metric_slot(__u32 slot)
{
	return fn_metrics.lookup(&slot);
}

FN_INLINE struct fn_host_config *fn_host_config_get(void)
{
	__u32 zero = 0;

	return fn_config.lookup(&zero);
}

FN_INLINE __u32 *fn_host_addr_get(__be32 addr)
{
	return fn_host_addrs.lookup(&addr);
}

FN_INLINE struct fn_service *fn_svc_addr_get(struct fn_svc_addr_key *key)
{
	return fn_svc_addr.lookup(key);
}

FN_INLINE struct fn_service *fn_svc_any_get(struct fn_svc_any_key *key)
{
	return fn_svc_any.lookup(key);
}

FN_INLINE __u64 *fn_pub_ports_word(__u32 index)
{
	return fn_pub_ports.lookup(&index);
}

FN_INLINE struct fn_ct_entry *fn_ct_get(const struct fn_ct_key *key)
{
	return fn_ct.lookup((struct fn_ct_key *)key);
}

/* Only if the key is free (BPF_NOEXIST: bcc's insert()): 0, -EEXIST, or -E2BIG when full. */
FN_INLINE int fn_ct_insert(const struct fn_ct_key *key, struct fn_ct_entry *e)
{
	return fn_ct.insert((struct fn_ct_key *)key, e);
}

/* 0 when this call removed the entry. */
FN_INLINE int fn_ct_delete(const struct fn_ct_key *key)
{
	return fn_ct.delete((struct fn_ct_key *)key);
}

FN_INLINE struct fn_ct_count *fn_ct_count_of(__u32 owner)
{
	return fn_ct_budget.lookup(&owner);
}

FN_INLINE struct fn_nat_map *fn_nat_map_get(const struct fn_nat_map_key *key)
{
	return fn_nat_maps.lookup((struct fn_nat_map_key *)key);
}

FN_INLINE int fn_nat_map_insert(const struct fn_nat_map_key *key, struct fn_nat_map *m, __u64 flags)
{
	if (flags == BPF_NOEXIST)
		return fn_nat_maps.insert((struct fn_nat_map_key *)key, m);
	return fn_nat_maps.update((struct fn_nat_map_key *)key, m);
}

FN_INLINE struct fn_frag_ports *fn_frag_get(struct fn_frag_key *key)
{
	return fn_frags.lookup(key);
}

FN_INLINE void fn_frag_put(struct fn_frag_key *key, struct fn_frag_ports *ports)
{
	fn_frags.update(key, ports);
}

FN_INLINE struct fn_ipvlan_port *fn_ipvlan_port_of(__u32 ifindex)
{
	return fn_ipvlan_ports.lookup(&ifindex);
}

FN_INLINE struct fn_ipvlan_dst *fn_ipvlan_dst_of(struct fn_ipvlan_key *key)
{
	return fn_ipvlan_addrs.lookup(key);
}

FN_INLINE struct fn_vlan *fn_vlan_of(struct fn_vlan_key *key)
{
	return fn_vlans.lookup(key);
}

FN_INLINE struct fn_sock_orig *fn_sock_orig_get(struct bpf_sock *sk, int create)
{
	return fn_sock_orig.sk_storage_get(sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

FN_INLINE struct fn_sock_dst *fn_sock_dst_get(const struct fn_sock_dst_key *key)
{
	return fn_sock_dsts.lookup((struct fn_sock_dst_key *)key);
}

FN_INLINE void fn_sock_dst_set(const struct fn_sock_dst_key *key, struct fn_sock_dst *d)
{
	fn_sock_dsts.update((struct fn_sock_dst_key *)key, d);
}

FN_INLINE struct fn_resolver *fn_resolver_of(__u64 netns_cookie)
{
	return fn_resolvers.lookup(&netns_cookie);
}

/* Returns only when the slot is empty: the caller drops (drop_tail_call). */
FN_INLINE void fn_tail_call(struct __sk_buff *skb, __u32 slot)
{
	fn_tails.call(skb, slot);
}

/* overlay networks (lib/overlay.h) */
FN_INLINE struct fn_ovl_net *fn_ovl_net_of(__u32 net_id)
{
	return fn_ovl_nets.lookup(&net_id);
}

FN_INLINE __u32 *fn_ovl_vni_net(__u32 vni)
{
	return fn_ovl_vnis.lookup(&vni);
}

FN_INLINE struct fn_ovl_remote *fn_ovl_remote_of(__u32 vni, __be32 ipv4)
{
	struct fn_ovl_key key = { .vni = vni, .ipv4 = ipv4 };

	return fn_ovl_remotes.lookup(&key);
}

#ifdef FN_TEST
FN_INLINE struct fn_test_state *fn_test_state_get(void)
{
	__u32 zero = 0;

	return fn_test_state.lookup(&zero);
}

FN_INLINE struct fn_test_route *fn_test_fib_of(struct fn_test_fib_key *key)
{
	return fn_test_fib.lookup(key);
}
#endif

/* ---- logic ----------------------------------------------------------------------------- */

#include "lib/eth.h"
#include "lib/ipv4.h"
#include "lib/arp.h"
#include "lib/metrics.h"
#include "lib/helpers.h"
#include "lib/bridge.h"
#include "lib/natpath.h"
#include "lib/sock.h"
#include "lib/ipvlan.h"
#include "lib/vlan.h"
#include "lib/overlay.h"

/*
 * fn_from_container — TC ingress on the host end of a container's veth: every frame the
 * container sends. Enforces the port's identity (MAC, IPv4, ARP sender), then bridges
 * within the port's network, answers ARP, or hands gateway traffic to the host.
 */
int fn_from_container(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_CONTAINER;
	__u32 peer = 0;
	fn_bridge_ret outcome;
	fn_tc_ret ret;

	fn_pull_headers(skb);
	outcome = fn_bridge_from_container(skb, &peer);

	if (outcome == FN_BR_TO_GATEWAY)
		ret = fn_nat_from_container(skb, prog);
	else if (outcome >= 0)
		ret = fn_bridge_verdict(skb, prog, outcome, peer);
	else
		ret = outcome; /* a negated drop reason: the same in both spaces */
	if (ret < 0) {
		/* Not on this host: on an overlay network, maybe on another (fn_tail_overlay). */
		if (ret == -FN_DROP_UNKNOWN_DST_MAC || ret == -FN_DROP_ARP_UNKNOWN)
			fn_tail_call(skb, FN_TAIL_OVERLAY);
		return fn_drop(skb, prog, -ret);
	}
	return ret;
}

/*
 * fn_tail_flood — fn_from_container's tail call (fn_tails[FN_TAIL_FLOOD]) for a broadcast or
 * multicast frame: a clone to every other port of the sender's network, the original dropped.
 * It counts as fn_from_container.
 */
int fn_tail_flood(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_CONTAINER;
	struct fn_endpoint *ep = fn_endpoint_of(skb->ingress_ifindex);
	int ret = ep ? fn_bridge_flood(skb, ep) : -FN_DROP_NO_ENDPOINT;

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	fn_count(skb, prog, FN_FWD_FLOOD);
	return TC_ACT_SHOT;
}

/*
 * fn_tail_overlay — fn_from_container's tail call (fn_tails[FN_TAIL_OVERLAY]) for a frame
 * whose destination is no port of this host (unicast to an unknown MAC, ARP for an unknown
 * address): on an overlay network, a container of another host gets it through the VXLAN
 * device, and ARP for it is answered here; anything else is dropped for the reason
 * fn_from_container found. It counts as fn_from_container.
 */
int fn_tail_overlay(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_CONTAINER;
	__u32 out = 0;
	int ret = fn_overlay_from_container(skb, &out);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return fn_overlay_verdict(skb, prog, ret, out);
}

/*
 * fn_from_vxlan — TC ingress on the host's external VXLAN device: every frame a container of
 * another host sends to a container of this one. The VNI names the overlay network, the inner
 * source must be a container the store places on the tunnel's remote host; delivered straight
 * into the destination container (bpf_redirect_peer).
 */
int fn_from_vxlan(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_VXLAN;
	__u32 peer = 0;
	int ret;

	fn_pull_headers(skb);
	ret = fn_overlay_from_vxlan(skb, &peer);
	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	fn_count(skb, prog, FN_FWD_OVERLAY_IN);
	return fn_redirect_peer(peer);
}

/*
 * fn_from_uplink — TC ingress on the host's uplink: every packet from the outside. Replies
 * to SNAT and packets to published ports go straight into their container; packets for
 * containers' own addresses are dropped; the rest is the host's.
 */
int fn_from_uplink(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_UPLINK;
	struct fn_host_config *cfg = fn_host_config_get();
	fn_tc_ret ret;

	fn_pull_headers(skb);
	/* The uplink may also be the parent of sub-interfaces and ipvlan networks: those first. */
	if (cfg && (cfg->flags & FN_HOST_F_UPLINK_PARENT)) {
		fn_claim_ret claim = fn_vlan_from_parent(skb, prog);

		if (claim == FN_NOT_OURS)
			claim = fn_ipvlan_from_parent(skb, prog);
		if (claim != FN_NOT_OURS)
			return claim < 0 ? fn_drop(skb, prog, -claim) : claim;
	}
	ret = fn_nat_from_uplink(skb, prog);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
}

/*
 * fn_from_route — TC ingress on each other host device with an IPv4 address (a VPN, a second
 * NIC: wherever the host's routing may send a SNAT flow): the replies of those flows go
 * straight into their container; the rest is the host's.
 */
int fn_from_route(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_ROUTE;
	fn_tc_ret ret;

	fn_pull_headers(skb);
	ret = fn_nat_from_route(skb, prog);
	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
}

/*
 * fn_from_ipvlan — TC ingress on the host end of an ipvlan container's veth: every frame the
 * container sends. Enforces its identity, then hands the frame to a sibling on the same
 * parent (bpf_redirect_peer) or sends it out of the parent: as it is in l2 mode, routed by
 * the host's FIB and neighbours in l3 mode.
 */
int fn_from_ipvlan(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_IPVLAN;
	fn_tc_ret ret;

	fn_pull_headers(skb);
	ret = fn_ipvlan_from_container(skb, prog);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
}

/*
 * fn_from_parent — TC ingress on the parent of ipvlan networks or of emulated sub-interfaces
 * (when it is not the uplink, whose fn_from_uplink does the same first): frames tagged with
 * such a sub-interface's VLAN go into it untagged, frames for an ipvlan container's address
 * into that container; everything else goes to the host untouched and uncounted.
 */
int fn_from_parent(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_PARENT;
	fn_claim_ret claim;

	fn_pull_headers(skb);
	claim = fn_vlan_from_parent(skb, prog);

	if (claim == FN_NOT_OURS)
		claim = fn_ipvlan_from_parent(skb, prog);
	if (claim == FN_NOT_OURS)
		return TC_ACT_OK;
	return claim < 0 ? fn_drop(skb, prog, -claim) : claim;
}

/*
 * fn_from_tagger — TC ingress on the tagger end of an emulated 802.1Q sub-interface: every
 * frame IF.VLAN sends leaves the parent with the VLAN's tag.
 */
int fn_from_tagger(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_TAGGER;
	fn_tc_ret ret = fn_vlan_from_tagger(skb, prog);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
}

/*
 * The socket hooks (cgroup/connect4, connect6, sendmsg4, recvmsg4, recvmsg6, getpeername4,
 * getpeername6), attached to the root cgroup: a process of this host connecting to a published
 * port (on 127.0.0.1 or any host address) is sent straight to the container's address, with no
 * proxy and no per-packet translation; the process keeps seeing the address it asked for. That
 * part acts only for sockets of the host's own network namespace. In a container's namespace
 * (ebpf projects) they send queries to 127.0.0.11:53 to the agent's resolver's ports
 * (fn_resolvers). The *6 hooks serve IPv6 sockets using IPv4-mapped addresses (::ffff:a.b.c.d,
 * Java's default): their connect(), recvmsg() and getpeername() run them; their sendto() to a
 * mapped address runs sendmsg4 (the kernel hands it to UDP over IPv4 before the IPv6 hook), so
 * there is no sendmsg6.
 */
int fn_sock_connect4(struct bpf_sock_addr *ctx)
{
	return fn_sock_to_backend(ctx, ctx->protocol, 0, 1);
}

int fn_sock_connect6(struct bpf_sock_addr *ctx)
{
	return fn_sock_to_backend(ctx, ctx->protocol, 1, 1);
}

int fn_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return fn_sock_to_backend(ctx, IPPROTO_UDP, 0, 0);
}

int fn_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx, 0, 1);
}

int fn_sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx, 1, 1);
}

int fn_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx, 0, 0);
}

int fn_sock_getpeername6(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx, 1, 0);
}

/*
 * fn_sock_bind4, fn_sock_bind6 — cgroup/bind4 and cgroup/bind6 on the root cgroup: every
 * explicit bind() of the machine. In the host's own network namespace a bind to a published
 * (address, port, protocol) fails with EADDRINUSE, so a host process can no more take a
 * published port unnoticed than under Docker (which holds them with bound sockets).
 */
int fn_sock_bind4(struct bpf_sock_addr *ctx)
{
	__be32 addr = ctx->user_ip4;
	int ret = fn_sock_bind_check(ctx, addr, addr == 0);

	return ret < 0 ? fn_sock_refuse(-ret) : FN_SOCK_ALLOW;
}

int fn_sock_bind6(struct bpf_sock_addr *ctx)
{
	int ret = fn_sock_bind6_check(ctx);

	return ret < 0 ? fn_sock_refuse(-ret) : FN_SOCK_ALLOW;
}

/*
 * fn_ct_admin — never attached: the control plane runs it with BPF_PROG_TEST_RUN to remove
 * flows (garbage collection, flush, a container's port gone) and to insert the flows of an
 * older build, so that both entries of a flow and its budget always move together in the
 * kernel. The "packet" is a struct fn_ct_admin_req and its keys or flows (abi.h).
 */
int fn_ct_admin(struct __sk_buff *skb)
{
	struct fn_ct_admin_req req;
	int n = 0;
	__u32 i;

	if (bpf_skb_load_bytes(skb, 0, &req, sizeof(req)))
		return -1;
	if (req.op == FN_CT_ADMIN_ADOPT) {
		for (i = 0; i < FN_CT_ADMIN_FLOWS && i < req.count; i++) {
			struct fn_ct_flow flow;

			if (bpf_skb_load_bytes(skb, sizeof(req) + i * sizeof(flow), &flow, sizeof(flow)))
				break;
			n += fn_ct_adopt(&flow);
		}
		return n;
	}
	for (i = 0; i < FN_CT_ADMIN_KEYS && i < req.count; i++) {
		struct fn_ct_key key;

		if (bpf_skb_load_bytes(skb, sizeof(req) + i * sizeof(key), &key, sizeof(key)))
			break;
		n += fn_ct_remove(&key, req.op == FN_CT_ADMIN_EXPIRE ? req.now : 0);
	}
	return n;
}
