"""What each conformance case expects, per backend.

EXPECT[case] is either one value, which both backends must produce ("pass" in the matrix), or
{"ebpf": (value, why), "iptables": (value, why)} for a difference that is on purpose: documented
in the README ("Differences from Docker's bridge driver", "Not done yet"), docs/datapath.md or in
the datapath's drop reasons (bpf/include/fastnet/counters.h). The matrix then shows "differs as
documented" with that backend's text. Values are compared as JSON (tuples are lists).

A fastnet bug is not a difference: its EXPECT says what the reference does (what users trust),
so the eBPF run fails until the datapath is fixed.
"""
from __future__ import annotations

PEER, A_IP, GW_FRONT = "10.90.1.11", "10.90.1.10", "10.90.1.1"

def differs(ebpf, ebpf_why: str, iptables, iptables_why: str) -> dict:
    return {"ebpf": (ebpf, ebpf_why), "iptables": (iptables, iptables_why)}


EXPECT: dict[str, object] = {}

# -- the same in both backends (measured on both, asserted on both) ------------------------------
EXPECT['arp_gateway'] = ['02:fa:0a:5a:01:01', '10.90.1.10', '02:fa:0a:5a:01:0a']
EXPECT['arp_peer'] = ['02:fa:0a:5a:01:0b', '10.90.1.10', '02:fa:0a:5a:01:0a']
EXPECT['broadcast_stays_in_its_network'] = ['b']
# every fragment translated: eBPF by its datagram's flow (bpf/lib/frag.h), conntrack by
# defragmenting and refragmenting
EXPECT['fragments_through_dnat'] = {'container got the datagram': True, 'fragments reaching the container': 4, 'fragments sent': 4}
EXPECT['fragments_through_snat'] = {'fragments reaching world (src)': ['198.51.100.1'], 'fragments sent': 4, 'world got the datagram': True}
EXPECT['direct_container_address_unreachable'] = {'server saw': [], 'tcp b:80': 'blocked', 'udp b:53': 'blocked', 'udp d (internal)': 'blocked'}
EXPECT['hairpin_to_itself'] = {'server saw': ['10.90.1.1'], 'tcp': 'ok', 'udp': 'ok'}
EXPECT['host_sockets_to_two_published_udp_ports'] = {
    'ipv4': {'127.0.0.1:8054': '127.0.0.1:8054', '198.51.100.1:8053': '198.51.100.1:8053'},
    'ipv6-mapped': {'::ffff:127.0.0.1:8054': '::ffff:127.0.0.1:8054',
                    '::ffff:198.51.100.1:8053': '::ffff:198.51.100.1:8053'},
    'tcp ::ffff:198.51.100.1:8080': [True, '::ffff:198.51.100.1:8080'],
}
EXPECT['icmp_echo_identifier_translation'] = {'reply to container': ['198.51.100.2', '10.90.1.10', 16962, 7, []],
 'world sees': ['198.51.100.1', True, []]}
EXPECT['echo_request_with_a_containers_identifier'] = {'a saw it': False, 'answered by': '198.51.100.1'}
EXPECT['icmp_error_translation_embedded_header'] = {'outer': ['198.51.100.2', '10.90.1.10', 3, 3],
 'outer well formed': [],
 'quoted': ['10.90.1.10', '198.51.100.2', 41070, 5999],
 'quoted ip checksum ok': True}
EXPECT['internal_network_reaches_nothing_outside'] = {'tcp to world': 'blocked', 'to a (front)': False, 'to c (back)': False, 'to world': False}
EXPECT['icmp_error_from_published_container'] = {'outer': ['198.51.100.1', '198.51.100.2', 3, 3],
 'outer well formed': [],
 'quoted': ['198.51.100.2', '198.51.100.1', 41220, 8053]}
EXPECT['ip_options_through_dnat'] = ['198.51.100.2', '10.90.1.11', 53, 6, 63, True, []]
EXPECT['ip_options_pass'] = {'b': [6, '01010101', 64, True, []], 'world': [6, '01010101', 63, True, []]}
EXPECT['isolation_between_networks'] = {'servers saw': [],
 'tcp a->c': 'blocked',
 'tcp c->a': 'blocked',
 'udp a->c': False,
 'udp c->a': False}
