/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map declarations: the only bcc-specific declarations of the datapath. Layouts are in
 * fastnet/abi.h; datapath/maps.py names the same maps. Kernel object names are at most
 * 15 characters.
 *
 * bcc rewrites map method calls only when they are spelled in the main source file, so the
 * accessors over these maps live in the "map accessors" section of fastnet.c, and the
 * logic headers in lib/ call those accessors.
 */
#ifndef FN_LIB_MAPS_H
#define FN_LIB_MAPS_H

BPF_TABLE("hash", __u32, struct fn_endpoint, fn_endpoints, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", __u32, struct fn_network, fn_networks, FN_MAX_NETWORKS);
BPF_TABLE("hash", struct fn_fdb_key, struct fn_fdb_entry, fn_fdb,
	  FN_MAX_ENDPOINTS + FN_MAX_NETWORKS);
BPF_TABLE("hash", __be32, struct fn_ip_entry, fn_ipcache, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", struct fn_flood_key, __u32, fn_flood, FN_MAX_ENDPOINTS);
BPF_TABLE("percpu_array", __u32, struct fn_metric, fn_metrics,
	  FN_PROG_MAX * FN_COUNTER_SLOTS);
BPF_TABLE("array", __u32, struct fn_host_config, fn_config, 1);
BPF_PROG_ARRAY(fn_tails, FN_TAILS);
BPF_TABLE("hash", __be32, __u32, fn_host_addrs, FN_MAX_HOST_ADDRS);
BPF_LPM_TRIE(fn_svc_addr, struct fn_svc_addr_key, struct fn_service, FN_MAX_SERVICES);
BPF_LPM_TRIE(fn_svc_any, struct fn_svc_any_key, struct fn_service, FN_MAX_SERVICES);
BPF_TABLE("array", __u32, __u64, fn_pub_ports, FN_PORT_SLOTS * FN_PORT_WORDS);
/* HASH, not LRU: a full table refuses, it never evicts (budgets keep it from filling) */
BPF_TABLE("hash", struct fn_ct_key, struct fn_ct_entry, fn_ct, FN_CT_MAX);
BPF_TABLE("array", __u32, struct fn_ct_count, fn_ct_budget, FN_CT_OWNERS);
BPF_TABLE("lru_hash", struct fn_nat_map_key, struct fn_nat_map, fn_nat_maps, FN_NAT_MAPS_MAX);
BPF_TABLE("lru_hash", struct fn_frag_key, struct fn_frag_ports, fn_frags, FN_FRAG_MAX);
BPF_SK_STORAGE(fn_sock_orig, struct fn_sock_orig);
BPF_TABLE("lru_hash", struct fn_sock_dst_key, struct fn_sock_dst, fn_sock_dsts, FN_SOCK_DSTS_MAX);
BPF_TABLE("hash", __u32, struct fn_ipvlan_port, fn_ipvlan_ports, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", struct fn_ipvlan_key, struct fn_ipvlan_dst, fn_ipvlan_addrs, FN_MAX_ENDPOINTS);
BPF_TABLE("hash", struct fn_vlan_key, struct fn_vlan, fn_vlans, 2 * FN_MAX_NETWORKS);
BPF_TABLE("hash", __u64, struct fn_resolver, fn_resolvers, FN_MAX_ENDPOINTS);
/* overlay networks (lib/overlay.h) */
BPF_TABLE("hash", __u32, struct fn_ovl_net, fn_ovl_nets, FN_MAX_NETWORKS);
BPF_TABLE("hash", __u32, __u32, fn_ovl_vnis, FN_MAX_NETWORKS);
BPF_TABLE("hash", struct fn_ovl_key, struct fn_ovl_remote, fn_ovl_remotes, FN_OVL_MAX_REMOTES);
#ifdef FN_TEST
BPF_TABLE("array", __u32, struct fn_test_state, fn_test_state, 1);
/* Never used: they make bcc export the layouts of fn_ct_admin's request, which no map holds,
 * so that tests/bpf/test_abi.py can check their Python mirrors too. */
BPF_TABLE("array", __u32, struct fn_ct_admin_req, fn_test_ct_req, 1);
BPF_TABLE("array", __u32, struct fn_ct_flow, fn_test_ct_flow, 1);
BPF_LPM_TRIE(fn_test_fib, struct fn_test_fib_key, struct fn_test_route, 1024);
#endif

#endif
