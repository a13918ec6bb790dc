"""The eBPF bridging datapath, on one project shared by the module.

                 HOST netns (no bridge device, no iptables)
   gateway 10.90.1.1/32 on every front port     gateway 10.90.2.1/32 on every back port
   +---------+---------+---------+---------+     +---------+---------+
   | port a  | port b  | port c  | port e0 |     | port e1 | port d  |  host ends of the veths,
   +----+----+----+----+----+----+----+----+     +----+----+----+----+  each with fn_from_container
        |         |         |         |               |         |       at TC ingress
      a eth0    b eth0    c eth0    e eth0 -- e -- e eth1     d eth0
     .10 static   .x        .y        .z             .w         .v
   '-------------- front 10.90.1.0/24 -----'     '--- back 10.90.2.0/24 ---'

   f: no networks listed -> default network "bridge" 172.17.0.0/16, alone.
"""
from __future__ import annotations

import itertools
import json
import time
from contextlib import closing

import pytest
from harness import (
    BLOCKED,
    HOST_PORT_RE,
    TWO_NETWORKS,
    Capture,
    EchoServer,
    containers,
    in_netns,
    l2socket,
    mac_for,
    marker,
    ping,
    ping_from_host,
    tcp_echo,
    udp_echo,
)
from scapy.all import ARP, IP, UDP, Ether, Raw

from fastnet.control.routing import FIB_DEVICE

BCAST = "ff:ff:ff:ff:ff:ff"
GATEWAYS = {"front": "10.90.1.1", "back": "10.90.2.1", "bridge": "172.17.0.1"}
SUBNETS = {"front": "10.90.1.0/24", "back": "10.90.2.0/24", "bridge": "172.17.0.0/16"}


@pytest.fixture(scope="module")
def topo(module_host):
    module_host.up(TWO_NETWORKS)
    return module_host, containers(module_host, "demo")


def delta(before, after):
    return {k: after[k] - before[k] for k in set(after) | set(before) if after[k] != before[k]}


def udp_frame(src, dst_mac, dst_ip, mark, src_mac=None, src_ip=None, net="front"):
    return (
        Ether(src=src_mac or src.mac(net), dst=dst_mac)
        / IP(src=src_ip or src.ip(net), dst=dst_ip)
        / UDP(sport=40000, dport=40001)
        / Raw(mark)
    )


# -- 1 -----------------------------------------------------------------------------------
PEERS = {"front": ["a", "b", "c", "e"], "back": ["d", "e"]}


def test_every_pair_on_a_network_reaches_each_other(topo):
    host, c = topo
    before = host.counters("a")
    servers = {n: (EchoServer(c[n].netns, "tcp"), EchoServer(c[n].netns, "udp")) for n in "abcde"}
    failures = []
    pairs = 0
    try:
        for net, members in PEERS.items():
            for src, dst in itertools.permutations(members, 2):
                pairs += 1
                ip = c[dst].ip(net)
                if not ping(host, src, ip):
                    failures.append(f"{src} -> {dst} ({ip}) ICMP failed")
                if (r := tcp_echo(c[src].netns, ip, servers[dst][0].port)) != "ok":
                    failures.append(f"{src} -> {dst} ({ip}) TCP 64 KiB echo: {r}")
                if (r := udp_echo(c[src].netns, ip, servers[dst][1].port)) != "ok":
                    failures.append(f"{src} -> {dst} ({ip}) UDP 1 KiB echo: {r}")
    finally:
        for tcp, udp in servers.values():
            tcp.close()
            udp.close()
    assert not failures, "\n".join(failures)
    assert ping(host, "f", GATEWAYS["bridge"]), "f cannot reach the gateway of its default network"

    moved = delta(before, host.counters("a"))
    # at least the echo request and reply of every ping went through fastnet's redirect
    assert moved.get("fwd_peer", 0) >= 2 * pairs, moved
    assert host.sh("ip", "-d", "link", "show", "type", "bridge").stdout.strip() == "", "a bridge device exists in HOST"