EXPECT['malformed_from_world'] = {'at b': {}, 'normal traffic afterwards': 'ok'}
EXPECT['nat_filtering_of_unsolicited_inbound'] = {'other address, same port': False,
 'same address, other port': False,
 'same endpoint (reply)': True}
EXPECT['nat_mapping_endpoint_independence'] = 'endpoint-independent'
EXPECT['pmtu_fragmentation_needed_through_nat'] = {'next-hop mtu': 1280,
 'outer': ['198.51.100.2', '10.90.1.10'],
 'quoted': ['10.90.1.10', '203.0.113.2'],
 'well formed': []}
EXPECT['publish_address_bound'] = {'8080 on 198.51.100.4 (every address)': 'ok',
 '9000 on 198.51.100.1': 'ok',
 '9000 on 198.51.100.4': 'blocked'}
EXPECT['publish_loopback_only'] = {'host 127.0.0.1:9443': 'ok',
 'host 198.51.100.1:9443': 'blocked',
 'server saw': ['10.90.1.1'],
 'world 198.51.100.1:9443': 'blocked'}
EXPECT['publish_range'] = {'connections per server': [1, 1, 1],
 'results': {'7000': 'ok', '7001': 'ok', '7002': 'ok', '7003': 'blocked'}}
EXPECT['publish_tcp'] = {'echo': 'ok',
 'server saw': ['198.51.100.2'],
 'syn at container': ['198.51.100.2', '10.90.1.11', 41110, 80, 63, []]}
EXPECT['publish_udp'] = {'datagram at container': ['198.51.100.2', '10.90.1.11', 41111, 53, 63, []],
 'echo': 'ok',
 'server saw': ['198.51.100.2']}
EXPECT['tcp_fin_then_reopen'] = {'exchanges': ['ok', 'ok', 'ok'], 'external ports': [21081, 21081, 21081]}
EXPECT['ttl_expiry_at_gateway'] = {'icmp to sender': [11, 0, '10.90.1.1', '10.90.1.10', 40011], 'world received it': False}
EXPECT['ttl_routed_once_through_snat'] = ['198.51.100.1', 20010, 63, True, []]
EXPECT['udp_zero_checksum'] = ['198.51.100.1', 0, []]
EXPECT['unicast_same_network_ttl_unchanged'] = ['02:fa:0a:5a:01:0a', '10.90.1.10', 64, [], []]
EXPECT['unpublished_port_unreachable'] = {'server saw': [], 'tcp 81': 'blocked', 'udp 54': 'blocked'}

