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

#define FASTNET_ABI_VERSION 11

/* Map capacities. The control plane may not exceed them (it checks before writing). */
#define FN_MAX_ENDPOINTS       4096   /* container interfaces per project */
#define FN_MAX_NETWORKS        256
#define FN_MAX_FLOOD_PORTS     256    /* ports per network that receive broadcast */

/* Connection tracking capacity: entries of fn_ct, two per flow. The control plane sets it at
 * compile time to 2 x (max_flows + max_new_flows) + FN_CT_SLACK (it is part of the pinned
 * layout's identity); the budgets in fn_config keep the flows within it. */
#ifndef FN_CT_MAX
#define FN_CT_MAX              147712 /* 2 x (65536 + 8192) + FN_CT_SLACK */
#endif
#define FN_CT_SLACK            256    /* entries beyond the budgets: flows being removed */
#define FN_MAX_SERVICES        65536  /* LPM prefixes of published ports */
#define FN_MAX_HOST_ADDRS      256
#define FN_SNAT_TRIES          32     /* bounded search for a free SNAT port */
#ifndef FN_NAT_MAPS_MAX
#define FN_NAT_MAPS_MAX        131072 /* SNAT mappings x 2 directions (fn_nat_maps) */
#endif

/* Default conntrack timeouts in seconds (Linux/Cilium spirit); fn_config carries the ones
 * in force. */
#define FN_CT_TIMEOUT_TCP_SYN         60
#define FN_CT_TIMEOUT_TCP_ESTABLISHED 21600
#define FN_CT_TIMEOUT_TCP_HALF_CLOSED 240  /* one FIN seen: RFC 5382's 4-minute minimum */
#define FN_CT_TIMEOUT_TCP_CLOSING     10   /* FIN both ways, or RST */
#define FN_CT_TIMEOUT_UDP             60
#define FN_CT_TIMEOUT_ICMP            30
/* Refresh a confirmed entry's deadline at most this often (seconds): fewer writes. */
#define FN_CT_REFRESH_INTERVAL        1

/* fn_metrics: room for this many counter owners (fastnet/programs.h), FN_COUNTER_SLOTS each. */
#define FN_PROG_MAX            8
#define FN_COUNTER_SLOTS       64

/*
 * fn_tails: PROG_ARRAY, key = slot, value = a program the entry programs tail-call. Work with
 * a long loop lives in a program of its own, so the verifier walks it once, not inside every
 * path of its caller (fn_from_container's flood loop alone took 750,000 of the verifier's
 * 1,000,000 instructions). The loader fills the slots; a missing one is counted
 * (drop_tail_call). A tail-called program counts as the program that called it.
 */
#define FN_TAIL_FLOOD          0      /* fn_tail_flood: a frame to every other port of its network */
#define FN_TAIL_OVERLAY        1      /* fn_tail_overlay: a frame for a container on another host */
#define FN_TAILS               2

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

/*
 * fn_config: ARRAY with one entry (key 0): the host. Written by the control plane at `up`.
 */
/* The uplink is also the parent of ipvlan networks or of 802.1Q sub-interfaces, so
 * fn_from_uplink does fn_from_parent's work first; without it that work (an IPv4 parse and
 * a hash lookup) stays off every uplink packet's path. */
#define FN_HOST_F_UPLINK_PARENT 0x1

