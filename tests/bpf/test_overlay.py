"""Overlay networks, one frame at a time: the encapsulation decision (fn_from_container and its
tail call fn_tail_overlay), ARP answered for containers of other hosts, and the VNI and source
checks of fn_from_vxlan; and fn_ovl_remotes copied from older builds into a new one.

      this host                                                   other hosts (fn_ovl_remotes)
     +-------------------------------------------------+
     | overlay "mesh" net 5, VNI 4242, 10.60.0.0/16    |         R1 10.60.0.10 on 192.0.2.21
     |   L1 10.60.0.2 (if 501)   L2 10.60.0.3 (if 502) |         R2 10.60.0.11 on 192.0.2.22
     | overlay "other" net 6, VNI 77, 10.61.0.0/24     |         S1 10.61.0.10 on 192.0.2.21
     |   O1 10.61.0.2 (if 601)                         |
     | bridge "front" net 1 (topology.py): A (if 101)  |
     +-------------------+-----------------------------+
                         | VXLAN device (if 550): fn_from_vxlan at TC ingress
                    underlay 192.0.2.0/24

A test run's skb carries no tunnel: the test build's seam (bpf/lib/overlay.h) takes the key
of an arriving frame from the run (`tunnel=`) and reports the key a frame was sent with
(RunResult.tunnel). The integration test (tests/integration/test_overlay_hosts.py) sends real
frames through real VXLAN devices.
"""
from __future__ import annotations

import ctypes
import os
import shutil
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from conftest import reset
from fastnet.control.spec import mac_for
from fastnet.datapath import abi, declared, libbpf, ovlcarry
from fastnet.datapath.maps import OverlayNetRecord, PortRecord, RemoteRecord, remote_entries
from topology import NETWORKS, NO_UPLINK, PORTS, A, network, port

MESH = network(5, "10.60.0.0/16")
OTHER = network(6, "10.61.0.0/24")
L1, L2 = port(501, "10.60.0.2", MESH.net_id), port(502, "10.60.0.3", MESH.net_id)
O1 = port(601, "10.61.0.2", OTHER.net_id)
VXLAN = 550
HOST_1, HOST_2 = IPv4Address("192.0.2.21"), IPv4Address("192.0.2.22")
MESH_VNI, OTHER_VNI = 4242, 77


def remote(vni: int, ipv4: str, host: IPv4Address) -> RemoteRecord:
    return RemoteRecord(vni, IPv4Address(ipv4), mac_for(IPv4Address(ipv4)), host)


R1 = remote(MESH_VNI, "10.60.0.10", HOST_1)
R2 = remote(MESH_VNI, "10.60.0.11", HOST_2)
S1 = remote(OTHER_VNI, "10.61.0.10", HOST_1)
OVERLAYS = [OverlayNetRecord(MESH.net_id, MESH_VNI, VXLAN), OverlayNetRecord(OTHER.net_id, OTHER_VNI, VXLAN)]
UNCHANGED = "unchanged"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def udp(src_mac: str, dst_mac: str, src, dst) -> Packet:
    return Ether(src=src_mac, dst=dst_mac) / IP(src=str(src), dst=str(dst)) / UDP(sport=40000, dport=7) / Raw(b"overlay")


def from_port(p: PortRecord, dst_mac: str, dst) -> Packet:
    return udp(p.mac, dst_mac, p.ipv4, dst)


def from_remote(r: RemoteRecord, dst_mac: str, dst, src=None) -> Packet:
    return udp(r.mac, dst_mac, src or r.ipv4, dst)


def arp_request(p: PortRecord, target) -> Packet:
    return Ether(src=p.mac, dst=BROADCAST) / ARP(op="who-has", hwsrc=p.mac, psrc=str(p.ipv4), pdst=str(target))


def arp_reply(p: PortRecord, mac: str, ip) -> Packet:
    return Ether(src=mac, dst=p.mac) / ARP(op="is-at", hwsrc=mac, psrc=str(ip), hwdst=p.mac, pdst=str(p.ipv4))


@dataclass(frozen=True)
class Case:
    id: str
    prog: str
    frame: Packet
    ingress: int
    verdict: str
    redirects: list[tuple[str, int]]
    counters: tuple[str, ...]
    tunnel_in: tuple[int, IPv4Address] | None = None  # the key the frame arrives with
    tunnel_out: tuple[int, IPv4Address] | None = None  # the key it must leave with
    output: Packet | str = UNCHANGED


