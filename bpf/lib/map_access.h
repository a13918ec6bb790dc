/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prototypes of the map accessors, the only code that touches a map. They are defined in
 * fastnet.c because bcc rewrites map method calls only in its main source file; declaring
 * them here lets every header of lib/ compile on its own, whatever includes it and in which
 * order (tests/bpf/test_headers.py compiles each one alone).
 */
#ifndef FN_LIB_MAP_ACCESS_H
#define FN_LIB_MAP_ACCESS_H

#include "common.h"

struct bpf_sock;

FN_INLINE struct fn_endpoint *fn_endpoint_of(__u32 ifindex);
FN_INLINE struct fn_network *fn_network_of(__u32 net_id);
FN_INLINE struct fn_fdb_entry *fn_fdb_of(struct fn_fdb_key *key);
FN_INLINE struct fn_ip_entry *fn_ipcache_of(__be32 addr);
FN_INLINE __u32 *fn_flood_port(struct fn_flood_key *key);
FN_INLINE struct fn_metric *fn_metric_slot(__u32 slot);
FN_INLINE struct fn_host_config *fn_host_config_get(void);
FN_INLINE __u32 *fn_host_addr_get(__be32 addr);
FN_INLINE struct fn_service *fn_svc_addr_get(struct fn_svc_addr_key *key);
FN_INLINE struct fn_service *fn_svc_any_get(struct fn_svc_any_key *key);
FN_INLINE __u64 *fn_pub_ports_word(__u32 index);

FN_INLINE struct fn_ct_entry *fn_ct_get(const struct fn_ct_key *key);
/* Only if the key is free (BPF_NOEXIST: bcc's insert()): 0, -EEXIST, or -E2BIG when full. */
FN_INLINE int fn_ct_insert(const struct fn_ct_key *key, struct fn_ct_entry *e);
/* 0 when this call removed the entry. */
FN_INLINE int fn_ct_delete(const struct fn_ct_key *key);
FN_INLINE struct fn_ct_count *fn_ct_count_of(__u32 owner);

FN_INLINE struct fn_nat_map *fn_nat_map_get(const struct fn_nat_map_key *key);
/* flags BPF_NOEXIST: only if the key is free; otherwise create or replace. */
FN_INLINE int fn_nat_map_insert(const struct fn_nat_map_key *key, struct fn_nat_map *m, __u64 flags);
FN_INLINE struct fn_frag_ports *fn_frag_get(struct fn_frag_key *key);
FN_INLINE void fn_frag_put(struct fn_frag_key *key, struct fn_frag_ports *ports);

FN_INLINE struct fn_ipvlan_port *fn_ipvlan_port_of(__u32 ifindex);
FN_INLINE struct fn_ipvlan_dst *fn_ipvlan_dst_of(struct fn_ipvlan_key *key);
FN_INLINE struct fn_vlan *fn_vlan_of(struct fn_vlan_key *key);

/* create: make the socket's storage if it has none */
FN_INLINE struct fn_sock_orig *fn_sock_orig_get(struct bpf_sock *sk, int create);
FN_INLINE struct fn_sock_dst *fn_sock_dst_get(const struct fn_sock_dst_key *key);
FN_INLINE void fn_sock_dst_set(const struct fn_sock_dst_key *key, struct fn_sock_dst *d);
FN_INLINE struct fn_resolver *fn_resolver_of(__u64 netns_cookie);

FN_INLINE struct fn_ovl_net *fn_ovl_net_of(__u32 net_id);
FN_INLINE __u32 *fn_ovl_vni_net(__u32 vni);
FN_INLINE struct fn_ovl_remote *fn_ovl_remote_of(__u32 vni, __be32 ipv4);

/* Returns only when the slot is empty: the caller drops (drop_tail_call). */
FN_INLINE void fn_tail_call(struct __sk_buff *skb, __u32 slot);

#ifdef FN_TEST
FN_INLINE struct fn_test_state *fn_test_state_get(void);
FN_INLINE struct fn_test_route *fn_test_fib_of(struct fn_test_fib_key *key);
#endif

#endif