struct fn_host_config {
	__u64  netns_cookie;   /* the host's network namespace, for the socket hooks */
	__u32  uplink_ifindex; /* 0: no uplink, nothing is translated */
	__be32 uplink_ipv4;    /* be: source address of SNAT */
	__u16  snat_port_min;  /* first SNAT port (host order), outside ip_local_port_range */
	__u16  snat_port_max;  /* last SNAT port (host order) */
	__u32  flags;          /* FN_HOST_F_* */
	__u32  timeout_tcp_syn;         /* conntrack timeouts, seconds */
	__u32  timeout_tcp_established;
	__u32  timeout_tcp_closing;
	__u32  timeout_udp;
	__u32  timeout_icmp;
	__u32  timeout_tcp_half_closed;
	/* Conntrack budgets (flows, not entries; datapath/maps.py ct_budgets() computes them from
	 * the `conntrack:` settings): from outside to published ports ("in"), the containers' own
	 * ("out": SNAT and hairpin); "new" ones wait for their confirmation; "port" is one
	 * published (protocol, port)'s share of the in budgets, "container" one container's of
	 * the out budgets. A flow over any of them is refused (drop_ct_new_full, drop_ct_full). */
	__u32  ct_in_max;
	__u32  ct_in_new_max;
	__u32  ct_out_max;
	__u32  ct_out_new_max;
	__u32  ct_port_max;
	__u32  ct_port_new_max;
	__u32  ct_container_max;
	__u32  ct_container_new_max;
	__u32  fib_ifindex;    /* the device FIB lookups are made as if arriving on (forwarding=1,
	                        * down, no address: control/routing.py); 0: none, the routing
	                        * checks fall back to the host's address table */
	__u32  uplink_mtu;     /* the uplink's MTU: a packet within it leaves without asking
	                        * bpf_check_mtu; 0: unknown, always ask */
};

/*
 * ipvlan without the kernel module (control/drivers.py): each container of an ipvlan network
 * has a veth whose container end carries the parent's MAC.
 *
 * fn_ipvlan_ports: HASH, key = __u32 ifindex of the host end of an ipvlan container's veth.
 * Written by the control plane when it attaches the port; read by fn_from_ipvlan for every
 * frame the container sends (its identity, and where its frames leave).
 */
struct fn_ipvlan_port {
	__u8   mac[6];          /* the parent's MAC, which the container interface also has */
	__u16  flags;           /* FN_IPVLAN_F_* */
	__be32 ipv4;            /* be: the container's address */
	__u32  parent_ifindex;  /* the host interface its frames leave by */
};

#define FN_IPVLAN_F_L3 0x1 /* l3 mode: routed by the host, no ARP for the container on the wire */

/*
 * fn_ipvlan_addrs: HASH, key = (parent ifindex, container address): which container a frame
 * arriving on the parent (fn_from_parent, fn_from_uplink) or sent by a sibling container
 * (fn_from_ipvlan) is for. Written by the control plane.
 */
struct fn_ipvlan_key {
	__u32  parent_ifindex;
	__be32 ipv4;            /* be */
};

struct fn_ipvlan_dst {
	__u32  ifindex;         /* host end of the container's veth (bpf_redirect_peer target) */
	__u8   mac[6];          /* the parent's MAC: unicast for the container is addressed to it */
	__u16  flags;           /* FN_IPVLAN_F_* */
};

/*
 * fn_vlans: HASH. An 802.1Q sub-interface IF.VLAN where the kernel has no 802.1Q driver
 * (control/drivers.py): IF.VLAN is one end of a veth pair, its "tagger" the other end.
 *   key (parent ifindex, VLAN id) -> (tagger ifindex, VLAN id): tagged frames from the wire
 *   key (tagger ifindex, 0)       -> (parent ifindex, VLAN id): frames IF.VLAN sends
 * Written by the control plane; read by fn_from_parent / fn_from_uplink and fn_from_tagger.
 */
struct fn_vlan_key {
	__u32 ifindex;
	__u32 vid;             /* 1..4094; 0 in a tagger's key */
};

struct fn_vlan {
	__u32 ifindex;         /* where the frame goes (bpf_redirect to its egress) */
	__u32 vid;
};

/* fn_host_addrs: HASH, key = __be32 address local to the host -> __u32 FN_ADDR_F_*. */
#define FN_ADDR_F_LOOPBACK 0x1

/*
 * Published ports. Two LPM tries so that a range costs O(log size) entries and a lookup is
 * independent of how many ports are published: fn_svc_addr for ports published on one host
 * address (data = proto, address, port), fn_svc_any for ports on every host address
 * (data = proto, port). prefixlen counts bits of the data after it.
 */
struct fn_svc_addr_key {
	__u32 prefixlen;       /* 8 + 32 + port prefix bits */
	__u8  proto;
	__u8  addr[4];         /* be */
	__u8  port[2];         /* be */
	__u8  pad;
};