C, V = "fn_from_container", "fn_from_vxlan"
CASES = [
    # ---- from a container: the encapsulation decision ----
    Case("to_remote_container_tunnelled_to_its_host", C, from_port(L1, R1.mac, R1.ipv4), L1.ifindex, "redirect",
         [("egress", VXLAN)], ("fwd_overlay_out",), tunnel_out=(MESH_VNI, HOST_1)),
    Case("each_remote_goes_to_its_own_host", C, from_port(L1, R2.mac, R2.ipv4), L1.ifindex, "redirect",
         [("egress", VXLAN)], ("fwd_overlay_out",), tunnel_out=(MESH_VNI, HOST_2)),
    Case("other_overlay_uses_its_own_vni", C, from_port(O1, S1.mac, S1.ipv4), O1.ifindex, "redirect",
         [("egress", VXLAN)], ("fwd_overlay_out",), tunnel_out=(OTHER_VNI, HOST_1)),
    Case("local_peer_stays_local", C, from_port(L1, L2.mac, L2.ipv4), L1.ifindex, "redirect",
         [("peer", L2.ifindex)], ("fwd_peer",)),
    Case("remote_of_another_overlay_is_isolated", C, from_port(L1, S1.mac, S1.ipv4), L1.ifindex, "shot", [],
         ("drop_unknown_dst_mac",)),
    Case("remote_address_with_a_stranger_mac", C, from_port(L1, "02:00:00:00:00:99", R1.ipv4), L1.ifindex, "shot",
         [], ("drop_unknown_dst_mac",)),
    Case("remote_mac_with_an_unknown_address", C, from_port(L1, R1.mac, "10.60.0.99"), L1.ifindex, "shot", [],
         ("drop_unknown_dst_mac",)),
    Case("spoofed_source_never_tunnelled", C, udp(L1.mac, R1.mac, "10.60.0.77", R1.ipv4), L1.ifindex, "shot", [],
         ("drop_spoof_ip",)),
    Case("bridge_network_unknown_mac_still_dropped", C, from_port(A, R1.mac, R1.ipv4), A.ifindex, "shot", [],
         ("drop_unknown_dst_mac",)),
    Case("bridge_network_arp_for_remote_not_answered", C, arp_request(A, R1.ipv4), A.ifindex, "shot", [],
         ("drop_arp_unknown",)),
    # ---- ARP for containers of other hosts: answered here, never flooded ----
    Case("arp_for_remote_answered_from_the_map", C, arp_request(L1, R1.ipv4), L1.ifindex, "redirect",
         [("egress", L1.ifindex)], ("fwd_arp_reply",), output=arp_reply(L1, R1.mac, R1.ipv4)),
    Case("arp_for_remote_of_another_overlay_unanswered", C, arp_request(L1, S1.ipv4), L1.ifindex, "shot", [],
         ("drop_arp_unknown",)),
    Case("arp_for_nobody_unanswered", C, arp_request(L1, "10.60.0.99"), L1.ifindex, "shot", [],
         ("drop_arp_unknown",)),
    # ---- from the VXLAN device: VNI and source checks ----
    Case("from_remote_into_the_container", V, from_remote(R1, L1.mac, L1.ipv4), VXLAN, "redirect",
         [("peer", L1.ifindex)], ("fwd_overlay_in",), tunnel_in=(MESH_VNI, HOST_1)),
    Case("other_overlay_by_its_vni", V, from_remote(S1, O1.mac, O1.ipv4), VXLAN, "redirect",
         [("peer", O1.ifindex)], ("fwd_overlay_in",), tunnel_in=(OTHER_VNI, HOST_1)),
    Case("no_tunnel_key", V, from_remote(R1, L1.mac, L1.ipv4), VXLAN, "shot", [], ("drop_overlay_vni",)),
    Case("unknown_vni", V, from_remote(R1, L1.mac, L1.ipv4), VXLAN, "shot", [], ("drop_overlay_vni",),
         tunnel_in=(999, HOST_1)),
    Case("vni_of_another_overlay_cannot_reach_this_one", V, from_remote(S1, L1.mac, L1.ipv4), VXLAN, "shot", [],
         ("drop_unknown_dst_mac",), tunnel_in=(OTHER_VNI, HOST_1)),
    Case("source_from_the_wrong_host", V, from_remote(R1, L1.mac, L1.ipv4), VXLAN, "shot", [],
         ("drop_overlay_spoof",), tunnel_in=(MESH_VNI, HOST_2)),
    Case("unregistered_inner_source", V, from_remote(R1, L1.mac, L1.ipv4, src="10.60.0.99"), VXLAN, "shot", [],
         ("drop_overlay_spoof",), tunnel_in=(MESH_VNI, HOST_1)),
    Case("destination_mac_and_address_disagree", V, from_remote(R1, L2.mac, L1.ipv4), VXLAN, "shot", [],
         ("drop_isolation",), tunnel_in=(MESH_VNI, HOST_1)),
    Case("to_the_gateway_mac_never_delivered", V, from_remote(R1, MESH.gateway_mac, MESH.gateway), VXLAN, "shot",
         [], ("drop_unknown_dst_mac",), tunnel_in=(MESH_VNI, HOST_1)),
    Case("to_a_port_of_another_network_never_delivered", V, from_remote(R1, O1.mac, O1.ipv4), VXLAN, "shot", [],
         ("drop_unknown_dst_mac",), tunnel_in=(MESH_VNI, HOST_1)),
    Case("arp_never_crosses_hosts", V, Ether(src=R1.mac, dst=BROADCAST) / ARP(hwsrc=R1.mac, psrc=str(R1.ipv4),
                                                                             pdst=str(L1.ipv4)),
         VXLAN, "shot", [], ("drop_unsupported_l3",), tunnel_in=(MESH_VNI, HOST_1)),
]


