"""fn_from_container, one frame at a time, on the standard topology (topology.py):

                network 1 "front" 10.0.1.0/24                  network 2 "back" 10.0.2.0/24
           gateway 10.0.1.1 at 02:fa:0a:00:01:01           gateway 10.0.2.1 at 02:fa:0a:00:02:01
     +----------------------------------------------+         +--------------------+
     |  A 10.0.1.2     B 10.0.1.3     C 10.0.1.4    |         |  D 10.0.2.2        |
     |  if 101         if 102         if 103        |         |  if 201            |
     +-----+--------------+--------------+----------+         +----+---------------+
           |              |              |                         |
     ======#==============#==============#=========================#=====  fn_from_container,
                                  |                                        TC ingress of each
                                host  (frames to a gateway MAC)            host-side veth

     E 10.0.3.2 (if 301) is a port of network 3, which has no fn_networks entry.
     Every MAC is 02:fa:<IPv4 bytes> (fastnet.control.spec.mac_for); 999 is no port's ifindex.

Each case is data: the frame, the port it enters on, and everything the run must show —
verdict, recorded redirects, the one counter that moved (1 packet, len(frame) bytes), and
the output frame ("unchanged", or the exact frame the program must have written).
"""
from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Padding, Raw

from fastnet.datapath import declared, libbpf
from fastnet.datapath.maps import PortRecord
from topology import A, B, BACK, C, D, E, FRONT, NETWORKS, UNKNOWN_IFINDEX

BROADCAST = "ff:ff:ff:ff:ff:ff"
# A host that is no port of the topology.
STRANGER = PortRecord(0, "02:00:00:00:00:99", IPv4Address("10.0.1.200"), FRONT.net_id)
UNCHANGED = "unchanged"


# ---- frames -------------------------------------------------------------------------------


def udp(src: PortRecord, dst_mac: str, dst_ip, ip_src=None, **ip_fields) -> Packet:
    """A small UDP datagram from port src (ip_src overrides its source address)."""
    ip = IP(src=str(ip_src or src.ipv4), dst=str(dst_ip), **ip_fields)
    return Ether(src=src.mac, dst=dst_mac) / ip / UDP(sport=40000, dport=53) / Raw(b"fastnet")


def arp(src: PortRecord, pdst, op: str = "who-has", eth_dst: str = BROADCAST, **arp_fields) -> Packet:
    """An ARP packet from port src, by default a well-formed broadcast request for pdst."""
    fields = {"op": op, "hwsrc": src.mac, "psrc": str(src.ipv4), "pdst": str(pdst), **arp_fields}
    return Ether(src=src.mac, dst=eth_dst) / ARP(**fields)


def arp_answer(asker: PortRecord, mac: str, ip, asker_ip=None) -> Packet:
    """The reply the datapath must write in place of a request: "ip is at mac"."""
    to_ip = str(asker.ipv4 if asker_ip is None else asker_ip)
    return Ether(src=mac, dst=asker.mac) / ARP(op="is-at", hwsrc=mac, psrc=str(ip), hwdst=asker.mac, pdst=to_ip)


def cut(frame: Packet, length: int) -> Raw:
    """The first `length` bytes of frame."""
    return Raw(bytes(frame)[:length])


def ipv6(src: PortRecord, dst_mac: str, dst_ip: str) -> Packet:
    return Ether(src=src.mac, dst=dst_mac) / IPv6(src="fe80::2", dst=dst_ip) / ICMPv6ND_RS()


def clones(*ports: PortRecord) -> list[tuple[str, int]]:
    return [("clone", p.ifindex) for p in ports]


# ---- cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    frame: Packet
    ingress: int
    verdict: str  # ok | shot | redirect
    redirects: list[tuple[str, int]]
    counter: str  # short name (counters.h) that must count this one frame
    output: Packet | str = UNCHANGED