# -- 2 -----------------------------------------------------------------------------------
def test_containers_on_different_networks_are_isolated(topo):
    host, c = topo
    a, d, e = c["a"], c["d"], c["e"]
    before = host.counters("a")
    with EchoServer(a.netns, "tcp") as at, EchoServer(a.netns, "udp") as au, EchoServer(
        d.netns, "tcp"
    ) as dt, EchoServer(d.netns, "udp") as du:
        for src, dst_ip, tcp_port, udp_port in ((a, d.ip("back"), dt.port, du.port), (d, a.ip("front"), at.port, au.port)):
            assert not ping(host, src.name, dst_ip, expect=False), f"{src.name} pinged {dst_ip}"
            assert (r := tcp_echo(src.netns, dst_ip, tcp_port, timeout=1)) in BLOCKED, f"{src.name} -> {dst_ip} TCP: {r}"
            assert (r := udp_echo(src.netns, dst_ip, udp_port, timeout=0.5, tries=1)) in BLOCKED, f"{src.name} -> {dst_ip} UDP: {r}"
        dropped = delta(before, host.counters("a")).get("drop_isolation", 0)
        assert dropped >= 6, f"drop_isolation grew by {dropped}, expected one per attempt (>= 6)"

        # e is on both networks and reaches both (the servers above were up all along)
        for dst_ip, tcp_port, udp_port in ((a.ip("front"), at.port, au.port), (d.ip("back"), dt.port, du.port)):
            assert ping(host, "e", dst_ip)
            assert tcp_echo(e.netns, dst_ip, tcp_port) == "ok"
            assert udp_echo(e.netns, dst_ip, udp_port) == "ok"

    # Straight at d's MAC on L2 (not via the gateway): not on a's network, never delivered.
    bad, good = marker("a-to-d-mac"), marker("e-to-d")
    before = host.counters("a")
    with Capture({"d": (d.netns, "eth0")}) as cap, closing(l2socket(a.netns)) as sa, closing(
        l2socket(e.netns, e.ifname("back"))
    ) as se:
        sa.send(udp_frame(a, d.mac("back"), d.ip("back"), bad))
        se.send(udp_frame(e, d.mac("back"), d.ip("back"), good, net="back"))
        cap.wait_for("d", good)
        time.sleep(0.2)
        assert not cap.seen("d", bad), "a's frame to d's MAC crossed into network back"
    assert delta(before, host.counters("a")).get("drop_unknown_dst_mac", 0) >= 1


# -- 3 -----------------------------------------------------------------------------------
def test_broadcast_stays_in_its_network(topo):
    host, c = topo
    a, e = c["a"], c["e"]
    points = {
        "b": (c["b"].netns, "eth0"),
        "c": (c["c"].netns, "eth0"),
        "e-front": (e.netns, e.ifname("front")),
        "e-back": (e.netns, e.ifname("back")),
        "d": (c["d"].netns, "eth0"),
    }
    inside, outside = ("b", "c", "e-front"), ("d", "e-back")
    bcast, arp_unknown, after_arp = marker("bcast"), marker("arp-unknown"), marker("bcast2")
    before = host.counters("a")
    with Capture(points) as cap, closing(l2socket(a.netns)) as sa:
        sa.send(udp_frame(a, BCAST, "10.90.1.255", bcast))
        for label in inside:
            cap.wait_for(label, bcast)
        # an ARP request for an address nobody has is dropped, not flooded
        sa.send(Ether(src=a.mac("front"), dst=BCAST) / ARP(op=1, hwsrc=a.mac("front"), psrc=a.ip("front"), pdst="10.90.1.200") / Raw(arp_unknown))
        sa.send(udp_frame(a, BCAST, "255.255.255.255", after_arp))
        for label in inside:
            cap.wait_for(label, after_arp)
        time.sleep(0.2)
        for label in outside:
            assert not cap.seen(label, bcast), f"broadcast from front reached {label}"
            assert not cap.seen(label, after_arp), f"broadcast from front reached {label}"
        for label in points:
            assert not cap.seen(label, arp_unknown), f"ARP request for an unknown address was flooded to {label}"
        for label in inside:
            assert len(cap.matching(label, bcast)) == 1, f"{label} got the broadcast more than once"
    moved = delta(before, host.counters("a"))
    assert moved.get("fwd_flood", 0) >= 2, moved
    assert moved.get("drop_arp_unknown", 0) >= 1, moved