struct fn_svc_any_key {
	__u32 prefixlen;       /* 8 + port prefix bits */
	__u8  proto;
	__u8  port[2];         /* be */
	__u8  pad;
};

struct fn_service {
	__be32 backend_ipv4;       /* be */
	__u32  backend_ifindex;    /* host end of the backend container's port */
	__u16  host_port_first;    /* host order: published port = backend_port_first + (port - this) */
	__u16  backend_port_first; /* host order */
	__u8   backend_mac[6];
	__u16  flags;              /* FN_SVC_F_* */
	__be32 gateway;            /* be: gateway of the backend's network */
	__u8   gateway_mac[6];
	__u16  pad;
};

#define FN_SVC_F_LOCAL_ONLY 0x1    /* published on 127.0.0.1: host processes only */

/*
 * fn_pub_ports: ARRAY of __u64 words, a bitmap of every published (protocol, port) whatever
 * the address (every host address, one address, 127.0.0.1): key = protocol slot *
 * FN_PORT_WORDS + port / 64, bit port % 64 (ports in host order). Written by the control
 * plane together with the tries above (datapath/maps.py); read with fn_port_published()
 * (bpf/lib/service.h) as the one-lookup answer to "is this port published at all?" before
 * any trie lookup: the bind hooks ask it first, as every bind() of the machine runs them.
 */
#define FN_PORT_WORDS    1024   /* 65536 ports / 64 bits */
#define FN_PORT_SLOT_TCP 0
#define FN_PORT_SLOT_UDP 1
#define FN_PORT_SLOTS    2

/*
 * Connection tracking: fn_ct, a HASH (not LRU: nothing is ever evicted; a full budget refuses
 * new flows instead, see fn_host_config). Each flow has two entries, one per direction, each
 * keyed by the tuple of the packets it matches as they arrive and holding the tuple they
 * leave with. Written by the programs; the control plane removes and inserts flows only
 * through the program fn_ct_admin (so that both entries and the budgets move together),
 * and reads the table with batch lookups.
 */
struct fn_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;          /* ICMP echo request: the identifier (dport 0) */
	__be16 dport;          /* ICMP echo reply: the identifier (sport 0) */
	__u8   proto;
	__u8   pad[3];
};

struct fn_ct_entry {
	__u64  expires;        /* bpf_ktime_get_ns() deadline (CLOCK_MONOTONIC) */
	__u64  created;        /* bpf_ktime_get_ns() at creation */
	__u64  status;         /* FN_CT_S_*; the forward entry's is the flow's, changed atomically */
	__be32 to_saddr;       /* the packet after translation */
	__be32 to_daddr;
	__be16 to_sport;
	__be16 to_dport;
	__u32  out_ifindex;    /* container port to deliver to; 0: out of the uplink; with
	                        * FN_CT_F_ROUTED: the host device to leave by */
	__u8   out_dmac[6];    /* delivering to a container: its MAC ... */
	__u8   out_smac[6];    /* ... and its gateway's */
	__u8   state;          /* FN_CT_*: the flow's, the same in both entries */
	__u8   flags;          /* FN_CT_F_*, fixed at creation */
	__u8   tcp;            /* FN_CT_TCP_*: what this direction's TCP packets showed */
	__u8   pad;
	__u32  seq;            /* TCP, host order: highest sequence number this direction sent */
	__u32  ack_expect;     /* TCP handshake, host order: the ACK this direction's next packet must carry */
	__u32  owner;          /* fn_ct_budget slot of the flow's owner (a published port or a container) */
	__u32  pad2;
};

#define FN_CT_NEW          1  /* not confirmed (or a reused tuple's new handshake) */
#define FN_CT_ESTABLISHED  2
#define FN_CT_CLOSING      3  /* FIN seen both ways */
#define FN_CT_CLOSED       4  /* RST seen */
#define FN_CT_HALF_CLOSED  5  /* FIN seen one way: the other may still send */

#define FN_CT_S_CONFIRMED  0x1  /* a reply (UDP, ICMP) or a valid handshake (TCP) was seen */
#define FN_CT_S_REMOVING   0x2  /* being removed: whoever set it releases the budget */