@pytest.fixture
def overlay(test_datapath):
    maps = reset(test_datapath, [*NETWORKS, MESH, OTHER], [*PORTS, L1, L2, O1], NO_UPLINK, [])
    maps.sync_overlay_nets(OVERLAYS)
    maps.sync_remotes([R1, R2, S1])
    yield test_datapath, maps
    maps.sync_remotes([])
    maps.sync_overlay_nets([])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(overlay, case: Case):
    datapath, maps = overlay
    frame = bytes(case.frame)
    result = datapath.run(case.prog, frame, case.ingress, tunnel=case.tunnel_in)
    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    expected = frame if isinstance(case.output, str) else bytes(case.output)
    assert result.output == expected
    if case.prog == C:
        assert result.tunnel == case.tunnel_out
    assert maps.counters()[case.prog] == {name: (1, len(frame)) for name in case.counters}


def test_a_remote_that_leaves_the_map_is_no_longer_reached(overlay):
    """The agent removing an entry (a host gone from the store) stops the traffic at once."""
    datapath, maps = overlay
    maps.sync_remotes([R2, S1])
    result = datapath.run(C, bytes(from_port(L1, R1.mac, R1.ipv4)), L1.ifindex)
    assert (result.verdict, result.tunnel) == ("shot", None)
    assert maps.counters()[C] == {"drop_unknown_dst_mac": (1, len(from_port(L1, R1.mac, R1.ipv4)))}
    assert sorted(str(r.ipv4) for r in maps.remotes()) == ["10.60.0.11", "10.61.0.10"]


def test_without_the_overlay_program_the_original_reason_is_counted(overlay):
    """fn_tails' overlay slot empty: fn_from_container drops with the reason it found."""
    datapath, maps = overlay
    fd, slot = datapath.dp.maps["fn_tails"], ctypes.c_uint32(declared.TAIL_PROGRAMS["fn_tail_overlay"])
    libbpf.map_delete(fd, slot)
    try:
        frame = bytes(arp_request(L1, R1.ipv4))
        result = datapath.run(C, frame, L1.ifindex)
        assert result.verdict == "shot"
        assert maps.counters()[C] == {"drop_arp_unknown": (1, len(frame))}
    finally:
        libbpf.map_update(fd, slot, ctypes.c_uint32(datapath.dp.progs["fn_tail_overlay"]))


# ---- carried over to a new build (datapath/ovlcarry.py) --------------------------------------------
BPF_MAP_TYPE_HASH = 1


@pytest.fixture
def old_builds(tmp_path):
    """A bpffs directory in which tests pin stand-ins for older builds' tables."""
    root = Path("/sys/fs/bpf") / f"fastnet-test-ovlcarry-{os.getpid()}"
    root.mkdir()
    yield root
    shutil.rmtree(root)


def pin_old_table(root: Path, build: str, rows: list[tuple], value_size: int | None = None) -> Path:
    """fn_ovl_remotes of an older build pinned at root/build (its ABI version in the name, as
    the loader names pin directories), holding `rows`."""
    d = root / build
    d.mkdir()
    size = value_size or ctypes.sizeof(abi.OvlRemote)
    fd = libbpf.map_create(BPF_MAP_TYPE_HASH, "fn_ovl_remotes", ctypes.sizeof(abi.OvlKey), size, 64)
    try:
        for key, value in rows:
            libbpf.map_update(fd, key, value if value_size is None else (ctypes.c_uint8 * size)())
        libbpf.obj_pin(fd, str(d / "map_fn_ovl_remotes"))
    finally:
        os.close(fd)
    return d


def test_a_new_build_gets_the_old_builds_remotes(overlay, old_builds):
    """Copied before the ports move, keeping what the agent already wrote into the new build;
    a table of another layout, or of an ABI before the table existed, is never read."""
    _, maps = overlay
    moved_r2 = RemoteRecord(R2.vni, R2.ipv4, R2.mac, HOST_1)  # the agent's newer word on R2
    maps.sync_remotes([moved_r2])
    same = pin_old_table(old_builds, f"v{abi.ABI_VERSION}_old", remote_entries([R1, R2]))
    other_layout = pin_old_table(old_builds, f"v{abi.ABI_VERSION}_odd", remote_entries([S1]), value_size=16)
    before_overlays = pin_old_table(old_builds, "v10_old", remote_entries([S1]))
    assert ovlcarry.carry([same, other_layout, before_overlays], maps.dp.maps["fn_ovl_remotes"]) == 1
    assert sorted(maps.remotes(), key=lambda r: r.ipv4) == [R1, moved_r2]
