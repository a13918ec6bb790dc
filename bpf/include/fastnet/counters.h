/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every counter the programs keep: forwarding outcomes and drop reasons, one list.
 *
 * APPEND-ONLY. Ids are stored in maps and read by older and newer control planes: never
 * renumber or reuse one; retire a code by renaming it FN_UNUSED<n>. datapath/counters.py
 * parses this file, so keep one X(...) per line in exactly this shape:
 *   X(NAME, id, KIND, "text shown to users")
 * KIND is FWD (the packet went on) or DROP (it was dropped for that reason).
 */
#ifndef FASTNET_COUNTERS_H
#define FASTNET_COUNTERS_H

#define FN_COUNTERS(X) \
	X(FN_FWD_PEER,              0, FWD,  "delivered to a container on the same network") \
	X(FN_FWD_FLOOD,             1, FWD,  "broadcast/multicast flooded to the network") \
	X(FN_FWD_ARP_REPLY,         2, FWD,  "ARP request answered by the datapath") \
	X(FN_FWD_HOST,              3, FWD,  "handed to the host stack through the gateway") \
	X(FN_DROP_NO_ENDPOINT,      4, DROP, "interface unknown to fastnet") \
	X(FN_DROP_MALFORMED_ETH,    5, DROP, "truncated Ethernet header") \
	X(FN_DROP_SPOOF_MAC,        6, DROP, "source MAC is not the container's") \
	X(FN_DROP_SPOOF_IP,         7, DROP, "source IPv4 address is not the container's") \
	X(FN_DROP_MALFORMED_ARP,    8, DROP, "malformed or non-IPv4 ARP") \
	X(FN_DROP_SPOOF_ARP,        9, DROP, "ARP sender is not the container") \
	X(FN_DROP_ARP_UNKNOWN,     10, DROP, "ARP request for an address not on the network") \
	X(FN_DROP_ARP_REPLY,       11, DROP, "unsolicited ARP reply") \
	X(FN_DROP_MALFORMED_IP,    12, DROP, "malformed IPv4 header") \
	X(FN_DROP_ISOLATION,       13, DROP, "destination is on another network") \
	X(FN_DROP_UNKNOWN_DST_MAC, 14, DROP, "unicast to a MAC not on the network") \
	X(FN_DROP_VLAN,            15, DROP, "802.1Q-tagged frames are not forwarded") \
	X(FN_DROP_UNSUPPORTED_L3,  16, DROP, "unicast protocol other than IPv4 and ARP") \
	X(FN_DROP_NO_NETWORK,      17, DROP, "port's network is not configured") \
	X(FN_DROP_REDIRECT,        18, DROP, "redirect to the destination failed") \
	X(FN_FWD_SNAT,             19, FWD,  "new flow to the outside, source translated (SNAT)") \
	X(FN_FWD_DNAT,             20, FWD,  "new flow to a published port, destination translated (DNAT)") \
	X(FN_FWD_CT,               21, FWD,  "translated by a tracked connection") \
	X(FN_FWD_ICMP_ERROR,       22, FWD,  "ICMP error about a tracked connection translated") \
	X(FN_FWD_UPLINK_HOST,      23, FWD,  "uplink traffic for the host itself") \
	X(FN_DROP_DIRECT_ACCESS,   24, DROP, "packet from outside addressed to a container") \
	X(FN_DROP_INTERNAL,        25, DROP, "internal network: nothing to or from the outside") \
	X(FN_DROP_NAT_PROTO,       26, DROP, "protocol that cannot be translated") \
	X(FN_DROP_SNAT_EXHAUSTED,  27, DROP, "no free SNAT port") \
	X(FN_DROP_CT_INSERT,       28, DROP, "connection table insert failed") \
	X(FN_DROP_MALFORMED_L4,    29, DROP, "truncated TCP/UDP/ICMP header") \
	X(FN_DROP_FRAGMENT,        30, DROP, "IP fragment cannot be translated") \
	X(FN_DROP_LOOPBACK_DST,    31, DROP, "packet from outside addressed to a loopback address") \
	X(FN_FWD_SOCK_DNAT,        32, FWD,  "host process connection sent to a published port") \
	X(FN_DROP_CSUM,            33, DROP, "checksum or header rewrite failed") \
	X(FN_DROP_OWN_MAC,         34, DROP, "unicast addressed to the sender itself") \
	X(FN_DROP_LINK_LOCAL,      35, DROP, "reserved link-local multicast (STP, LLDP, pause)") \
	X(FN_DROP_UPLINK_SPOOF,    36, DROP, "packet from outside with a container's source address") \
	X(FN_FWD_TTL_EXCEEDED,     37, FWD,  "TTL expired at the gateway: ICMP time exceeded sent back") \
	X(FN_FWD_IPVLAN_IN,        38, FWD,  "from the parent into an ipvlan container") \
	X(FN_FWD_IPVLAN_OUT,       39, FWD,  "from an ipvlan l2 container out of the parent") \
	X(FN_FWD_IPVLAN_ROUTED,    40, FWD,  "from an ipvlan l3 container, routed out of the parent") \
	X(FN_DROP_IPVLAN_L3_ARP,   41, DROP, "ARP from an ipvlan l3 container (its interface is NOARP)") \
	X(FN_FWD_VLAN_IN,          42, FWD,  "802.1Q frame from the parent, untagged into its sub-interface") \
	X(FN_FWD_VLAN_OUT,         43, FWD,  "frame of a sub-interface, tagged out of its parent") \
	X(FN_DROP_VLAN_TAG,        44, DROP, "802.1Q tag could not be added or removed") \
	X(FN_FWD_SOCK_RESOLVER,    45, FWD,  "container DNS query to 127.0.0.11:53 sent to the resolver's port") \
	X(FN_DROP_BIND_PUBLISHED,  46, DROP, "host process bind() to a published port refused (EADDRINUSE)") \
	X(FN_FWD_SNAT_HAIRPIN,     47, FWD,  "new flow to another container's SNAT mapping, hairpinned (RFC 4787 REQ-9)") \
	X(FN_DROP_CT_NEW_FULL,     48, DROP, "new flow refused: its conntrack budget of new flows is full") \
	X(FN_DROP_CT_FULL,         49, DROP, "flow refused at its confirmation: its conntrack budget is full") \
	X(FN_FWD_CT_RST_IGNORED,   50, FWD,  "TCP RST outside its flow's window: delivered, the flow kept") \
	X(FN_DROP_TAIL_CALL,       51, DROP, "tail call failed: its program is missing from fn_tails") \
	X(FN_DROP_MARTIAN_SRC,     52, DROP, "packet from outside with a martian source (the host's, a fastnet subnet's, loopback, 0/8, multicast, broadcast)") \
	X(FN_DROP_ICMP_ERROR,      53, DROP, "ICMP error from a container about a flow that is not its own") \
	X(FN_DROP_MARTIAN_DST,     54, DROP, "destination never routed (0/8, 127/8, multicast, 240/4, the network's broadcast)") \
	X(FN_FWD_UNREACHABLE,      55, FWD,  "no route to the destination: ICMP destination unreachable sent back") \
	X(FN_DROP_NO_ROUTE,        56, DROP, "blackhole route to the destination") \
	X(FN_FWD_FRAG_NEEDED,      57, FWD,  "too big for the device it leaves by: ICMP fragmentation needed sent back") \
	X(FN_FWD_OVERLAY_OUT,      58, FWD,  "to a container on another host: sent through the VXLAN device") \
	X(FN_FWD_OVERLAY_IN,       59, FWD,  "from a container on another host: delivered from the VXLAN device") \
	X(FN_DROP_OVERLAY_VNI,     60, DROP, "VXLAN frame without a tunnel key or of a VNI no overlay network here has") \
	X(FN_DROP_OVERLAY_SPOOF,   61, DROP, "VXLAN frame whose inner source is no container of the tunnel's remote host") \
	X(FN_DROP_OVERLAY_TUNNEL,  62, DROP, "tunnel key could not be set")

enum fn_counter {
#define FN_COUNTER_ENUM(name, id, kind, text) name = id,
	FN_COUNTERS(FN_COUNTER_ENUM)
#undef FN_COUNTER_ENUM
	FN_COUNTER_MAX
};

#endif /* FASTNET_COUNTERS_H */