#define FN_CT_F_REPLY      0x1  /* the reply direction of its flow */
#define FN_CT_F_SNAT       0x2  /* container -> outside through the uplink address */
#define FN_CT_F_DNAT       0x4  /* to a published port */
#define FN_CT_F_HAIRPIN    0x8  /* a container to a published port of this host */
#define FN_CT_F_LOCAL      0x10 /* client is a host process (socket hook) */
#define FN_CT_F_INBOUND    0x20 /* from outside: counted in the in budgets */
#define FN_CT_F_ROUTED     0x40 /* SNAT out of a host device other than the uplink, which
                                 * out_ifindex then names (bpf_redirect_neigh on it) */

#define FN_CT_TCP_SEQ        0x1 /* seq is known */
#define FN_CT_TCP_ACK_EXPECT 0x2 /* ack_expect is known */
#define FN_CT_TCP_FIN        0x4 /* this direction sent a FIN */
#define FN_CT_TCP_PICKUP     0x8 /* the flow was picked up mid-stream (not from a SYN) */

/*
 * fn_ct_budget: ARRAY, key = owner slot, value = how many flows it holds. Written by the
 * programs only (atomic adds), read by the control plane. Slots: the two totals, then one per
 * published (protocol, port), then one per container port (ifindex modulo
 * FN_CT_CONTAINER_SLOTS: two containers that share a slot share its share).
 */
struct fn_ct_count {
	__u64 new_flows;       /* not confirmed */
	__u64 flows;           /* confirmed */
};

#define FN_CT_OWNER_IN         0       /* every flow from outside */
#define FN_CT_OWNER_OUT        1       /* every flow of the containers */
#define FN_CT_OWNER_PORTS      2       /* + FN_PORT_SLOT_* x 65536 + published host port */
#define FN_CT_OWNER_CONTAINERS 131074  /* FN_CT_OWNER_PORTS + FN_PORT_SLOTS x 65536; + ifindex % slots */
#define FN_CT_CONTAINER_SLOTS  4096
#define FN_CT_OWNERS           135170  /* FN_CT_OWNER_CONTAINERS + FN_CT_CONTAINER_SLOTS */

/*
 * fn_ct_admin: a TC program the control plane runs with BPF_PROG_TEST_RUN (never attached).
 * Its "packet" is a request: this header, then `count` keys (REMOVE, EXPIRE) or flows
 * (ADOPT). It returns the entries removed, or the flows adopted.
 */
struct fn_ct_admin_req {
	__u64 now;             /* EXPIRE: CLOCK_MONOTONIC ns */
	__u32 op;              /* FN_CT_ADMIN_* */
	__u32 count;
};

#define FN_CT_ADMIN_REMOVE 1  /* remove the flow of each key (both entries) */
#define FN_CT_ADMIN_EXPIRE 2  /* the same, when both its entries expired before `now` */
#define FN_CT_ADMIN_ADOPT  3  /* insert each flow (a datapath upgrade), within its budgets */
#define FN_CT_ADMIN_KEYS   128 /* keys per request (a test-run packet holds ~3.7 KB) */
#define FN_CT_ADMIN_FLOWS  16  /* flows per ADOPT request */

struct fn_ct_flow {
	struct fn_ct_key   fwd_key;
	struct fn_ct_entry fwd;
	struct fn_ct_key   rev_key;
	struct fn_ct_entry rev;
};

/*
 * fn_nat_maps: LRU_HASH, the SNAT mappings (RFC 4787 terms): which container endpoint (address,
 * port, protocol) owns which external port of the uplink address, both ways:
 *   key (container address, its port, proto)  -> (uplink address, external port)
 *   key (uplink address, external port, proto) -> (container address, its port), F_EXTERNAL
 * ICMP echo: the identifier is the port. A container endpoint keeps one external port whatever
 * it talks to (endpoint-independent mapping) and no two endpoints share one (no port
 * overloading). Written by the programs when they create a flow to the outside, read for new
 * flows only; the agent deletes a mapping once no tracked flow uses it (datapath/maps.py).
 */
