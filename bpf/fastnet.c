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

FN_INLINE struct fn_ct_entry *fn_ct_confirmed_get(const struct fn_ct_key *key)
{
	return fn_ct.lookup((struct fn_ct_key *)key);
}

/* bcc spells BPF_NOEXIST as insert() and BPF_ANY as update(). */
FN_INLINE int fn_ct_confirmed_insert(const struct fn_ct_key *key, struct fn_ct_entry *e, __u64 flags)
{
	if (flags == BPF_NOEXIST)
		return fn_ct.insert((struct fn_ct_key *)key, e);
	return fn_ct.update((struct fn_ct_key *)key, e);
}

FN_INLINE struct fn_ct_entry *fn_ct_new_get(const struct fn_ct_key *key)
{
	return fn_ct_new.lookup((struct fn_ct_key *)key);
}

FN_INLINE int fn_ct_new_insert(const struct fn_ct_key *key, struct fn_ct_entry *e, __u64 flags)
{
	if (flags == BPF_NOEXIST)
		return fn_ct_new.insert((struct fn_ct_key *)key, e);
	return fn_ct_new.update((struct fn_ct_key *)key, e);
}

FN_INLINE void fn_ct_new_remove(const struct fn_ct_key *key)
{
	fn_ct_new.delete((struct fn_ct_key *)key);
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

FN_INLINE struct fn_resolver *fn_resolver_of(__u64 netns_cookie)
{
	return fn_resolvers.lookup(&netns_cookie);
}

#ifdef FN_TEST
FN_INLINE struct fn_test_state *fn_test_state_get(void)
{
	__u32 zero = 0;

	return fn_test_state.lookup(&zero);
}

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

/*
 * fn_from_container — TC ingress on the host end of a container's veth: every frame the
 * container sends. Enforces the port's identity (MAC, IPv4, ARP sender), then bridges
 * within the port's network, answers ARP, or hands gateway traffic to the host.
 */
int fn_from_container(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_CONTAINER;
	__u32 peer = 0;
	int ret;

	fn_pull_headers(skb);
	ret = fn_bridge_from_container(skb, &peer);

	if (ret == FN_BR_TO_GATEWAY)
		ret = fn_nat_from_container(skb, prog);
	else if (ret >= 0)
		ret = fn_bridge_verdict(skb, prog, ret, peer);
	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
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
	int ret;

	fn_pull_headers(skb);
	/* The uplink may also be the parent of sub-interfaces and ipvlan networks: those first. */
	if (cfg && (cfg->flags & FN_HOST_F_UPLINK_PARENT)) {
		ret = fn_vlan_from_parent(skb, prog);
		if (ret == FN_VLAN_NOT_OURS)
			ret = fn_ipvlan_from_parent(skb, prog);
		if (ret != FN_IPVLAN_NOT_OURS)
			return ret < 0 ? fn_drop(skb, prog, -ret) : ret;
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
	int ret;

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
	int ret;

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
	int ret;

	fn_pull_headers(skb);
	ret = fn_vlan_from_parent(skb, prog);

	if (ret == FN_VLAN_NOT_OURS)
		ret = fn_ipvlan_from_parent(skb, prog);
	if (ret == FN_IPVLAN_NOT_OURS)
		return TC_ACT_OK;
	return ret < 0 ? fn_drop(skb, prog, -ret) : ret;
}

/*
 * fn_from_tagger — TC ingress on the tagger end of an emulated 802.1Q sub-interface: every
 * frame IF.VLAN sends leaves the parent with the VLAN's tag.
 */
int fn_from_tagger(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_TAGGER;
	int ret = fn_vlan_from_tagger(skb, prog);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return ret;
}

/*
 * The socket hooks (cgroup/connect4, sendmsg4, recvmsg4, getpeername4), attached to the root
 * cgroup: a process of this host connecting to a published port (on 127.0.0.1 or any host
 * address) is sent straight to the container's address, with no proxy and no per-packet
 * translation; the process keeps seeing the address it asked for. That part acts only for
 * sockets of the host's own network namespace. In a container's namespace (ebpf projects)
 * they send queries to 127.0.0.11:53 to the agent's resolver's ports (fn_resolvers).
 */
int fn_sock_connect4(struct bpf_sock_addr *ctx)
{
	return fn_sock_to_backend(ctx, ctx->protocol);
}

int fn_sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return fn_sock_to_backend(ctx, IPPROTO_UDP);
}

int fn_sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx);
}

int fn_sock_getpeername4(struct bpf_sock_addr *ctx)
{
	return fn_sock_from_backend(ctx);
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
