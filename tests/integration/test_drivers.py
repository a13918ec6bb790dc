"""The macvlan and ipvlan drivers, checked from the parent's segment (the WORLD namespace).

   HOST                                                      WORLD
     up0 198.51.100.1/24 (the uplink, and the parent) ====== up0 198.51.100.2/24
       macvlan / ipvlan l2 containers 203.0.113.x/24            + 203.0.113.1/24 (the segment's router)
       ipvlan l3 containers 10.77.0.x/24                        route 10.77.0.0/24 via 198.51.100.1
     up1 (no address; a parent that is not the uplink) ====== up1 192.0.2.1/24  (one test)
       ipvlan l2 containers 192.0.2.x/24

macvlan containers have their own MACs (02:fa:<address>); every ipvlan container is seen
with its parent's MAC. The host never reaches macvlan containers through the parent.
"""
from __future__ import annotations

import json
import socket
import time

import pytest
from harness import (
    UPLINK,
    Capture,
    EchoServer,
    assert_no_leftovers,
    containers,
    mac_for,
    make_socket,
    marker,
    one_line_error,
    ping,
    ping_from_host,
    run,
    tcp_echo,
    uplink_mac,
)
from scapy.all import ARP, Ether

SEGMENT_ROUTER = "203.0.113.1"


def world_ns(host) -> str:
    return f"/run/netns/{host.world}"


def add_segment_router(host, dev: str = UPLINK, address: str = f"{SEGMENT_ROUTER}/24") -> None:
    run("ip", "-n", host.world, "addr", "add", address, "dev", dev)


def world_ping(host, ip: str, tries: int = 3) -> bool:
    return any(run("ip", "netns", "exec", host.world, "ping", "-n", "-c1", "-W1", ip, check=False).returncode == 0
               for _ in range(tries))


def world_neighbours(host, dev: str = UPLINK) -> dict[str, str]:
    rows = json.loads(run("ip", "-n", host.world, "-j", "neigh", "show", "dev", dev).stdout or "[]")
    return {r["dst"]: r.get("lladdr") for r in rows}


def parent_configuration(host, dev: str = UPLINK) -> dict:
    """Everything of the parent that fastnet must leave alone: link settings, addresses,
    routes of every table, and its IPv4 sysctls (and the host's forwarding switch)."""
    link = json.loads(host.sh("ip", "-j", "-d", "link", "show", "dev", dev).stdout)[0]
    addrs = [(a["local"], a["prefixlen"], a.get("scope"))
             for entry in json.loads(host.sh("ip", "-4", "-j", "addr", "show", "dev", dev).stdout or "[]")
             for a in entry.get("addr_info", [])]
    routes = sorted(json.dumps(r, sort_keys=True) for r in
                    json.loads(host.sh("ip", "-4", "-j", "route", "show", "table", "all").stdout or "[]"))
    sysctls = host.sh("sh", "-c", f"grep -r . /proc/sys/net/ipv4/conf/{dev}/ /proc/sys/net/ipv4/ip_forward").stdout
    keep = ("flags", "mtu", "operstate", "address", "promiscuity", "allmulti", "ifalias")
    return {"link": {k: link.get(k) for k in keep}, "addrs": addrs, "routes": routes, "sysctls": sysctls}


def sources_seen_from_world(host, ctrs, dest: str, dev: str = UPLINK) -> dict[str, str]:
    """Each container sends one UDP datagram with a unique payload to dest; returns the
    source MAC of each as sniffed on WORLD's side of the segment."""
    marks = {name: marker(name) for name in ctrs}
    seen = {}
    with Capture({"world": (world_ns(host), dev)}) as cap:
        for name, c in ctrs.items():
            with make_socket(c.netns, socket.SOCK_DGRAM) as s:
                for _ in range(3):  # the first may wait for ARP
                    s.sendto(marks[name], (dest, 9))
                    time.sleep(0.05)
        for name in ctrs:
            frame = cap.wait_for("world", marks[name])[0]
            seen[name] = frame[Ether].src
    return seen


def arp_answers(host, target: str, dev: str = UPLINK, timeout: float = 1.0) -> list:
    """ARP replies WORLD gets for a scapy who-has of target, sent on its side of the segment."""
    from harness import l2socket

    mine = json.loads(run("ip", "-n", host.world, "-j", "link", "show", "dev", dev).stdout)[0]["address"]
    request = Ether(src=mine, dst="ff:ff:ff:ff:ff:ff") / ARP(op="who-has", hwsrc=mine, psrc=SEGMENT_ROUTER, pdst=target)
    with Capture({"world": (world_ns(host), dev)}) as cap:
        sock = l2socket(world_ns(host), dev)
        try:
            sock.send(request)
        finally:
            sock.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = [p for p in cap.frames["world"] if ARP in p and p[ARP].op == 2 and p[ARP].psrc == target]
            if replies:
                return replies
            time.sleep(0.05)
    return []