struct fn_nat_map_key {
	__be32 addr;           /* be */
	__be16 port;           /* be */
	__u8   proto;
	__u8   pad;            /* always 0: part of the hashed key */
};

struct fn_nat_map {
	__u64  used;           /* bpf_ktime_get_ns() when a flow last took this mapping */
	__be32 addr;           /* be */
	__be16 port;           /* be */
	__u16  flags;          /* FN_NAT_MAP_F_* */
};

#define FN_NAT_MAP_F_EXTERNAL 0x1 /* keyed by the external side: the owner's endpoint */

/*
 * fn_frags: LRU_HASH, IP fragments (as Cilium tracks them): the first fragment of a datagram
 * that a flow translates records its ports, keyed by what identifies the datagram's other
 * fragments, which carry no transport header (source, destination, protocol and IP ID, as
 * they arrive). Written and read by the programs only; entries age out by LRU.
 */
#ifndef FN_FRAG_MAX
#define FN_FRAG_MAX 8192
#endif

struct fn_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8   proto;
	__u8   pad;            /* always 0: part of the hashed key */
};

struct fn_frag_ports {
	__be16 sport;          /* the first fragment's key ports (ICMP echo: see fn_l4_parse) */
	__be16 dport;
};

/*
 * fn_sock_orig: SK_STORAGE, per socket whose connect()/sendmsg() the socket hooks redirected
 * (a host process's to a published port's container, a container's to its DNS resolver's
 * port): for a connect(), the address it asked for, so that replies and getpeername() show
 * that address again; for a sendmsg(), only FN_SOCK_F_SENT (where each destination went is in
 * fn_sock_dsts). Written and read by the programs only.
 */
struct fn_sock_orig {
	__be32 orig_ipv4;      /* FN_SOCK_F_CONNECTED: the address connect() asked for ... */
	__be32 backend_ipv4;   /* ... and where it went */
	__be16 orig_port;
	__be16 backend_port;
	__u32  flags;          /* FN_SOCK_F_* */
};

#define FN_SOCK_F_CONNECTED 0x1 /* orig/backend hold the peer a connect() was sent to */
#define FN_SOCK_F_SENT      0x2 /* a sendmsg() was sent elsewhere: see fn_sock_dsts */

/*
 * fn_sock_dsts: LRU_HASH, one entry per (socket, destination) a sendmsg() was redirected to:
 * key (socket cookie, where it went) -> the address it asked for, so that an unconnected UDP
 * socket talking to several published ports sees each reply come from the address it sent
 * to. Written and read by the programs only; entries of closed sockets age out (LRU).
 */
#ifndef FN_SOCK_DSTS_MAX
#define FN_SOCK_DSTS_MAX 65536
#endif

struct fn_sock_dst_key {
	__u64  cookie;         /* bpf_get_socket_cookie() */
	__be32 backend_ipv4;   /* be */
	__be16 backend_port;   /* be */
	__u16  pad;            /* always 0: part of the hashed key */
};

struct fn_sock_dst {
	__be32 orig_ipv4;      /* be */
	__be16 orig_port;      /* be */
	__u16  pad;
};

/*
 * fn_resolvers: HASH, key = __u64 network namespace cookie of a container (SO_NETNS_COOKIE).
 * Written by the agent's resolver (control/dns/server.py) for containers of ebpf projects;
 * read by the socket hooks, which send that namespace's connect()/sendmsg() to addr:53 to the
 * resolver's own ports (and record it in fn_sock_orig, so replies show addr:53 again).
 */
struct fn_resolver {
	__be32 addr;           /* be: 127.0.0.11 */
	__be16 udp_port;       /* be: the resolver's UDP socket in that namespace */
	__be16 tcp_port;       /* be: its listening TCP socket */
};

/* ---- overlay networks (bpf/lib/overlay.h; control/netdrivers/overlay.py) ------------------
 *
 * An overlay network is a bridge network of the datapath (fn_networks, fn_endpoints, ... as
 * any) whose containers on other hosts are reached through the host's one external
 * (collect_md) VXLAN device: the frame is sent with a tunnel key naming the network's VNI and
 * the remote host's underlay address.
 *
 * fn_ovl_nets: HASH, key = __u32 net_id of an overlay network -> its VNI and the VXLAN device.
 * fn_ovl_vnis: HASH, key = __u32 VNI -> __u32 net_id (what a frame from the VXLAN device is on).
 * Both written by the eBPF backend's sync from the project states (control/backends/ebpf.py).
 */