def drop(id: str, frame: Packet, counter: str, ingress: int = A.ifindex) -> Case:
    return Case(id, frame, ingress, "shot", [], counter)


CASES = [
    # -- delivered to a peer: redirected as is --
    Case("ipv4_to_peer", udp(A, B.mac, B.ipv4), A.ifindex, "redirect", [("peer", B.ifindex)], "fwd_peer"),
    Case("ipv4_to_peer_from_c", udp(C, A.mac, A.ipv4), C.ifindex, "redirect", [("peer", A.ifindex)], "fwd_peer"),
    Case("ipv4_options_ihl6_to_peer", udp(A, B.mac, B.ipv4, options=[IPOption_Router_Alert()]),
         A.ifindex, "redirect", [("peer", B.ifindex)], "fwd_peer"),
    Case("ipv4_eth_padding_to_peer",
         Ether(src=A.mac, dst=C.mac) / IP(src=str(A.ipv4), dst=str(C.ipv4)) / ICMP() / Padding(bytes(18)),
         A.ifindex, "redirect", [("peer", C.ifindex)], "fwd_peer"),
    Case("ipv4_dst_ip_elsewhere_mac_of_peer", udp(A, B.mac, "192.0.2.7"), A.ifindex, "redirect",
         [("peer", B.ifindex)], "fwd_peer"),
    # -- flooded: one clone per other port of the network, the original consumed --
    Case("ipv4_broadcast", udp(A, BROADCAST, "10.0.1.255"), A.ifindex, "shot", clones(B, C), "fwd_flood"),
    Case("ipv4_broadcast_from_b", udp(B, BROADCAST, "255.255.255.255"), B.ifindex, "shot", clones(A, C), "fwd_flood"),
    Case("ipv4_multicast", udp(A, "01:00:5e:00:00:fb", "224.0.0.251"), A.ifindex, "shot", clones(B, C), "fwd_flood"),
    Case("multicast_next_to_link_local_range", udp(A, "01:80:c2:00:00:10", "224.0.0.1"), A.ifindex, "shot",
         clones(B, C), "fwd_flood"),
    Case("ipv4_broadcast_alone_on_network", udp(D, BROADCAST, "10.0.2.255"), D.ifindex, "shot", [], "fwd_flood"),
    Case("ipv6_multicast", ipv6(A, "33:33:00:00:00:02", "ff02::2"), A.ifindex, "shot", clones(B, C), "fwd_flood"),
    Case("other_ethertype_broadcast", Ether(src=A.mac, dst=BROADCAST, type=0x88B5) / Raw(bytes(46)),
         A.ifindex, "shot", clones(B, C), "fwd_flood"),
    # -- to the host through the gateway --
    Case("ipv4_to_gateway_outside", udp(A, FRONT.gateway_mac, "192.0.2.1"), A.ifindex, "ok", [], "fwd_host"),
    Case("ipv4_to_gateway_own_gateway_ip", udp(A, FRONT.gateway_mac, FRONT.gateway), A.ifindex, "ok", [], "fwd_host"),
    Case("ipv4_to_gateway_same_network_peer", udp(A, FRONT.gateway_mac, B.ipv4), A.ifindex, "ok", [], "fwd_host"),
    Case("ipv4_to_gateway_host_address_of_other_network", udp(A, FRONT.gateway_mac, BACK.gateway),
         A.ifindex, "ok", [], "fwd_host"),
    Case("ipv4_to_gateway_from_back", udp(D, BACK.gateway_mac, "192.0.2.1"), D.ifindex, "ok", [], "fwd_host"),
    # -- ARP answered in place and sent back out of the asking port --
    Case("arp_for_gateway", arp(A, FRONT.gateway), A.ifindex, "redirect", [("egress", A.ifindex)],
         "fwd_arp_reply", arp_answer(A, FRONT.gateway_mac, FRONT.gateway)),
    Case("arp_for_gateway_from_back", arp(D, BACK.gateway), D.ifindex, "redirect", [("egress", D.ifindex)],
         "fwd_arp_reply", arp_answer(D, BACK.gateway_mac, BACK.gateway)),
    Case("arp_for_peer", arp(A, C.ipv4), A.ifindex, "redirect", [("egress", A.ifindex)],
         "fwd_arp_reply", arp_answer(A, C.mac, C.ipv4)),
    Case("arp_unicast_request_for_peer", arp(B, A.ipv4, eth_dst=A.mac), B.ifindex, "redirect",
         [("egress", B.ifindex)], "fwd_arp_reply", arp_answer(B, A.mac, A.ipv4)),
    Case("arp_probe_for_peer", arp(A, B.ipv4, psrc="0.0.0.0"), A.ifindex, "redirect", [("egress", A.ifindex)],
         "fwd_arp_reply", arp_answer(A, B.mac, B.ipv4, asker_ip="0.0.0.0")),
    # -- drops: identity of the port --
    drop("unknown_ingress_ifindex", udp(A, B.mac, B.ipv4), "drop_no_endpoint", ingress=UNKNOWN_IFINDEX),
    drop("src_mac_of_peer", udp(B, C.mac, C.ipv4), "drop_spoof_mac"),
    drop("src_mac_stranger", arp(STRANGER, FRONT.gateway), "drop_spoof_mac"),
    drop("src_ip_of_peer", udp(A, C.mac, C.ipv4, ip_src=B.ipv4), "drop_spoof_ip"),
    drop("src_ip_spoofed_broadcast", udp(A, BROADCAST, "10.0.1.255", ip_src=STRANGER.ipv4), "drop_spoof_ip"),
    drop("src_ip_unspecified_to_gateway", udp(A, FRONT.gateway_mac, "192.0.2.1", ip_src="0.0.0.0"), "drop_spoof_ip"),
    # -- drops: malformed IPv4 --
    # (a frame ending inside the 20-byte base header cannot be run: see test_kernel_refuses)
    drop("ipv4_header_truncated_in_options",
         cut(udp(A, B.mac, B.ipv4, options=[IPOption_Router_Alert()]), 14 + 22), "drop_malformed_ip"),
    drop("ipv4_ihl_4", udp(A, B.mac, B.ipv4, ihl=4), "drop_malformed_ip"),
    drop("ipv4_version_6", udp(A, B.mac, B.ipv4, version=6), "drop_malformed_ip"),
    drop("ipv4_options_beyond_frame", udp(A, B.mac, B.ipv4, ihl=15), "drop_malformed_ip"),
    drop("ipv4_total_length_beyond_frame", udp(A, B.mac, B.ipv4, len=len(IP() / UDP() / Raw(b"fastnet")) + 1),
         "drop_malformed_ip"),
    drop("ipv4_total_length_below_header", udp(A, B.mac, B.ipv4, len=19), "drop_malformed_ip"),
    # -- drops: ARP --
    drop("arp_plen_16", arp(A, FRONT.gateway, plen=16), "drop_malformed_arp"),
    drop("arp_ptype_ipv6", arp(A, FRONT.gateway, ptype=0x86DD), "drop_malformed_arp"),
    drop("arp_htype_ieee802", arp(A, FRONT.gateway, hwtype=6), "drop_malformed_arp"),
    drop("arp_truncated", cut(arp(A, FRONT.gateway), 14 + 27), "drop_malformed_arp"),
    drop("arp_sender_mac_of_peer", arp(A, FRONT.gateway, hwsrc=B.mac), "drop_spoof_arp"),
    drop("arp_sender_ip_of_peer", arp(A, FRONT.gateway, psrc=str(B.ipv4)), "drop_spoof_arp"),
    drop("arp_sender_ip_of_gateway", arp(A, B.ipv4, psrc=str(FRONT.gateway)), "drop_spoof_arp"),
    drop("arp_reply_unsolicited", arp(A, FRONT.gateway, op="is-at"), "drop_arp_reply"),
    drop("arp_for_other_network_container", arp(A, D.ipv4), "drop_arp_unknown"),
    drop("arp_for_other_network_gateway", arp(A, BACK.gateway), "drop_arp_unknown"),
    drop("arp_for_port_without_network", arp(A, E.ipv4), "drop_arp_unknown"),
    drop("arp_for_unknown_address", arp(A, "10.0.1.99"), "drop_arp_unknown"),
    drop("arp_gratuitous", arp(A, A.ipv4), "drop_arp_unknown"),
    drop("arp_probe_own_address", arp(A, A.ipv4, psrc="0.0.0.0"), "drop_arp_unknown"),
    # -- drops: forwarding --
    drop("ipv4_to_other_network_via_gateway", udp(A, FRONT.gateway_mac, D.ipv4), "drop_isolation"),
    drop("ipv4_back_to_front_via_gateway", udp(D, BACK.gateway_mac, C.ipv4), "drop_isolation", ingress=D.ifindex),
    drop("ipv4_to_mac_of_other_network_port", udp(A, D.mac, D.ipv4), "drop_unknown_dst_mac"),
    drop("ipv4_to_other_network_gateway_mac", udp(A, BACK.gateway_mac, D.ipv4), "drop_unknown_dst_mac"),
    drop("ipv4_to_stranger_mac", udp(A, STRANGER.mac, B.ipv4), "drop_unknown_dst_mac"),
    drop("ipv4_to_own_mac", udp(A, A.mac, B.ipv4), "drop_own_mac"),
    drop("ipv4_to_own_mac_own_ip", udp(C, C.mac, C.ipv4), "drop_own_mac", ingress=C.ifindex),
    # IEEE 802.1D reserved group addresses 01:80:c2:00:00:0x: never flooded, whatever they carry.
    drop("lldp", Ether(src=A.mac, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(bytes(46)), "drop_link_local"),
    drop("stp", Ether(src=A.mac, dst="01:80:c2:00:00:00", type=0x0026) / Raw(bytes(46)), "drop_link_local"),
    drop("pause", Ether(src=A.mac, dst="01:80:c2:00:00:01", type=0x8808) / Raw(bytes(46)), "drop_link_local"),
    drop("ipv4_to_link_local_group", udp(A, "01:80:c2:00:00:0f", "224.0.0.1"), "drop_link_local"),
    # A test run keeps a tag in the frame; on a real veth the receive path first moves the
    # outer tag into skb metadata (vlan_present), so only the inner one of two reaches this.
    drop("vlan_8021q", Ether(src=A.mac, dst=B.mac) / Dot1Q(vlan=10) / IP(src=str(A.ipv4), dst=str(B.ipv4)),
         "drop_vlan"),
    drop("vlan_8021ad_broadcast", Ether(src=A.mac, dst=BROADCAST) / Dot1AD(vlan=10) / Dot1Q(vlan=20)
         / IP(src=str(A.ipv4), dst="10.0.1.255"), "drop_vlan"),
    drop("ipv6_unicast_to_peer", ipv6(A, B.mac, "fe80::3"), "drop_unsupported_l3"),
    drop("other_ethertype_to_gateway", Ether(src=A.mac, dst=FRONT.gateway_mac, type=0x88B5) / Raw(bytes(46)),
         "drop_unsupported_l3"),
    drop("broadcast_from_port_without_network", udp(E, BROADCAST, "10.0.3.255"), "drop_no_network",
         ingress=E.ifindex),
    drop("arp_from_port_without_network", arp(E, "10.0.3.1"), "drop_no_network", ingress=E.ifindex),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_from_container(bridge, case: Case):
    frame = bytes(case.frame)
    expected_output = frame if case.output == UNCHANGED else bytes(case.output)

    result = bridge.send(frame, case.ingress)

    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    assert result.output.hex() == expected_output.hex()
    assert bridge.counters() == {case.counter: (1, len(frame))}


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("frame", [
    pytest.param(bytes(Ether(src=A.mac, dst=B.mac))[:13], id="shorter_than_ethernet"),
    pytest.param(bytes(udp(A, B.mac, B.ipv4))[:14 + 19], id="ipv4_shorter_than_base_header"),
])
def test_kernel_refuses(bridge, frame: bytes):
    """BPF_PROG_TEST_RUN rejects these frames (6.x kernels), so two branches cannot be run:
    drop_malformed_eth, and the base-header bound of fn_ipv4_header(). If a kernel ever
    runs them, add them to CASES (and drop the exemption in test_counters.py)."""
    with pytest.raises(OSError) as refused:
        bridge.send(frame, A.ifindex)
    assert refused.value.errno == errno.EINVAL
    assert bridge.counters() == {}


# ---- several packets --------------------------------------------------------------------------


def test_broadcast_follows_port_membership(bridge):
    """Flooding reaches the other ports of the sender's network, in slot order, and follows
    a sync that removes a port."""
    frame = udp(A, BROADCAST, "10.0.1.255")

    first = bridge.send(frame, A.ifindex)
    assert (first.verdict, first.redirects) == ("shot", clones(B, C))

    bridge.maps.sync(NETWORKS, [A, B, D, E])
    second = bridge.send(frame, A.ifindex)
    assert (second.verdict, second.redirects) == ("shot", clones(B))
    assert bridge.counters() == {"fwd_flood": (2, 2 * len(frame))}


def test_peer_redirect_follows_port_removal(bridge):
    """Once C is gone, its MAC is unknown: no stale forwarding to its old ifindex."""
    frame = udp(A, C.mac, C.ipv4)
    assert bridge.send(frame, A.ifindex).redirects == [("peer", C.ifindex)]

    bridge.maps.sync(NETWORKS, [A, B, D, E])
    gone = bridge.send(frame, A.ifindex)
    assert (gone.verdict, gone.redirects) == ("shot", [])
    assert bridge.counters() == {"fwd_peer": (1, len(frame)), "drop_unknown_dst_mac": (1, len(frame))}


def test_peer_with_large_ifindex(bridge):
    """An ifindex >= 2**27 once overflowed the packed outcome of fn_bridge_from_container()."""
    big = PortRecord(2**27 + 1, B.mac, B.ipv4, B.net_id)
    bridge.maps.sync(NETWORKS, [A, big, C, D, E])
    frame = udp(A, B.mac, B.ipv4)
    result = bridge.send(frame, A.ifindex)
    assert (result.verdict, result.redirects) == ("redirect", [("peer", big.ifindex)])
    assert bridge.counters() == {"fwd_peer": (1, len(frame))}


def test_a_missing_flood_program_is_a_counted_drop(bridge):
    """Flooding is a tail call (fn_tails[FN_TAIL_FLOOD]: its loop would take most of the
    verifier's budget inside fn_from_container). Should the slot be empty, the frame is dropped
    and counted, not handed to the host."""
    frame = udp(A, BROADCAST, "10.0.1.255")
    tails = bridge.datapath.dp.maps["fn_tails"]
    slot = ctypes.c_uint32(declared.TAIL_PROGRAMS["fn_tail_flood"])
    prog = ctypes.c_uint32(bridge.datapath.dp.progs["fn_tail_flood"])
    assert libbpf.map_delete(tails, slot)
    try:
        result = bridge.send(frame, A.ifindex)
    finally:
        libbpf.map_update(tails, slot, prog)
    assert (result.verdict, result.redirects) == ("shot", [])
    assert bridge.counters() == {"drop_tail_call": (1, len(frame))}
    assert bridge.send(frame, A.ifindex).redirects == clones(B, C)