# -- 4 -----------------------------------------------------------------------------------
def test_spoofed_frames_never_reach_the_victim(topo):
    host, c = topo
    a, b, cc = c["a"], c["b"], c["c"]
    am, bm, aip, bip = a.mac("front"), b.mac("front"), a.ip("front"), b.ip("front")
    spoofs = {  # marker -> (frame, counter it must be dropped under)
        (m := marker("src-mac")): (udp_frame(a, bm, bip, m, src_mac=bm), "drop_spoof_mac"),
        (m := marker("src-mac-bcast")): (udp_frame(a, BCAST, "10.90.1.255", m, src_mac=bm), "drop_spoof_mac"),
        (m := marker("src-ip")): (udp_frame(a, bm, bip, m, src_ip=bip), "drop_spoof_ip"),
        (m := marker("src-ip-bcast")): (udp_frame(a, BCAST, "10.90.1.255", m, src_ip=bip), "drop_spoof_ip"),
        (m := marker("arp-reply")): (
            Ether(src=am, dst=bm) / ARP(op=2, hwsrc=am, psrc=bip, hwdst=bm, pdst=bip) / Raw(m),
            "drop_spoof_arp",
        ),
        (m := marker("arp-request")): (
            Ether(src=am, dst=BCAST) / ARP(op=1, hwsrc=am, psrc=bip, pdst=cc.ip("front")) / Raw(m),
            "drop_spoof_arp",
        ),
        (m := marker("garp")): (Ether(src=am, dst=BCAST) / ARP(op=1, hwsrc=am, psrc=bip, pdst=bip) / Raw(m), "drop_spoof_arp"),
        (m := marker("arp-sha")): (
            Ether(src=am, dst=BCAST) / ARP(op=1, hwsrc=bm, psrc=aip, pdst=cc.ip("front")) / Raw(m),
            "drop_spoof_arp",
        ),
    }
    control = marker("control")
    points = {"b": (b.netns, "eth0"), "c": (cc.netns, "eth0")}
    before = host.counters("a")
    with Capture(points) as cap, closing(l2socket(a.netns)) as sa:
        for frame, _ in spoofs.values():
            sa.send(frame)
        sa.send(udp_frame(a, bm, bip, control))
        cap.wait_for("b", control)
        time.sleep(0.2)
        for m in spoofs:
            for label in points:
                assert not cap.seen(label, m), f"spoofed frame {m.decode()} reached {label}"
    moved = delta(before, host.counters("a"))
    for counter in ("drop_spoof_mac", "drop_spoof_ip", "drop_spoof_arp"):
        expected = sum(1 for _, name in spoofs.values() if name == counter)
        assert moved.get(counter, 0) >= expected, f"{counter} grew by {moved.get(counter, 0)}, expected {expected}: {moved}"
    # b's view of a's address was not poisoned either
    neigh = json.loads(in_netns(b.netns, "ip", "-j", "neigh", "show", "dev", "eth0").stdout or "[]")
    assert all(n.get("lladdr") != am for n in neigh if n["dst"] == bip), neigh


# -- 5 -----------------------------------------------------------------------------------
def test_arp_is_answered_by_the_datapath(topo):
    host, c = topo
    a, b = c["a"], c["b"]
    assert host.exec("a", "ip", "neigh", "flush", "all").returncode == 0
    assert ping(host, "a", GATEWAYS["front"]) and ping(host, "a", b.ip("front"))
    neigh = json.loads(host.exec("a", "ip", "-j", "neigh", "show", "dev", "eth0").stdout)
    cache = {n["dst"]: n.get("lladdr") for n in neigh}
    assert cache.get(GATEWAYS["front"]) == "02:fa:0a:5a:01:01", neigh
    assert cache.get(b.ip("front")) == b.mac("front") == mac_for(b.ip("front")), neigh

    before = host.counters("a")
    am, aip = a.mac("front"), a.ip("front")
    with closing(l2socket(a.netns)) as sa:
        for target, want in ((b.ip("front"), b.mac("front")), (GATEWAYS["front"], "02:fa:0a:5a:01:01")):
            ans = sa.sr1(Ether(src=am, dst=BCAST) / ARP(op=1, hwsrc=am, psrc=aip, pdst=target), timeout=2, verbose=0)
            assert ans is not None, f"no ARP reply for {target}"
            assert (ans[Ether].src, ans[Ether].dst) == (want, am), ans.summary()
            arp = ans[ARP]
            assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (2, want, target, am, aip), arp.summary()
    assert delta(before, host.counters("a")).get("fwd_arp_reply", 0) >= 2