struct fn_ovl_net {
	__u32 vni;             /* 24 bits */
	__u32 vxlan_ifindex;   /* the host's external VXLAN device */
};

/*
 * fn_ovl_remotes: HASH, key = (VNI, container address) -> the host that container is on.
 * Written by the agent from the store's endpoints of other hosts (control/overlaysync.py);
 * read to send a frame (fn_tail_overlay), to answer ARP for a remote container, and to check
 * the inner source of a frame from the VXLAN device against the tunnel's remote.
 */
struct fn_ovl_key {
	__u32  vni;
	__be32 ipv4;           /* be */
};

struct fn_ovl_remote {
	__be32 host;           /* be: the remote host's underlay address (the tunnel's remote) */
	__u8   mac[6];         /* the container interface's MAC */
	__u16  flags;          /* unused, 0 */
};

#define FN_OVL_MAX_REMOTES     65536  /* containers of every other host, all overlay networks */
#define FN_VXLAN_HLEN          50     /* outer Ethernet + IPv4 + UDP + VXLAN: the MTU's loss */

/*
 * fn_test_state: ARRAY with one entry, only in the test build (FN_TEST): the clock the
 * programs read, the redirects a run would have performed, and what a test run cannot set
 * up on its skb or in the kernel (bpf/lib/helpers.h): the device MTUs bpf_check_mtu sees,
 * a linear part shorter than the frame, an 802.1Q tag the stack moved into skb->vlan_tci.
 */
#define FN_TEST_MAX_REDIRECTS 16
#define FN_TEST_MAX_MTUS      4
struct fn_test_state {
	__u64 now;            /* ns: what fn_now() returns */
	__u32 count;          /* redirects recorded by the last run (the test zeroes it) */
	__u32 pad;
	__u32 ifindex[FN_TEST_MAX_REDIRECTS];
	__u32 kind[FN_TEST_MAX_REDIRECTS]; /* FN_REDIRECT_* */
	__u32 mtu_ifindex[FN_TEST_MAX_MTUS]; /* devices whose MTU is not 1500 ... */
	__u32 mtu[FN_TEST_MAX_MTUS];         /* ... and their MTUs */
	__u32 linear;         /* bytes of the frame in the skb's linear part; 0: all of them */
	__u32 pulled;         /* the length of the run's last bpf_skb_pull_data; 0: none */
	__u32 vlan;           /* 0: untagged; else FN_TEST_VLAN | the tag's TCI */
	__u32 pad2;
	/* overlay: the tunnel key the run's skb carries (remote 0: none), and the one it set */
	__u32 tun_id;
	__u32 tun_remote;     /* host order, as struct bpf_tunnel_key */
};
#define FN_TEST_VLAN 0x10000

/*
 * fn_test_fib: LPM_TRIE, only in the test build: the host's routing table as bpf_fib_lookup
 * would answer it (the test process's own namespace has none of the topology's devices).
 */
struct fn_test_fib_key {
	__u32 prefixlen;
	__u8  addr[4];         /* be */
};

struct fn_test_route {
	__s32  ret;            /* BPF_FIB_LKUP_RET_* */
	__u32  ifindex;        /* the device it leaves by (ret 0) */
	__be32 src;            /* be: the address the host would send from (BPF_FIB_LOOKUP_SRC) */
	__u32  pad;
};

#define FN_REDIRECT_PEER    1 /* bpf_redirect_peer: into the namespace of the device's peer */
#define FN_REDIRECT_EGRESS  2 /* bpf_redirect to the device's egress */
#define FN_REDIRECT_CLONE   3 /* bpf_clone_redirect to the device's egress */
#define FN_REDIRECT_NEIGH   4 /* bpf_redirect_neigh: out of the device, next hop resolved */

#endif /* FASTNET_ABI_H */