def reach_tcp(host, ctr, from_ns: str) -> str:
    with EchoServer(ctr.netns) as server:
        return tcp_echo(from_ns, ctr.ip(ctr.net), server.port)


# ---------------------------------------------------------------------------------------- macvlan
MACVLAN = """\
name: mv
networks:
  lan:
    driver: macvlan
    parent: up0
    mode: {mode}
    subnet: 203.0.113.0/24
containers:
  a:
    networks: [lan]
  b:
    networks: [lan]
"""


def _ctrs(host, project: str, net: str) -> dict:
    found = containers(host, project)
    for c in found.values():
        c.net = net
    return found


def test_macvlan_bridge_mode_from_the_segment(host):
    add_segment_router(host)
    cp = host.up(MACVLAN.format(mode="bridge"))
    first = host.snapshot("mv")
    assert "nothing to do" in host.up(cp.path).stdout.lower() or host.snapshot("mv") == first
    assert host.snapshot("mv") == first, "a second up changes nothing"
    ctrs = _ctrs(host, "mv", "lan")
    a, b = ctrs["a"], ctrs["b"]
    assert (a.ip("lan"), b.ip("lan")) == ("203.0.113.2", "203.0.113.3")
    assert host.inspect("a")["networks"]["lan"]["driver"] == "macvlan"
    for c in (a, b):
        assert world_ping(host, c.ip("lan")), f"WORLD cannot ping {c.name}"
        assert reach_tcp(host, c, world_ns(host)) == "ok"
    # each container is its own station on the wire, with fastnet's MAC for its address
    assert world_neighbours(host)[a.ip("lan")] == mac_for(a.ip("lan"))
    assert sources_seen_from_world(host, ctrs, SEGMENT_ROUTER) == {n: mac_for(c.ip("lan")) for n, c in ctrs.items()}
    assert ping(host, "a", b.ip("lan")), "bridge mode: containers on one parent reach each other"
    # the host cannot reach them through the parent, even with a route onto the segment
    host.sh("ip", "route", "add", "203.0.113.0/24", "dev", UPLINK)
    try:
        assert not ping_from_host(host, a.ip("lan"), tries=1)
    finally:
        host.sh("ip", "route", "del", "203.0.113.0/24", "dev", UPLINK)
    host.down("mv")
    assert_no_leftovers(host)


@pytest.mark.parametrize("mode", ["private", "vepa"])
def test_macvlan_private_and_vepa_modes_keep_containers_apart(host, mode):
    """private: never between containers; vepa: only through the switch on the wire, and
    WORLD's end of the segment (a veth, not a reflective-relay switch) sends nothing back."""
    add_segment_router(host)
    host.up(MACVLAN.format(mode=mode))
    ctrs = _ctrs(host, "mv", "lan")
    for c in ctrs.values():
        assert world_ping(host, c.ip("lan"))
    assert not ping(host, "a", ctrs["b"].ip("lan"), expect=False), f"{mode} mode: no traffic between containers"
    assert ping(host, "a", SEGMENT_ROUTER)
    host.down("mv")
    assert_no_leftovers(host)


def test_macvlan_under_the_iptables_backend(host):
    """macvlan is the kernel's: the same under both backends, with no rule and no bridge."""
    add_segment_router(host)
    host.up("backend: iptables\n" + MACVLAN.format(mode="bridge"))
    ctrs = _ctrs(host, "mv", "lan")
    for c in ctrs.values():
        assert world_ping(host, c.ip("lan"))
    assert not [l for l in host.links() if l.get("linkinfo", {}).get("info_kind") == "bridge"]
    host.down("mv")
    assert_no_leftovers(host)


VLAN_MACVLAN = """\
name: mv
networks:
  tagged:
    driver: macvlan
    parent: up0.42
    subnet: 10.42.0.0/24
containers:
  a:
    networks: [tagged]
"""