# -- documented differences -----------------------------------------------------------------------
EXPECT["unknown_unicast_mac"] = differs(
    "dropped", "eBPF drops unicast to a MAC not on the network (drop_unknown_dst_mac): fastnet knows every MAC",
    "delivered", "the Linux bridge floods an unknown unicast MAC to every port",
)
EXPECT["spoofed_source_mac"] = differs(
    "dropped", "eBPF drops a frame whose source MAC is not the container's (drop_spoof_mac)",
    "delivered", "the Linux bridge does not police source MACs (Docker neither)",
)
EXPECT["spoofed_source_ip"] = differs(
    [False, None], "eBPF drops an IPv4 source that is not the container's (drop_spoof_ip), bridged or routed",
    [True, "198.51.100.1"], "the bridge delivers it to the peer; MASQUERADE (-s subnet) translates it to the world",
)
EXPECT["vlan_tagged_frame"] = differs(
    "dropped", "eBPF drops 802.1Q-tagged frames (drop_vlan)",
    "delivered", "a bridge without vlan_filtering forwards tagged frames",
)
EXPECT["link_local_multicast"] = differs(
    {"lldp 01:80:c2:00:00:0e": "dropped", "stp 01:80:c2:00:00:00": "dropped"},
    "eBPF drops all reserved link-local multicast 01:80:c2:00:00:0x (drop_link_local)",
    {"lldp 01:80:c2:00:00:0e": "dropped", "stp 01:80:c2:00:00:00": "delivered"},
    "the bridge (STP off) forwards the STP group address, keeps the other 01:80:c2 groups (group_fwd_mask 0)",
)
EXPECT["unicast_to_own_mac"] = differs(
    "dropped", "eBPF drops unicast addressed to the sender's own MAC (drop_own_mac)",
    "reflected back to the sender", "the bridge port is in hairpin mode (Docker without the userland proxy), so the frame comes back",
)
EXPECT["hairpin_from_peer_on_same_network"] = differs(
    {"server saw": [GW_FRONT], "tcp": "ok", "udp": "ok"},
    "eBPF hairpin rewrites the source to the backend network's gateway for every hairpin flow",
    {"server saw": [A_IP], "tcp": "ok", "udp": "ok"},
    "Docker masquerades only a container reaching its own published port; a peer keeps its address",
)
EXPECT["hairpin_from_another_network"] = differs(
    {"server saw": [GW_FRONT], "tcp": "ok", "udp": "ok"},
    "eBPF allows hairpin from another network (source: the backend network's gateway)",
    {"server saw": [], "tcp": "blocked", "udp": "blocked"},
    "Docker's isolation chains drop the DNAT'd flow crossing from one bridge to another",
)
EXPECT["nat_port_collision"] = differs(
    [21050, True, "outside ip_local_port_range"],
    "eBPF keeps the first port and takes the colliding one from outside ip_local_port_range",
    [21050, True, "Linux's choice in 1024-65535"],
    "nf_nat keeps the first port and picks any free port (1024-65535) for the colliding one",
)
EXPECT["tcp_bad_checksum"] = differs(
    ["198.51.100.1", ["tcp checksum"]],
    "eBPF passes it translated; the incremental update keeps the checksum wrong, so WORLD drops it",
    ["10.90.1.10", ["tcp checksum"]],
    "conntrack marks it INVALID (nf_conntrack_checksum), MASQUERADE skips it and FORWARD lets it out with the container's private address",
)
EXPECT["malformed_from_container"] = differs(
    {
        "normal traffic afterwards": True,
        "to b (bridged)": {
            "truncated tcp header": f"unmodified {A_IP} -> {PEER}, malformed (tcp truncated)",
            "truncated udp header": f"unmodified {A_IP} -> {PEER}, malformed (udp truncated)",
        },
        "to world (via SNAT)": {},
    },
    "eBPF bridges bad L4 unmodified like the bridge, drops truncated L4 headers on the NAT path (drop_malformed_l4)",
    {
        "normal traffic afterwards": True,
        "to b (bridged)": {
            "truncated tcp header": f"unmodified {A_IP} -> {PEER}, malformed (tcp truncated)",
            "truncated udp header": f"unmodified {A_IP} -> {PEER}, malformed (udp truncated)",
        },
        "to world (via SNAT)": {
            "truncated tcp header": f"rewritten {A_IP} -> 198.51.100.2, malformed (tcp truncated)",
            "truncated udp header": f"rewritten {A_IP} -> 198.51.100.2, malformed (udp truncated)",
        },
    },
    "conntrack marks truncated L4 INVALID: not masqueraded, forwarded with the container's private address (TTL-1)",
)
# A UDP length that does not fit its IP payload: eBPF drops it on the NAT path (drop_malformed_l4).
EXPECT["zero_length_udp_from_container"] = differs(
    {"to b (bridged)": f"unmodified {A_IP} -> {PEER}, malformed (udp length)", "to world (via SNAT)": "dropped"},
    "bridged unmodified like the bridge; on the NAT path a bad UDP length is dropped (drop_malformed_l4)",
    {"to b (bridged)": f"unmodified {A_IP} -> {PEER}, malformed (udp length)",
     "to world (via SNAT)": f"rewritten {A_IP} -> 198.51.100.2, malformed (udp length)"},
    "conntrack marks it INVALID: not masqueraded, forwarded with the container's private address",
)
EXPECT["zero_length_udp_from_world"] = "dropped"  # conntrack: INVALID; ebpf: never translated, the host drops it
# Not "the mapping is gone at once": Linux keeps a reset flow in CLOSE for 10 s and still translates
# in-window segments; fastnet does the same (FN_CT_CLOSED, tcp_closing). Both reuse the tuple at once.
EXPECT["tcp_rst_closes_the_mapping"] = {
    "external ports": [21080, 21080], "first": "ok",
    "in-window segment after RST still translated": True, "reopened": "ok",
}
# A blind RST (the connection's tuple, a sequence number far outside the window): both keep the
# connection; Linux marks it INVALID (not translated back: the host stack drops it), fastnet
# delivers it translated without acting on it (fwd_ct_rst_ignored) and the container's own stack
# ignores it.
EXPECT["tcp_rst_outside_the_window"] = differs(
    {"blind rst reached the container": True, "connection after it": "ok"},
    "eBPF delivers an RST outside the window translated but keeps the flow (fwd_ct_rst_ignored): the endpoint judges it",
    {"blind rst reached the container": False, "connection after it": "ok"},
    "conntrack marks an RST outside the window INVALID: it is not translated back and the host stack drops it",
)

