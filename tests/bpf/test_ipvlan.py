"""fn_from_ipvlan, fn_from_parent and the ipvlan part of fn_from_uplink, one frame at a time:

      parent 700 (MAC 02:00:00:00:07:00), l2          parent 800 (MAC 02:00:00:00:08:00), l3
     +------------------------------------+          +-----------------------------------+
     |  P 192.0.2.11     Q 192.0.2.12     |          |  R 10.7.0.2       T 10.7.0.3      |
     |  if 711           if 712           |          |  if 721           if 722          |
     +---+----------------+---------------+          +---+-----------------+-------------+
         |                |   fn_from_ipvlan: TC ingress of each host-side veth
     ====#================#===  fn_from_parent: TC ingress of 700 and 800
                                 fn_from_uplink: TC ingress of the uplink 900, which is also
                                 the parent of S 198.51.100.50 (if 951, l2)

Every container's MAC is its parent's. Each case is data: program, frame, ingress, verdict,
recorded redirects, the counters that moved (1 packet each), and the output ("unchanged").
Frames that fn_from_parent leaves to the host move no counter.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from conftest import reset
from fastnet.datapath.maps import IpvlanPortRecord
from topology import host, NAT_NETWORKS, NAT_PORTS, SERVICES, UPLINK_IFINDEX, UPLINK_IP

PARENT_L2, PARENT_L3 = 700, 800
L2_MAC, L3_MAC = "02:00:00:00:07:00", "02:00:00:00:08:00"
UPLINK_MAC = "02:00:00:00:09:00"
ROUTER_MAC = "02:00:00:00:07:99"  # a station on parent 700's segment
BROADCAST = "ff:ff:ff:ff:ff:ff"


def port(ifindex: int, parent: int, mac: str, ip: str, l3: bool = False) -> IpvlanPortRecord:
    return IpvlanPortRecord(ifindex, parent, mac, IPv4Address(ip), l3)


P = port(711, PARENT_L2, L2_MAC, "192.0.2.11")
Q = port(712, PARENT_L2, L2_MAC, "192.0.2.12")
R = port(721, PARENT_L3, L3_MAC, "10.7.0.2", l3=True)
T = port(722, PARENT_L3, L3_MAC, "10.7.0.3", l3=True)
S = port(951, UPLINK_IFINDEX, UPLINK_MAC, "198.51.100.50")
IPVLAN_PORTS = [P, Q, R, T, S]
ROUTER = IPv4Address("192.0.2.1")


def udp(src_mac: str, dst_mac: str, src, dst) -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / IP(src=str(src), dst=str(dst)) / UDP(sport=40000, dport=53) / Raw(b"fastnet")


def from_port(p: IpvlanPortRecord, dst, dst_mac: str | None = None, src=None) -> Packet:
    return udp(p.parent_mac, dst_mac or p.parent_mac, src or p.ipv4, dst)


def arp(src_mac: str, psrc, pdst, op: str = "who-has", eth_dst: str = BROADCAST, hwsrc: str | None = None) -> Packet:
    return Ether(src=src_mac, dst=eth_dst) / ARP(op=op, hwsrc=hwsrc or src_mac, psrc=str(psrc), pdst=str(pdst))


@dataclass(frozen=True)
class Case:
    id: str
    prog: str
    frame: Packet
    ingress: int
    verdict: str
    redirects: list[tuple[str, int]]
    counters: tuple[str, ...]
    vlan: int | None = None  # an 802.1Q tag the stack took out of the frame (skb->vlan_tci)


def out(id, frame, ingress, verdict, redirects, *counters):
    return Case(id, "fn_from_ipvlan", frame, ingress, verdict, redirects, counters)


def into(id, frame, ingress, verdict, redirects, *counters, prog="fn_from_parent", vlan=None):
    return Case(id, prog, frame, ingress, verdict, redirects, counters, vlan)


CASES = [
    # -- fn_from_ipvlan: what a container sends --
    out("l2_out_of_parent", from_port(P, ROUTER, ROUTER_MAC), P.ifindex, "redirect", [("egress", PARENT_L2)],
        "fwd_ipvlan_out"),
    out("l2_arp_request_out_of_parent", arp(L2_MAC, P.ipv4, ROUTER), P.ifindex, "redirect",
        [("egress", PARENT_L2)], "fwd_ipvlan_out"),
    out("l2_arp_probe_out_of_parent", arp(L2_MAC, "0.0.0.0", "192.0.2.77"), P.ifindex, "redirect",
        [("egress", PARENT_L2)], "fwd_ipvlan_out"),
    out("l2_to_sibling", from_port(P, Q.ipv4), P.ifindex, "redirect", [("peer", Q.ifindex)], "fwd_peer"),
    out("l2_arp_for_sibling", arp(L2_MAC, P.ipv4, Q.ipv4), P.ifindex, "redirect", [("peer", Q.ifindex)], "fwd_peer"),
    out("l2_arp_reply_to_sibling", arp(L2_MAC, Q.ipv4, P.ipv4, op="is-at", eth_dst=L2_MAC), Q.ifindex, "redirect",
        [("peer", P.ifindex)], "fwd_peer"),
    out("l3_routed_out_of_parent", from_port(R, "203.0.113.9"), R.ifindex, "redirect", [("neigh", PARENT_L3)],
        "fwd_ipvlan_routed"),
    out("l3_to_sibling", from_port(R, T.ipv4), R.ifindex, "redirect", [("peer", T.ifindex)], "fwd_peer"),
    out("l3_to_container_of_other_parent_is_routed", from_port(R, P.ipv4), R.ifindex, "redirect",
        [("neigh", PARENT_L3)], "fwd_ipvlan_routed"),
    out("l3_arp", arp(L3_MAC, R.ipv4, "10.7.0.1"), R.ifindex, "shot", [], "drop_ipvlan_l3_arp"),
    out("spoofed_source_ip", from_port(P, ROUTER, ROUTER_MAC, src="192.0.2.99"), P.ifindex, "shot", [],
        "drop_spoof_ip"),
    out("spoofed_source_mac", udp("02:00:00:00:07:01", ROUTER_MAC, P.ipv4, ROUTER), P.ifindex, "shot", [],
        "drop_spoof_mac"),
    out("spoofed_arp_sender_ip", arp(L2_MAC, Q.ipv4, ROUTER), P.ifindex, "shot", [], "drop_spoof_arp"),
    out("spoofed_arp_sender_mac", arp(L2_MAC, P.ipv4, ROUTER, hwsrc="02:00:00:00:07:01"), P.ifindex, "shot", [],
        "drop_spoof_arp"),
    out("malformed_arp", Ether(src=L2_MAC, dst=BROADCAST, type=0x0806) / Raw(bytes(10)), P.ifindex, "shot", [],
        "drop_malformed_arp"),
    out("malformed_ipv4", Ether(src=L2_MAC, dst=ROUTER_MAC, type=0x0800) / Raw(b"\x44" + bytes(25)), P.ifindex,
        "shot", [], "drop_malformed_ip"),
    out("ipv6", Ether(src=L2_MAC, dst=ROUTER_MAC) / IPv6(src="fe80::2", dst="fe80::1") / ICMPv6ND_RS(), P.ifindex,
        "shot", [], "drop_unsupported_l3"),
    out("vlan_tagged", Ether(src=L2_MAC, dst=ROUTER_MAC) / Dot1Q(vlan=5) / IP(src=str(P.ipv4), dst=str(ROUTER)),
        P.ifindex, "shot", [], "drop_vlan"),
    out("to_itself", from_port(P, P.ipv4), P.ifindex, "shot", [], "drop_own_mac"),
    out("unknown_port", from_port(P, ROUTER, ROUTER_MAC), 999, "shot", [], "drop_no_endpoint"),
    # -- fn_from_parent: what the wire sends --
    into("l2_ipv4_to_container", udp(ROUTER_MAC, L2_MAC, ROUTER, P.ipv4), PARENT_L2, "redirect",
         [("peer", P.ifindex)], "fwd_ipvlan_in"),
    into("l2_arp_request_for_container", arp(ROUTER_MAC, ROUTER, Q.ipv4), PARENT_L2, "redirect",
         [("peer", Q.ifindex)], "fwd_ipvlan_in"),
    into("l2_arp_reply_to_container", arp(ROUTER_MAC, ROUTER, P.ipv4, op="is-at", eth_dst=L2_MAC), PARENT_L2,
         "redirect", [("peer", P.ifindex)], "fwd_ipvlan_in"),
    into("l2_ipv4_to_container_for_another_mac", udp(ROUTER_MAC, "02:00:00:00:07:77", ROUTER, P.ipv4), PARENT_L2,
         "ok", []),
    into("l2_arp_for_container_to_another_mac", arp(ROUTER_MAC, ROUTER, P.ipv4, op="is-at",
                                                     eth_dst="02:00:00:00:07:77"), PARENT_L2, "ok", []),
    into("ipv4_to_the_host", udp(ROUTER_MAC, L2_MAC, ROUTER, "192.0.2.2"), PARENT_L2, "ok", []),
    into("arp_for_the_host", arp(ROUTER_MAC, ROUTER, "192.0.2.2"), PARENT_L2, "ok", []),
    into("ipv6_to_the_host", Ether(src=ROUTER_MAC, dst=L2_MAC) / IPv6(src="fe80::1", dst="fe80::2") / ICMPv6ND_RS(),
         PARENT_L2, "ok", []),
    into("malformed_ipv4_to_the_host", Ether(src=ROUTER_MAC, dst=L2_MAC, type=0x0800) / Raw(b"\x44" + bytes(25)),
         PARENT_L2, "ok", []),
    into("container_address_on_another_parent", udp(ROUTER_MAC, L2_MAC, ROUTER, R.ipv4), PARENT_L2, "ok", []),
    into("l3_ipv4_to_container", udp(ROUTER_MAC, L3_MAC, "203.0.113.9", R.ipv4), PARENT_L3, "redirect",
         [("peer", R.ifindex)], "fwd_ipvlan_in"),
    into("l3_arp_for_container_not_answered", arp(ROUTER_MAC, "10.7.0.1", R.ipv4), PARENT_L3, "ok", []),
    # a frame of another VLAN (its tag in skb->vlan_tci) is not on the parent's segment
    into("vlan_tagged_to_container_address", udp(ROUTER_MAC, L2_MAC, ROUTER, P.ipv4), PARENT_L2, "ok", [], vlan=42),
    into("vlan_tagged_arp_for_container", arp(ROUTER_MAC, ROUTER, Q.ipv4), PARENT_L2, "ok", [], vlan=42),
    # -- fn_from_uplink: the uplink is also a parent --
    into("uplink_ipv4_to_container", udp(ROUTER_MAC, UPLINK_MAC, "198.51.100.2", S.ipv4), UPLINK_IFINDEX,
         "redirect", [("peer", S.ifindex)], "fwd_ipvlan_in", prog="fn_from_uplink"),
    into("uplink_arp_for_container", arp(ROUTER_MAC, "198.51.100.2", S.ipv4), UPLINK_IFINDEX, "redirect",
         [("peer", S.ifindex)], "fwd_ipvlan_in", prog="fn_from_uplink"),
    into("uplink_other_traffic_goes_on_to_nat", udp(ROUTER_MAC, UPLINK_MAC, "198.51.100.2", UPLINK_IP),
         UPLINK_IFINDEX, "ok", [], "fwd_uplink_host", prog="fn_from_uplink"),
    into("uplink_vlan_tagged_to_container_address", udp(ROUTER_MAC, UPLINK_MAC, "198.51.100.2", S.ipv4),
         UPLINK_IFINDEX, "ok", [], "fwd_uplink_host", prog="fn_from_uplink", vlan=42),
]


@pytest.fixture
def ipvlan(test_datapath):
    maps = reset(test_datapath, NAT_NETWORKS, NAT_PORTS, host(uplink_is_parent=True), SERVICES)
    maps.sync_ipvlan(IPVLAN_PORTS)
    yield test_datapath, maps
    maps.sync_ipvlan([])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(ipvlan, case: Case):
    datapath, maps = ipvlan
    frame = bytes(case.frame)
    result = datapath.run(case.prog, frame, case.ingress, vlan=case.vlan)
    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    assert result.output == frame, "ipvlan never rewrites a frame"
    moved = {name: v for name, v in maps.counters()[case.prog].items()}
    assert moved == {name: (1, len(frame)) for name in case.counters}


def test_tables_follow_the_ports(ipvlan):
    """A port removed from the tables is no destination any more: its address goes to the host."""
    datapath, maps = ipvlan
    frame = bytes(udp(ROUTER_MAC, L2_MAC, ROUTER, P.ipv4))
    assert datapath.run("fn_from_parent", frame, PARENT_L2).redirects == [("peer", P.ifindex)]
    maps.sync_ipvlan([Q, R, T, S])
    assert datapath.run("fn_from_parent", frame, PARENT_L2).verdict == "ok"
    assert datapath.run("fn_from_ipvlan", bytes(from_port(P, ROUTER, ROUTER_MAC)), P.ifindex).verdict == "shot"


def test_uplink_that_is_no_parent_skips_the_ipvlan_step(test_datapath):
    """Without FN_HOST_F_UPLINK_PARENT (the control plane sets it exactly when the uplink is a
    parent) fn_from_uplink goes straight to its NAT path and never looks at ipvlan addresses."""
    maps = reset(test_datapath, NAT_NETWORKS, NAT_PORTS, host(uplink_is_parent=False), SERVICES)
    maps.sync_ipvlan(IPVLAN_PORTS)
    try:
        frame = bytes(udp(ROUTER_MAC, UPLINK_MAC, "198.51.100.2", S.ipv4))
        result = test_datapath.run("fn_from_uplink", frame, UPLINK_IFINDEX)
        assert (result.verdict, result.redirects) == ("ok", [])
        assert maps.counters()["fn_from_uplink"] == {"fwd_uplink_host": (1, len(frame))}
    finally:
        maps.sync_ipvlan([])