# -- 6 -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,net", [("a", "front"), ("d", "back")])
def test_host_and_container_talk_through_the_gateway(topo, name, net):
    host, c = topo
    ctr = c[name]
    gw = GATEWAYS[net]
    before = host.counters(name)
    with EchoServer(host.netns_path, "tcp", ip=gw) as srv:
        assert tcp_echo(ctr.netns, gw, srv.port) == "ok"
    assert ping_from_host(host, ctr.ip(net))
    with EchoServer(ctr.netns, "tcp") as srv:
        assert tcp_echo(host.netns_path, ctr.ip(net), srv.port) == "ok"
    assert delta(before, host.counters(name)).get("fwd_host", 0) >= 3


# -- the shape of what `up` built -------------------------------------------------------------
def test_host_ports_and_container_interfaces(topo):
    host, c = topo
    links = {l["ifname"]: l for l in host.links()}
    addrs = {
        l["ifname"]: {(a["local"], a["prefixlen"]) for a in l.get("addr_info", []) if a["family"] == "inet"}
        for l in json.loads(host.sh("ip", "-j", "addr", "show").stdout)
    }
    routes = {(r.get("type", "unicast"), r["dst"], r.get("dev")) for r in host.routes("proto", "250")}
    for net, subnet in SUBNETS.items():
        assert ("unreachable", subnet, None) in routes, routes
    ports = 0
    for ctr in c.values():
        for net, i in ctr.nets.items():
            ports += 1
            port = i["host_ifname"]
            assert HOST_PORT_RE.match(port) and port.startswith("demo-"), port
            assert links[port]["ifindex"] == i["host_ifindex"]
            assert links[port]["address"] == mac_for(GATEWAYS[net]), f"{port} does not have the gateway's MAC"
            assert (GATEWAYS[net], 32) in addrs[port]
            assert ("unicast", i["ipv4"], port) in routes, f"no /32 route to {i['ipv4']} via {port}"
            names = [f["options"].get("bpf_name") for f in host.tc_filters(port)]
            assert names == ["fn_from_container"], f"{port} ingress filters: {names}"
            assert i["mac"] == mac_for(i["ipv4"]) and i["gateway"] == GATEWAYS[net]
            inside = json.loads(in_netns(ctr.netns, "ip", "-j", "addr", "show", "dev", i["ifname"]).stdout)[0]
            assert inside["address"] == i["mac"]
            assert [(a["family"], a["local"], a["prefixlen"]) for a in inside["addr_info"]] == [
                ("inet", i["ipv4"], i["prefixlen"])
            ], f"{ctr.name}/{i['ifname']}: {inside['addr_info']} (IPv6 must be off)"
        defaults = json.loads(in_netns(ctr.netns, "ip", "-j", "route", "show", "default").stdout)
        first = next(iter(ctr.nets))
        assert [(r["gateway"], r["dev"]) for r in defaults] == [(GATEWAYS[first], ctr.ifname(first))], defaults
    assert ports == 7
    # besides the ports: the loopback, the uplink, and the host's one FIB device (docs/datapath.md)
    assert not [l for l in links if l not in {"lo", "up0", FIB_DEVICE} and not HOST_PORT_RE.match(l)]


def test_host_ports_carry_the_ownership_alias(topo):
    host, c = topo
    links = {l["ifname"]: l for l in host.links()}
    wrong = {
        i["host_ifname"]: links[i["host_ifname"]].get("ifalias")
        for ctr in c.values()
        for net, i in ctr.nets.items()
        if links[i["host_ifname"]].get("ifalias") != f"fastnet:demo/{ctr.name}/{net}"
    }
    assert not wrong, f"host ports without the alias fastnet:<project>/<container>/<network>: {wrong}"
