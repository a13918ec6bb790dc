/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every map of the datapath, declared once. bpf/lib/maps.h expands this table into bcc's
 * declarations; datapath/declared.py parses it (so keep one X(...) per line in exactly this
 * shape), derives the loader's list of maps and the (key, value) mirrors the ABI check
 * compares, and tests/bpf/test_declared.py checks every loaded map's type, key size, value
 * size, capacity and flags against it with BPF_OBJ_GET_INFO_BY_FD.
 *
 *   X(name, TYPE, key type, value type, capacity, flags, SCOPE)
 *
 * name     the kernel object's name: at most 15 characters
 * TYPE     the uapi map type without BPF_MAP_TYPE_ (HASH, ARRAY, PERCPU_ARRAY, LRU_HASH,
 *          LPM_TRIE, PROG_ARRAY, SK_STORAGE); the test resolves it in the uapi enum by name
 * key, value  C types from abi.h (layouts: the structs' comments there)
 * capacity an expression over abi.h's constants and compile-time settings (FN_CT_MAX, ...)
 * flags    map_flags: 0, or BPF_F_NO_PREALLOC where the kernel requires it (LPM_TRIE, SK_STORAGE)
 * SCOPE    PINNED: every build; the loader pins it and the control plane opens it by name.
 *          PROGRAMS_ONLY: every build; only the programs touch it, so it is neither pinned nor
 *            mirrored (bcc 0.26 cannot open an SK_STORAGE map from Python).
 *          TEST_BUILD: only with FN_TEST (the test-run seam of lib/helpers.h, and layouts the
 *            tests check that no map would otherwise export).
 *
 * A map's type, key or value changing is an ABI change: bump FASTNET_ABI_VERSION (abi.h).
 * Bucket counts here are not: the pin directory's name carries the sources' hash.
 */
#ifndef FASTNET_MAPS_H
#define FASTNET_MAPS_H

#include "fastnet/abi.h"

#define FN_MAPS(X) \
	X(fn_endpoints,    HASH,         __u32,                   struct fn_endpoint,     FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_networks,     HASH,         __u32,                   struct fn_network,      FN_MAX_NETWORKS,                    0,                 PINNED) \
	X(fn_fdb,          HASH,         struct fn_fdb_key,       struct fn_fdb_entry,    FN_MAX_ENDPOINTS + FN_MAX_NETWORKS, 0,                 PINNED) \
	X(fn_ipcache,      HASH,         __be32,                  struct fn_ip_entry,     FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_flood,        HASH,         struct fn_flood_key,     __u32,                  FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_metrics,      PERCPU_ARRAY, __u32,                   struct fn_metric,       FN_PROG_MAX * FN_COUNTER_SLOTS,     0,                 PINNED) \
	X(fn_config,       ARRAY,        __u32,                   struct fn_host_config,  1,                                  0,                 PINNED) \
	X(fn_tails,        PROG_ARRAY,   __u32,                   __u32,                  FN_TAILS,                           0,                 PINNED) \
	X(fn_host_addrs,   HASH,         __be32,                  __u32,                  FN_MAX_HOST_ADDRS,                  0,                 PINNED) \
	X(fn_svc_addr,     LPM_TRIE,     struct fn_svc_addr_key,  struct fn_service,      FN_MAX_SERVICES,                    BPF_F_NO_PREALLOC, PINNED) \
	X(fn_svc_any,      LPM_TRIE,     struct fn_svc_any_key,   struct fn_service,      FN_MAX_SERVICES,                    BPF_F_NO_PREALLOC, PINNED) \
	X(fn_pub_ports,    ARRAY,        __u32,                   __u64,                  FN_PORT_SLOTS * FN_PORT_WORDS,      0,                 PINNED) \
	X(fn_ct,           HASH,         struct fn_ct_key,        struct fn_ct_entry,     FN_CT_MAX,                          0,                 PINNED) \
	X(fn_ct_budget,    ARRAY,        __u32,                   struct fn_ct_count,     FN_CT_OWNERS,                       0,                 PINNED) \
	X(fn_nat_maps,     LRU_HASH,     struct fn_nat_map_key,   struct fn_nat_map,      FN_NAT_MAPS_MAX,                    0,                 PINNED) \
	X(fn_frags,        LRU_HASH,     struct fn_frag_key,      struct fn_frag_ports,   FN_FRAG_MAX,                        0,                 PINNED) \
	X(fn_sock_orig,    SK_STORAGE,   int,                     struct fn_sock_orig,    0,                                  BPF_F_NO_PREALLOC, PROGRAMS_ONLY) \
	X(fn_sock_dsts,    LRU_HASH,     struct fn_sock_dst_key,  struct fn_sock_dst,     FN_SOCK_DSTS_MAX,                   0,                 PINNED) \
	X(fn_ipvlan_ports, HASH,         __u32,                   struct fn_ipvlan_port,  FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_ipvlan_addrs, HASH,         struct fn_ipvlan_key,    struct fn_ipvlan_dst,   FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_vlans,        HASH,         struct fn_vlan_key,      struct fn_vlan,         2 * FN_MAX_NETWORKS,                0,                 PINNED) \
	X(fn_resolvers,    HASH,         __u64,                   struct fn_resolver,     FN_MAX_ENDPOINTS,                   0,                 PINNED) \
	X(fn_ovl_nets,     HASH,         __u32,                   struct fn_ovl_net,      FN_MAX_NETWORKS,                    0,                 PINNED) \
	X(fn_ovl_vnis,     HASH,         __u32,                   __u32,                  FN_MAX_NETWORKS,                    0,                 PINNED) \
	X(fn_ovl_remotes,  HASH,         struct fn_ovl_key,       struct fn_ovl_remote,   FN_OVL_MAX_REMOTES,                 0,                 PINNED) \
	X(fn_test_state,   ARRAY,        __u32,                   struct fn_test_state,   1,                                  0,                 TEST_BUILD) \
	X(fn_test_ct_req,  ARRAY,        __u32,                   struct fn_ct_admin_req, 1,                                  0,                 TEST_BUILD) \
	X(fn_test_ct_flow, ARRAY,        __u32,                   struct fn_ct_flow,      1,                                  0,                 TEST_BUILD) \
	X(fn_test_fib,     LPM_TRIE,     struct fn_test_fib_key,  struct fn_test_route,   1024,                               BPF_F_NO_PREALLOC, TEST_BUILD)

/*
 * fn_test_ct_req and fn_test_ct_flow are never used: they make bcc export the layouts of
 * fn_ct_admin's request, which no map holds, so that tests/bpf/test_abi.py checks their
 * Python mirrors too. fn_ct is a HASH, not an LRU: a full table refuses, it never evicts
 * (the budgets keep it from filling).
 */

#endif /* FASTNET_MAPS_H */