# RFC 4787 mapping under contention: b holds 21200 towards WORLD2; a then sends from 21200 too.
# eBPF: one external port per container endpoint (REQ-1, endpoint-independent mapping) and never
# another endpoint's (REQ-3, no port overloading): a gets another port, for both destinations.
# Linux nf_nat keeps 21200 for a towards WORLD (the tuple is free: port overloading) and gives
# it another one towards WORLD2 (endpoint-dependent).
EXPECT["nat_mapping_under_contention"] = differs(
    {"a -> world keeps its port": False, "a's mapping": "endpoint-independent", "b -> world2 keeps its port": True},
    "eBPF: one external port per container endpoint for every destination, never another endpoint's (RFC 4787 REQ-1, REQ-3)",
    {"a -> world keeps its port": True, "a's mapping": "endpoint-dependent", "b -> world2 keeps its port": True},
    "nf_nat keeps a's port where the tuple is free (b's port, overloaded) and moves it where it is not",
)
EXPECT["nat_port_preservation"] = differs(
    {"inside ip_local_port_range": ["198.51.100.1", "outside ip_local_port_range"],
     "outside ip_local_port_range": ["198.51.100.1", "kept"]},
    "eBPF never gives a container a port of the host's ephemeral range: the host's own connections use those",
    {"inside ip_local_port_range": ["198.51.100.1", "kept"], "outside ip_local_port_range": ["198.51.100.1", "kept"]},
    "MASQUERADE keeps any free port (conntrack moves the host's own clashing flows instead)",
)
# Both keep the host's and the container's replies apart: eBPF by never using a port of the
# host's ephemeral range, Linux by remapping whichever flow clashes second.
EXPECT["host_socket_and_container_on_the_same_port"] = {
    "a then host": {"a": "ok", "host": "ok"}, "host then a": {"a": "ok", "host": "ok"},
}
EXPECT["hairpin_to_another_containers_snat_mapping"] = differs(
    ["198.51.100.1", 21401, "10.90.1.10", 21400],
    "eBPF hairpins a container's flow to another container's SNAT mapping, from the sender's own mapping (RFC 4787 REQ-9)",
    "not delivered", "MASQUERADE does not hairpin: the datagram to the host's address goes to the host's INPUT",
)
EXPECT["tcp_segment_without_a_flow_to_a_published_port"] = differs(
    {"ack with data": "not delivered", "syn-ack": "not delivered"},
    "eBPF starts a new inbound TCP flow only at a SYN without ACK; anything else untracked is the host's",
    {"ack with data": "delivered to b", "syn-ack": "not delivered"},
    "conntrack picks an ACK up mid-stream (nf_conntrack_tcp_loose) and DNATs it; a SYN-ACK alone is INVALID",
)
EXPECT["uplink_packet_with_container_source"] = differs(
    "dropped", "eBPF drops outside packets with a container's source address (drop_uplink_spoof)",
    "delivered from 10.90.1.10", "Docker's rules do not check the source of DNAT'd traffic (rp_filter off in the host namespace)",
)