def test_vlan_parent_sub_interface_created_tagged_and_removed(host):
    """parent IF.VLAN: fastnet creates up0.42 (on this kernel, without 8021q, as a veth whose
    peer tags in eBPF), the container's frames leave up0 tagged 42 and tagged frames reach it;
    `down` removes the sub-interface."""
    from scapy.all import ICMP, IP, Dot1Q

    cp = host.up(VLAN_MACVLAN)
    link = next(l for l in host.links() if l["ifname"] == "up0.42")
    assert link["ifalias"] == "fastnet:-host/vlan/up0.42"
    assert link["address"] == uplink_mac(host), "a VLAN sub-interface has its parent's MAC"
    a = _ctrs(host, "mv", "tagged")["a"]
    world_mac = json.loads(run("ip", "-n", host.world, "-j", "link", "show", "dev", UPLINK).stdout)[0]["address"]
    # out: the container's ARP and a datagram leave up0 with tag 42 and the container's MAC
    host.exec("a", "ip", "neigh", "replace", "10.42.0.1", "lladdr", world_mac, "dev", "eth0", check=True)
    mark = marker("vlan-out")
    with Capture({"world": (world_ns(host), UPLINK)}) as cap:
        with make_socket(a.netns, socket.SOCK_DGRAM) as s:
            s.sendto(mark, ("10.42.0.1", 9))
        frame = cap.wait_for("world", mark)[0]
    assert Dot1Q in frame and frame[Dot1Q].vlan == 42, frame.summary()
    assert frame[Ether].src == mac_for(a.ip("tagged")) and frame[IP].src == a.ip("tagged")
    # in: a tagged echo request from the segment is answered, tagged
    from harness import l2socket

    request = (Ether(src=world_mac, dst=mac_for(a.ip("tagged"))) / Dot1Q(vlan=42) /
               IP(src="10.42.0.1", dst=a.ip("tagged")) / ICMP(id=4242, seq=1) / mark)
    with Capture({"world": (world_ns(host), UPLINK)}) as cap:
        sock = l2socket(world_ns(host), UPLINK)
        try:
            sock.send(request)
        finally:
            sock.close()
        replies = wait_for_reply(cap, mark)
    assert replies[0][Dot1Q].vlan == 42 and replies[0][IP].src == a.ip("tagged")
    host.down(cp.path)
    assert "up0.42" not in {l["ifname"] for l in host.links()}
    assert_no_leftovers(host)


def wait_for_reply(cap, mark: bytes, timeout: float = 3.0) -> list:
    from scapy.all import ICMP

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in cap.matching("world", mark) if ICMP in p and p[ICMP].type == 0]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("no tagged echo reply seen from the container")


def test_vlan_sub_interface_shared_by_two_networks_and_projects(host):
    """One sub-interface for every network that names it: removed with the last one only."""
    first = host.up(VLAN_MACVLAN)
    second = host.up(VLAN_MACVLAN.replace("name: mv", "name: mv2").replace("10.42.0.0/24", "10.42.1.0/24"))
    host.down(first.path)
    assert "up0.42" in {l["ifname"] for l in host.links()}, "still used by project mv2"
    host.down(second.path)
    assert "up0.42" not in {l["ifname"] for l in host.links()}
    assert_no_leftovers(host)


def test_vlan_sub_interface_that_existed_is_kept(host):
    """A sub-interface fastnet did not create is used and left alone (here a plain veth end
    named like one, standing in for a VLAN device made by the administrator)."""
    run("ip", "-n", host.name, "link", "add", "up0.42", "type", "veth", "peer", "name", "keep42")
    try:
        cp = host.up(VLAN_MACVLAN)
        assert "ifalias" not in next(l for l in host.links() if l["ifname"] == "up0.42")
        host.down(cp.path)
        assert "up0.42" in {l["ifname"] for l in host.links()}
    finally:
        run("ip", "-n", host.name, "link", "del", "up0.42", check=False)
    assert_no_leftovers(host)


def test_vlan_parent_refused_by_iptables_backend_without_8021q(host):
    import os

    cp = host.up("backend: iptables\n" + VLAN_MACVLAN, check=False)
    if os.path.isdir("/proc/net/vlan"):  # a kernel with 8021q: the kernel's VLAN device
        assert cp.returncode == 0, cp.stderr
        host.down(cp.path)
    else:
        assert cp.returncode != 0
        line = one_line_error(cp)
        assert "networks.tagged.parent: creating up0.42" in line and "needs the ebpf backend" in line, line
    assert_no_leftovers(host)


def test_missing_parent_is_refused_before_anything_is_made(host):
    cp = host.up(MACVLAN.format(mode="bridge").replace("parent: up0", "parent: eth9"), check=False)
    assert cp.returncode != 0
    assert "networks.lan.parent: no interface named 'eth9' on this host" in one_line_error(cp)
    assert host.projects() == []
    assert_no_leftovers(host)


