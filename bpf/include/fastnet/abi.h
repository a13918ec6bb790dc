/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ABI between fastnet's BPF programs and its control plane.
 *
 * Every struct that crosses the kernel/user boundary is declared here and only here.
 * datapath/abi.py mirrors each one by hand; tests/bpf/test_abi.py and the loader compare
 * sizes and every field offset against what bcc compiled, and refuse to run on a mismatch.
 *
 * Rules: fixed-width types only, no bitfields, explicit padding, each struct a multiple of
 * 4 bytes. Byte order is stated per field: "be" = network order, everything else host order.
 * Bump FASTNET_ABI_VERSION on any change to a struct, a map's type or its key/value.
 */
#ifndef FASTNET_ABI_H
#define FASTNET_ABI_H

#define FASTNET_ABI_VERSION 1

/* Map capacities. The control plane may not exceed them (it checks before writing). */
#define FN_MAX_ENDPOINTS       4096   /* container interfaces per project */
#define FN_MAX_NETWORKS        256
#define FN_MAX_FLOOD_PORTS     256    /* ports per network that receive broadcast */

/* Programs that count into fn_metrics; each owns FN_COUNTER_SLOTS consecutive slots. */
#define FN_PROG_FROM_CONTAINER 0
#define FN_PROG_MAX            8
#define FN_COUNTER_SLOTS       64

/*
 * fn_endpoints: HASH, key = __u32 ifindex of the host end of a container's veth.
 * Written by the control plane when it attaches an interface; read by fn_from_container
 * for every packet (the anti-spoofing identity of the port).
 */
struct fn_endpoint {
	__u8   mac[6];        /* the container interface's MAC */
	__u16  flags;         /* FN_EP_F_* */
	__be32 ipv4;          /* be: the container interface's address */
	__u32  net_id;        /* network the port belongs to (fn_networks key) */
};

/*
 * fn_networks: HASH, key = __u32 net_id. Written by the control plane per network.
 */
struct fn_network {
	__be32 gateway;       /* be: gateway address, owned by the host */
	__be32 subnet;        /* be: network address */
	__be32 netmask;       /* be */
	__u8   gateway_mac[6];/* MAC the gateway answers ARP with (= MAC of every host-side veth) */
	__u16  flags;         /* FN_NET_F_* */
	__u32  flood_ports;   /* number of valid fn_flood slots for this network */
};

#define FN_NET_F_INTERNAL 0x1 /* no traffic to or from outside the host */

/*
 * fn_fdb: HASH, the L2 forwarding table of every network.
 * Key = (network, MAC); value = where frames to that MAC go.
 */
struct fn_fdb_key {
	__u32 net_id;
	__u8  mac[6];
	__u16 pad;            /* always 0: part of the hashed key */
};

struct fn_fdb_entry {
	__u32 ifindex;        /* host end of the destination container's veth; 0 for the gateway */
	__u32 flags;          /* FN_FDB_F_* */
};

#define FN_FDB_F_GATEWAY 0x1  /* the MAC is the network's gateway: hand the frame to the host */

/*
 * fn_ipcache: HASH, key = __be32 address of a container interface.
 * Used to answer ARP for peers and to stop routing between networks through the gateway.
 */
struct fn_ip_entry {
	__u32 ifindex;        /* host end of the container's veth */
	__u32 net_id;
	__u8  mac[6];
	__u16 flags;          /* unused, 0 */
};

/* fn_flood: HASH, key = (net_id, slot < flood_ports) -> __u32 ifindex to clone broadcasts to. */
struct fn_flood_key {
	__u32 net_id;
	__u32 slot;
};

/*
 * fn_metrics: PERCPU_ARRAY, key = __u32 prog * FN_COUNTER_SLOTS + counter id
 * (counter ids in fastnet/counters.h). Written by the programs, summed by the control plane.
 */
struct fn_metric {
	__u64 packets;
	__u64 bytes;
};

/* fn_test_redirects: ARRAY used only by the test build (FN_TEST): what a run would redirect. */
#define FN_TEST_MAX_REDIRECTS 16
struct fn_test_redirects {
	__u32 count;          /* entries written by the last run (the test zeroes it before a run) */
	__u32 ifindex[FN_TEST_MAX_REDIRECTS];
	__u32 kind[FN_TEST_MAX_REDIRECTS]; /* FN_REDIRECT_* */
};

#define FN_REDIRECT_PEER    1 /* bpf_redirect_peer: into the namespace of the device's peer */
#define FN_REDIRECT_EGRESS  2 /* bpf_redirect to the device's egress */
#define FN_REDIRECT_CLONE   3 /* bpf_clone_redirect to the device's egress */

#endif /* FASTNET_ABI_H */
