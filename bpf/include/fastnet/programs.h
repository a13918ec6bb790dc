/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every program of the datapath, and who counts into fn_metrics, declared once. fastnet.c
 * expands FN_PROGRAMS into the entries' prototypes (a definition with another context type
 * does not compile); datapath/declared.py parses both tables (keep one X(...) per line in
 * exactly these shapes) and derives what the loader loads, pins and fills, what the socket
 * hooks are linked as and whose counters `fastnet` shows; tests/bpf/test_declared.py checks
 * them against the compiled object and the kernel.
 */
#ifndef FASTNET_PROGRAMS_H
#define FASTNET_PROGRAMS_H

#include "fastnet/abi.h"

/*
 * Counter owners: each owns FN_COUNTER_SLOTS consecutive slots of fn_metrics, from
 * slot * FN_COUNTER_SLOTS (at most FN_PROG_MAX of them: fn_metrics' capacity).
 *   X(ID, slot, name shown by `fastnet`)
 * APPEND-ONLY: slots are keys of a pinned map; never renumber or reuse one.
 */
#define FN_COUNTER_OWNERS(X) \
	X(FN_PROG_FROM_CONTAINER, 0, fn_from_container) \
	X(FN_PROG_FROM_UPLINK,    1, fn_from_uplink) \
	X(FN_PROG_SOCK,           2, fn_sock) \
	X(FN_PROG_FROM_IPVLAN,    3, fn_from_ipvlan) \
	X(FN_PROG_FROM_PARENT,    4, fn_from_parent) \
	X(FN_PROG_FROM_TAGGER,    5, fn_from_tagger) \
	X(FN_PROG_FROM_ROUTE,     6, fn_from_route) \
	X(FN_PROG_FROM_VXLAN,     7, fn_from_vxlan)

enum fn_counter_owner {
#define FN_COUNTER_OWNER_ENUM(id, slot, shown) id = slot,
	FN_COUNTER_OWNERS(FN_COUNTER_OWNER_ENUM)
#undef FN_COUNTER_OWNER_ENUM
};

#define FN_COUNTER_OWNER_FITS(id, slot, shown) \
	_Static_assert(slot < FN_PROG_MAX, #id ": fn_metrics has no room for its slot");
FN_COUNTER_OWNERS(FN_COUNTER_OWNER_FITS)
#undef FN_COUNTER_OWNER_FITS

/*
 *   X(name, PROG_TYPE, ATTACH, COUNTS_AS, TAIL_SLOT)
 *
 * PROG_TYPE  the uapi program type without BPF_PROG_TYPE_: SCHED_CLS (TC) or CGROUP_SOCK_ADDR
 * ATTACH     how it comes to run:
 *              TC_INGRESS  the control plane attaches it at TC ingress (control/backends/ebpf.py
 *                          says on which devices)
 *              TAIL_CALL   the loader puts it in fn_tails[TAIL_SLOT]; it runs as its caller
 *              TEST_RUN    never attached: the control plane runs it with BPF_PROG_TEST_RUN
 *              BPF_CGROUP_...  a name of the uapi enum bpf_attach_type: a socket hook, linked
 *                          to the root cgroup (datapath/sockhooks.py); resolved by name
 * COUNTS_AS  the counter owner it counts under (FN_PROG_*), NONE if it counts nothing
 * TAIL_SLOT  FN_TAIL_* for a TAIL_CALL program, NONE otherwise
 *
 * The *6 socket hooks serve IPv6 sockets with IPv4-mapped addresses; there is no sendmsg6 (a
 * sendto() to a mapped address runs sendmsg4). bind6 also sees "::".
 */
#define FN_PROGRAMS(X) \
	X(fn_from_container,    SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_CONTAINER, NONE) \
	X(fn_from_uplink,       SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_UPLINK,    NONE) \
	X(fn_from_ipvlan,       SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_IPVLAN,    NONE) \
	X(fn_from_parent,       SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_PARENT,    NONE) \
	X(fn_from_tagger,       SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_TAGGER,    NONE) \
	X(fn_from_route,        SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_ROUTE,     NONE) \
	X(fn_from_vxlan,        SCHED_CLS,        TC_INGRESS,                   FN_PROG_FROM_VXLAN,     NONE) \
	X(fn_ct_admin,          SCHED_CLS,        TEST_RUN,                     NONE,                   NONE) \
	X(fn_tail_flood,        SCHED_CLS,        TAIL_CALL,                    FN_PROG_FROM_CONTAINER, FN_TAIL_FLOOD) \
	X(fn_tail_overlay,      SCHED_CLS,        TAIL_CALL,                    FN_PROG_FROM_CONTAINER, FN_TAIL_OVERLAY) \
	X(fn_sock_connect4,     CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT,     FN_PROG_SOCK,           NONE) \
	X(fn_sock_sendmsg4,     CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_SENDMSG,      FN_PROG_SOCK,           NONE) \
	X(fn_sock_recvmsg4,     CGROUP_SOCK_ADDR, BPF_CGROUP_UDP4_RECVMSG,      FN_PROG_SOCK,           NONE) \
	X(fn_sock_getpeername4, CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_GETPEERNAME, FN_PROG_SOCK,           NONE) \
	X(fn_sock_connect6,     CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_CONNECT,     FN_PROG_SOCK,           NONE) \
	X(fn_sock_recvmsg6,     CGROUP_SOCK_ADDR, BPF_CGROUP_UDP6_RECVMSG,      FN_PROG_SOCK,           NONE) \
	X(fn_sock_getpeername6, CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_GETPEERNAME, FN_PROG_SOCK,           NONE) \
	X(fn_sock_bind4,        CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_BIND,        FN_PROG_SOCK,           NONE) \
	X(fn_sock_bind6,        CGROUP_SOCK_ADDR, BPF_CGROUP_INET6_BIND,        FN_PROG_SOCK,           NONE)

/* The context each program type receives (used for the prototypes fastnet.c expands). */
#define FN_PROG_CTX_SCHED_CLS        struct __sk_buff
#define FN_PROG_CTX_CGROUP_SOCK_ADDR struct bpf_sock_addr

#endif /* FASTNET_PROGRAMS_H */