def test_container_address_that_is_the_hosts_is_refused(host):
    text = MACVLAN.format(mode="bridge").replace("203.0.113.0/24", "198.51.100.0/24\n    gateway: 198.51.100.2")
    cp = host.up(text, check=False)
    assert cp.returncode != 0
    assert "198.51.100.1 is an address of this host" in one_line_error(cp)
    assert_no_leftovers(host)


# ----------------------------------------------------------------------------------------- ipvlan
IPVLAN_L2 = """\
name: iv
networks:
  lan:
    driver: ipvlan
    parent: up0
    subnet: 203.0.113.0/24
containers:
  a:
    networks: [lan]
  b:
    networks: [lan]
"""

IPVLAN_L3 = """\
name: iv3
networks:
  routed:
    driver: ipvlan
    parent: up0
    mode: l3
    subnet: 10.77.0.0/24
containers:
  x:
    networks: [routed]
  y:
    networks: [routed]
"""


def test_ipvlan_l2_one_mac_on_the_wire(host):
    add_segment_router(host)
    before = parent_configuration(host)
    cp = host.up(IPVLAN_L2)
    first = host.snapshot("iv")
    host.up(cp.path)
    assert host.snapshot("iv") == first, "a second up changes nothing"
    parent_mac = uplink_mac(host)
    ctrs = _ctrs(host, "iv", "lan")
    assert host.inspect("a")["networks"]["lan"]["mac"] == parent_mac
    for c in ctrs.values():
        assert world_ping(host, c.ip("lan")), f"WORLD cannot ping {c.name}"
        assert reach_tcp(host, c, world_ns(host)) == "ok"
        replies = arp_answers(host, c.ip("lan"))
        assert replies and {r[ARP].hwsrc for r in replies} == {parent_mac}, "l2 answers ARP with the parent's MAC"
    assert sources_seen_from_world(host, ctrs, SEGMENT_ROUTER) == {"a": parent_mac, "b": parent_mac}
    assert {world_neighbours(host)[c.ip("lan")] for c in ctrs.values()} == {parent_mac}
    assert ping(host, "a", ctrs["b"].ip("lan")), "containers on one parent reach each other"
    assert parent_configuration(host) == before, "nothing but fastnet's filter changes on the parent"
    moved = host.counters("a", "fn_from_ipvlan")
    assert moved["fwd_ipvlan_out"] > 0 and moved["fwd_peer"] > 0
    host.down("iv")
    assert_no_leftovers(host)
    assert parent_configuration(host) == before


def test_ipvlan_l3_routed_and_no_arp(host):
    run("ip", "-n", host.world, "route", "add", "10.77.0.0/24", "via", "198.51.100.1")
    before = parent_configuration(host)
    host.up(IPVLAN_L3)
    parent_mac = uplink_mac(host)
    ctrs = _ctrs(host, "iv3", "routed")
    for c in ctrs.values():
        assert world_ping(host, c.ip("routed")), f"WORLD cannot ping {c.name}"
        assert reach_tcp(host, c, world_ns(host)) == "ok"
        assert arp_answers(host, c.ip("routed")) == [], "l3: nobody answers ARP for a container"
    assert sources_seen_from_world(host, ctrs, "198.51.100.2") == {"x": parent_mac, "y": parent_mac}
    assert ping(host, "x", ctrs["y"].ip("routed"))
    routes = host.exec("x", "ip", "-j", "route", "show", "default").stdout
    assert json.loads(routes)[0]["dev"] == "eth0" and "gateway" not in json.loads(routes)[0]
    assert parent_configuration(host) == before
    assert host.counters("x", "fn_from_ipvlan")["fwd_ipvlan_routed"] > 0
    host.down("iv3")
    assert_no_leftovers(host)


