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

#ifdef FN_TEST
FN_INLINE void fn_test_record(__u32 kind, __u32 ifindex)
{
	__u32 zero = 0;
	struct fn_test_redirects *r = fn_test_redir.lookup(&zero);

	if (r && r->count < FN_TEST_MAX_REDIRECTS) {
		__u32 i = r->count;

		r->ifindex[i] = ifindex;
		r->kind[i] = kind;
		r->count = i + 1;
	}
}
#endif

/* ---- logic ----------------------------------------------------------------------------- */

#include "lib/eth.h"
#include "lib/ipv4.h"
#include "lib/arp.h"
#include "lib/metrics.h"
#include "lib/redirect.h"
#include "lib/bridge.h"

/*
 * fn_from_container — TC ingress on the host end of a container's veth: every frame the
 * container sends. Enforces the port's identity (MAC, IPv4, ARP sender), then bridges
 * within the port's network, answers ARP, or hands gateway traffic to the host.
 */
int fn_from_container(struct __sk_buff *skb)
{
	const __u32 prog = FN_PROG_FROM_CONTAINER;
	int ret = fn_bridge_from_container(skb);

	if (ret < 0)
		return fn_drop(skb, prog, -ret);
	return fn_bridge_verdict(skb, prog, ret);
}
