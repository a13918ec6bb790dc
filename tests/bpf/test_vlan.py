"""The emulated 802.1Q sub-interface, one frame at a time:

     wire ==tag 42==> parent 700 (fn_from_parent) --untagged--> tagger 731 egress ==veth==> up0.42
     wire ==tag 7===> uplink 900 (fn_from_uplink) --untagged--> tagger 732 egress ==veth==> up0.7
     up0.42 ==veth==> tagger 731 (fn_from_tagger) --tag 42 (skb->vlan_tci)--> parent 700 egress

A test run cannot show skb->vlan_tci (the tag bpf_skb_vlan_push adds lives there until the
device writes it): the integration test checks the tag on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet

from conftest import reset
from fastnet.datapath.maps import VlanRecord
from topology import host, NAT_NETWORKS, NAT_PORTS, SERVICES, UPLINK_IFINDEX, UPLINK_IP

PARENT = 700
V42 = VlanRecord(PARENT, 42, 731)
V7 = VlanRecord(UPLINK_IFINDEX, 7, 732)
PARENT_MAC, STATION = "02:00:00:00:07:00", "02:00:00:00:07:99"
UNCHANGED = "unchanged"


def icmp(src_mac=STATION, dst_mac=PARENT_MAC, src="192.0.2.1", dst="192.0.2.11") -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / ICMP(id=7, seq=1)


def tagged(vid: int, inner: Packet, prio: int = 0) -> Packet:
    eth = inner[Ether]
    return Ether(src=eth.src, dst=eth.dst) / Dot1Q(vlan=vid, prio=prio, type=eth.type) / eth.payload


@dataclass(frozen=True)
class Case:
    id: str
    prog: str
    frame: Packet
    ingress: int
    verdict: str
    redirects: list[tuple[str, int]]
    counters: tuple[str, ...]
    output: Packet | str = UNCHANGED


CASES = [
    Case("tagged_to_sub_interface", "fn_from_parent", tagged(42, icmp()), PARENT, "redirect", [("egress", 731)],
         ("fwd_vlan_in",), icmp()),
    Case("tagged_with_priority_to_sub_interface", "fn_from_parent", tagged(42, icmp(), prio=5), PARENT, "redirect",
         [("egress", 731)], ("fwd_vlan_in",), icmp()),
    Case("tagged_arp_to_sub_interface", "fn_from_parent",
         tagged(42, Ether(src=STATION, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="192.0.2.11",
                                                                      hwsrc=STATION)),
         PARENT, "redirect", [("egress", 731)], ("fwd_vlan_in",),
         Ether(src=STATION, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="192.0.2.1", pdst="192.0.2.11", hwsrc=STATION)),
    Case("other_vlan_left_to_the_host", "fn_from_parent", tagged(43, icmp()), PARENT, "ok", [], ()),
    Case("priority_tag_left_to_the_host", "fn_from_parent", tagged(0, icmp()), PARENT, "ok", [], ()),
    Case("vlan_of_another_parent_left_to_the_host", "fn_from_parent", tagged(7, icmp()), PARENT, "ok", [], ()),
    Case("untagged_left_to_the_host", "fn_from_parent", icmp(), PARENT, "ok", [], ()),
    Case("uplink_tagged_to_sub_interface", "fn_from_uplink", tagged(7, icmp(dst=str(UPLINK_IP))), UPLINK_IFINDEX,
         "redirect", [("egress", 732)], ("fwd_vlan_in",), icmp(dst=str(UPLINK_IP))),
    Case("uplink_untagged_goes_on_to_nat", "fn_from_uplink", icmp(dst=str(UPLINK_IP)), UPLINK_IFINDEX, "ok", [],
         ("fwd_uplink_host",)),
    Case("sub_interface_frame_tagged_out", "fn_from_tagger", icmp(src_mac=PARENT_MAC, dst_mac=STATION,
                                                                  src="192.0.2.11", dst="192.0.2.1"),
         731, "redirect", [("egress", PARENT)], ("fwd_vlan_out",)),
    Case("unknown_tagger", "fn_from_tagger", icmp(), 799, "shot", [], ("drop_no_endpoint",)),
]


@pytest.fixture
def vlans(test_datapath):
    maps = reset(test_datapath, NAT_NETWORKS, NAT_PORTS, host(uplink_is_parent=True), SERVICES)
    maps.sync_vlans([V42, V7])
    yield test_datapath, maps
    maps.sync_vlans([])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(vlans, case: Case):
    datapath, maps = vlans
    frame = bytes(case.frame)
    result = datapath.run(case.prog, frame, case.ingress)
    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    expected = frame if isinstance(case.output, str) else bytes(case.output)
    assert result.output == expected
    assert maps.counters()[case.prog] == {name: (1, len(frame) if name != "fwd_vlan_in" else len(expected))
                                          for name in case.counters}