def test_ipvlan_on_a_parent_that_is_not_the_uplink(host):
    """fn_from_parent on up1 (no address), added and removed with the network; the clsact
    qdisc fastnet created there goes too."""
    run("ip", "-n", host.name, "link", "add", "up1", "type", "veth", "peer", "name", "up1", "netns", host.world)
    try:
        run("ip", "-n", host.name, "link", "set", "up1", "up")
        run("ip", "-n", host.world, "link", "set", "up1", "up")
        add_segment_router(host, "up1", "192.0.2.1/24")
        before = parent_configuration(host, "up1")
        host.up("uplink: up0\n" + IPVLAN_L2.replace("parent: up0", "parent: up1").replace("203.0.113.0/24", "192.0.2.0/24"))
        assert [f["options"]["bpf_name"] for f in host.tc_filters("up1")] == ["fn_from_parent"]
        ctrs = _ctrs(host, "iv", "lan")
        for c in ctrs.values():
            assert world_ping(host, c.ip("lan"))
            assert reach_tcp(host, c, world_ns(host)) == "ok"
        up1_mac = next(l["address"] for l in host.links() if l["ifname"] == "up1")
        assert sources_seen_from_world(host, ctrs, "192.0.2.1", dev="up1") == {"a": up1_mac, "b": up1_mac}
        assert parent_configuration(host, "up1") == before
        host.down("iv")
        assert host.tc_filters("up1") == []
        assert "clsact" not in host.sh("tc", "qdisc", "show", "dev", "up1").stdout
    finally:
        run("ip", "-n", host.name, "link", "del", "up1", check=False)
    assert_no_leftovers(host)


def test_ipvlan_refused_by_the_iptables_backend(host):
    cp = host.up("backend: iptables\n" + IPVLAN_L2, check=False)
    assert cp.returncode != 0
    assert "networks.lan.driver: ipvlan needs the ebpf backend" in one_line_error(cp)
    assert host.projects() == []
    assert_no_leftovers(host)


def test_macvlan_and_ipvlan_next_to_a_bridge_network(host):
    """A container on a bridge network (its default route, NAT) and on an ipvlan network."""
    add_segment_router(host)
    text = IPVLAN_L2.replace("networks:\n  lan:", "networks:\n  front: {subnet: 10.90.1.0/24}\n  lan:", 1)
    text = text.replace("  a:\n    networks: [lan]", "  a:\n    networks: [front, lan]")
    host.up(text)
    ctrs = _ctrs(host, "iv", "lan")
    assert world_ping(host, ctrs["a"].ip("lan"))
    assert ping(host, "a", "198.51.100.2"), "the bridge network's NAT still works"
    host.down("iv")
    assert_no_leftovers(host)


@pytest.mark.parametrize("with_state", [True, False], ids=["with_state", "without_state"])
def test_down_removes_parent_programs(host, with_state):
    add_segment_router(host)
    cp = host.up(IPVLAN_L2)
    assert [f["options"]["bpf_name"] for f in host.tc_filters(UPLINK)] == ["fn_from_uplink"]
    if not with_state:
        for f in (host.dir / "projects").glob("iv*"):
            f.unlink()
    host.down(cp.path)
    assert_no_leftovers(host)


def test_macvlan_passthru_takes_the_parents_mac(host):
    """passthru: one container owns the parent's station (and its MAC), as with Docker."""
    add_segment_router(host)
    host.up(MACVLAN.format(mode="passthru").replace("  b:\n    networks: [lan]\n", ""))
    ctrs = _ctrs(host, "mv", "lan")
    parent_mac = uplink_mac(host)
    assert host.inspect("a")["networks"]["lan"]["mac"] == parent_mac
    assert world_ping(host, ctrs["a"].ip("lan"))
    assert sources_seen_from_world(host, ctrs, SEGMENT_ROUTER) == {"a": parent_mac}
    host.down("mv")
    assert_no_leftovers(host)


def test_failure_half_way_rolls_back(host):
    """passthru gives the parent to one macvlan device: a second container's fails, and `up`
    undoes the first (and the network) instead of leaving half a project."""
    add_segment_router(host)
    cp = host.up(MACVLAN.format(mode="passthru"), check=False)
    assert cp.returncode != 0
    assert "rolled back" in one_line_error(cp)
    assert host.projects() == []
    assert_no_leftovers(host)


def test_overlapping_subnets_on_one_parent_across_projects(host):
    add_segment_router(host)
    host.up(MACVLAN.format(mode="bridge"))
    other = MACVLAN.format(mode="bridge").replace("name: mv", "name: mv2").replace("203.0.113.0/24", "203.0.113.128/25")
    cp = host.up(other, check=False)
    assert cp.returncode != 0
    line = one_line_error(cp)
    assert "networks.lan.subnet: 203.0.113.128/25 overlaps 203.0.113.0/24 of network mv/lan on parent up0" in line
    assert host.projects() == ["mv"]
    assert "lan=macvlan" in host.fastnet("ps").stdout
    host.down("mv")
    assert_no_leftovers(host)


def test_vlan_sub_interface_removed_by_down_without_state(host):
    host.up(VLAN_MACVLAN)
    for f in (host.dir / "projects").glob("mv*"):
        f.unlink()
    host.down("mv")
    assert "up0.42" not in {l["ifname"] for l in host.links()}
    assert_no_leftovers(host)
