"""The bench's cross-host pieces that need no kernel: the overlay files it gives each host, the
Docker-style MACs, which variant gets which pair, and n/a where there is none. (The pairs
themselves are built and measured by tests/integration/test_bench.py.)"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from fastnet.control.bench import runner, xhost
from fastnet.control.bench.variants import DirectBed
from fastnet.control.config import parse_config


def test_each_host_file_joins_the_same_overlay_with_its_own_container():
    cfgs = [parse_config(xhost.overlay_yaml(i)) for i in (1, 2)]
    for i, cfg in enumerate(cfgs, 1):
        assert (cfg.uplink, cfg.store) == ("up0", xhost.ETCD_URL)
        assert cfg.networks["mesh"].driver == "overlay"
        assert cfg.networks["mesh"].subnet == IPv4Network(xhost.OVERLAY_SUBNET)
        assert list(cfg.containers) == [f"x{i}"]
    assert xhost.ETCD_URL == f"http://{xhost.UNDERLAY_IP}:2379"
    assert IPv4Address(xhost.UNDERLAY_IP) in IPv4Network(f"{xhost.HOST_IPS[0]}/24", strict=False)


def test_docker_style_macs_are_derived_from_the_address_as_docker_does():
    assert xhost.docker_mac("10.77.11.2") == "02:42:0a:4d:0b:02"
    assert xhost.docker_mac("172.18.0.255") == "02:42:ac:12:00:ff"


def test_pairs_per_variant_and_the_same_mtu_for_every_one():
    assert xhost.MTU == 1450  # the underlay's 1500 less VXLAN's 50 bytes, also for the routed pair
    kinds = {v: type(xhost.make_pair(v, "t", Path("/tmp"))) for v in ("ebpf", "iptables", "direct")}
    assert kinds == {"ebpf": xhost.OverlayPair, "iptables": xhost.DockerOverlayPair, "direct": xhost.RoutedPair}
    assert xhost.make_pair("nftables", "t", Path("/tmp")) is None


def test_a_variant_without_a_pair_reports_not_applicable():
    bed = DirectBed("t")
    assert bed.xhost is None
    s = runner.Settings.make(True, 1, tiny=True)
    got = {}
    for group in (runner.g_xhost_rr, runner.g_xhost_udp, runner.g_xhost_gbps, runner.g_xhost_bpf):
        got.update(group(bed, s, {}))
    assert got == dict.fromkeys(("xhost_tcp_rr_p50_us", "xhost_tcp_rr_p99_us", "xhost_udp_pps", "xhost_tcp_gbps",
                                 "bpf_stats_ns_per_xhost_pkt"))
    assert set(got) <= set(runner.METRICS)
