"""Overlay networks across hosts: three test hosts on one underlay segment, etcd running as a
plain process (started here, its data in the test's tmp), each host running `fastnet up`
with its own file naming the same overlay network.

    +--- fnh-..-ovl1 ---+   +--- fnh-..-ovl2 ---+   +--- fnh-..-ovl3 ---+
    | web1   (mesh)     |   | web2   (mesh)     |   | web3   (mesh)     |
    | fastnet-vxlan     |   | fastnet-vxlan     |   | fastnet-vxlan     |
    | up0 10.99.0.1     |   | up0 10.99.0.2     |   | up0 10.99.0.3     |
    +--------+----------+   +--------+----------+   +--------+----------+
             |                       |                       |
    =========+======= br0 in the underlay namespace =========+===========
                      10.99.0.254: etcd (client port 2379)

mesh is 10.60.0.0/24, one VNI for all hosts; each host's containers get addresses no other
host holds (claimed in etcd). Every container reaches every other by address (ICMP, UDP of
1400 bytes, TCP payload compared, once 10 MiB) and by name; a host that dies without `down`
(its processes killed, its namespace deleted) vanishes from the others' tables within the
lease's TTL, and when it re-joins (same underlay address, same file) it gets its address
back and is reached again; a store that cannot be reached at `up` is a one-line error with
nothing made; etcd restarted under three hosts loses no endpoint and stops no forwarding.

The tests after those share one pair of hosts with two overlay networks, mesh and other
(sketched there): isolation end to end, a frame with the other network's VNI, a rebuild of
the datapath. The last one checks what an overlay does as a bridge network does: SNAT through
the local uplink, a published port, an internal network, and a VXLAN port other than 4789.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from harness import (Ctr, EchoServer, Host, containers, icmp_echo_request, icmp_echo_socket, leftovers, make_socket,
                     moved, one_line_error, ping, run, tcp_echo, udp_echo, uplink_program, wait_until)
from underlay import STORE, STORE_IP, TTL, UNDERLAY_NET, Underlay, remotes, resolve

RETRY = 1.0  # control/overlaysync.RETRY: how often an agent tries a store out of reach
MIB = 1024 * 1024


MESH = "  mesh: {driver: overlay, subnet: 10.60.0.0/24}\n"


def shop_config(networks: str, containers: str, extra: str = "") -> str:
    """Project shop of a test host (uplink up0, the underlay's store): the networks' and the
    containers' YAML lines, then `extra` (more containers, or top-level keys)."""
    return f"name: shop\nuplink: up0\nstore: {STORE}\nnetworks:\n{networks}containers:\n{containers}{extra}"


def overlay_config(n: int, extra: str = "") -> str:
    return shop_config(MESH, f"  web{n}: {{networks: [mesh]}}\n", extra)


def test_three_hosts_reach_each_other_by_address_and_name(underlay):
    underlay.start_etcd()
    hosts = [underlay.add_host(n) for n in (1, 2, 3)]
    for n, h in enumerate(hosts, 1):
        h.up(overlay_config(n))
        if n > 1:  # the new container reaches the tables of the hosts already there within 1 s
            ip = containers(h, "shop")[f"web{n}"].ip("mesh")
            started = time.monotonic()
            for other in hosts[:n - 1]:
                wait_until(lambda other=other: ip in remotes(other), timeout=3, interval=0.02, what=f"{ip} on {other.name}")
            assert time.monotonic() - started < 1.0
    ctrs = {f"web{n}": containers(h, "shop")[f"web{n}"] for n, h in enumerate(hosts, 1)}
    addresses = {name: c.ip("mesh") for name, c in ctrs.items()}
    assert len(set(addresses.values())) == 3, f"two hosts gave one address: {addresses}"
    for n, h in enumerate(hosts, 1):
        others = {a for name, a in addresses.items() if name != f"web{n}"}
        wait_until(lambda h=h, others=others: remotes(h) == others, timeout=3, what=f"{h.name}'s remotes")
        # the MTU leaves room for VXLAN's 50 bytes
        link = json.loads(run("nsenter", f"--net={ctrs[f'web{n}'].netns}", "ip", "-j", "link", "show", "eth0").stdout)
        assert link[0]["mtu"] == 1450

    servers = {name: (EchoServer(c.netns, "tcp", port=7000), EchoServer(c.netns, "udp", port=7001))
               for name, c in ctrs.items()}
    try:
        for n, h in enumerate(hosts, 1):
            src = ctrs[f"web{n}"]
            for name, ip in addresses.items():
                if name == src.name:
                    continue
                assert ping(h, src.name, ip), f"{src.name} cannot ping {name} at {ip}"
                assert tcp_echo(src.netns, ip, 7000, size=256 * 1024) == "ok", f"{src.name} -> {name} TCP"
                assert udp_echo(src.netns, ip, 7001, size=1400) == "ok", f"{src.name} -> {name} UDP"
                assert resolve(h, src.name, name) == ip, f"{src.name} resolving {name}"
        # one bulk transfer: GSO super-packets and a full window through the tunnel, both ways
        assert tcp_echo(ctrs["web1"].netns, addresses["web2"], 7000, size=10 * MIB, timeout=10) == "ok"
    finally:
        for tcp, udp in servers.values():
            tcp.close()
            udp.close()
    # nothing flooded across hosts: ARP for remote containers was answered locally
    assert hosts[0].counters("web1")["fwd_overlay_out"] > 0
    assert hosts[0].counters("web1", "fn_from_vxlan")["fwd_overlay_in"] > 0

    # host 3 dies without `down`: its processes killed, its namespaces deleted
    dead = addresses["web3"]
    host3_file = hosts[2].files[-1]
    hosts[2].force_cleanup()
    underlay.hosts.remove(hosts[2])
    started = time.monotonic()
    for h in hosts[:2]:
        wait_until(lambda h=h: dead not in remotes(h), timeout=TTL + 3, interval=0.2, what=f"{dead} to leave {h.name}")
    assert time.monotonic() - started <= TTL + 3
    # the others keep working
    assert ping(hosts[0], "web1", addresses["web2"])
    assert resolve(hosts[0], "web1", "web3") != dead

    # host 3 re-joins: a new namespace with the same underlay address and the same file. Its
    # address claims outlived it in the store (they are not leased): web3 gets its address back
    back = underlay.add_host(3)
    back.files.append(host3_file)
    back.up(host3_file)
    assert containers(back, "shop")["web3"].ip("mesh") == dead
    for h in hosts[:2]:
        wait_until(lambda h=h: dead in remotes(h), timeout=3, interval=0.05, what=f"{dead} back on {h.name}")
    wait_until(lambda: remotes(back) == {addresses["web1"], addresses["web2"]}, timeout=3, what="host 3's remotes")
    web3 = containers(back, "shop")["web3"]
    with EchoServer(web3.netns, "tcp", port=7000):
        for n, h in enumerate(hosts[:2], 1):
            assert ping(h, f"web{n}", dead), f"web{n} cannot ping the re-joined web3"
            assert resolve(h, f"web{n}", "web3") == dead
            assert tcp_echo(ctrs[f"web{n}"].netns, dead, 7000) == "ok"
    assert ping(back, "web3", addresses["web1"])
    assert resolve(back, "web3", "web2") == addresses["web2"]


def test_unreachable_store_at_up_is_one_line_and_makes_nothing(underlay):
    h = underlay.add_host(1)  # no etcd running
    cp = h.up(overlay_config(1), check=False)
    assert cp.returncode != 0
    line = one_line_error(cp)
    assert STORE in line and "cannot be reached" in line, line
    assert h.projects() == []
    assert leftovers(h) == []


def agent_log(host: Host) -> str:
    """What the host's keeper and agent have logged so far."""
    try:
        return (host.dir / "logs" / "agent.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def store_endpoints(underlay: Underlay) -> dict[str, str]:
    """Every registered container on mesh, as the store has it: address -> container."""
    kvs = underlay.store_keys("/fastnet/v1/net/mesh/ep/")
    return {k.rsplit("/", 1)[1]: json.loads(v)["name"] for k, v in kvs.items()}


def test_store_restarted_with_three_hosts(underlay):
    """etcd stops and starts again (the same data directory) under three hosts: forwarding
    goes on with what each host knows, every host gets back in touch, the changes made after
    the restart reach every host's tables, and no endpoint is lost (the leases are renewed)."""
    underlay.start_etcd()
    hosts = [underlay.add_host(n) for n in (1, 2, 3)]
    hosts[0].up(overlay_config(1))
    hosts[1].up(overlay_config(2))
    hosts[2].up(overlay_config(3, extra="  db: {networks: [mesh]}\n"))
    ips = {c.name: c.ip("mesh") for h in hosts for c in containers(h, "shop").values()}
    on = {"web1": 0, "web2": 1, "web3": 2, "db": 2}  # container -> host index

    def tables_hold(names) -> bool:
        return all(remotes(h) == {ips[c] for c in names if on[c] != i} for i, h in enumerate(hosts))

    wait_until(lambda: tables_hold(on), timeout=3, what="every host's remotes")

    logged = [len(agent_log(h)) for h in hosts]

    def every_agent_says(text: str, timeout: float) -> None:
        for h, start in zip(hosts, logged):
            wait_until(lambda h=h, start=start: text in agent_log(h)[start:], timeout=timeout, interval=0.1,
                       what=f"{h.name}'s agent to log {text!r}")

    underlay.stop_etcd()
    every_agent_says("forwarding with what is known", TTL / 3 + 2)  # (its watch ends at once)
    for n, h in enumerate(hosts, 1):  # each host to the next one, round the ring
        peer = f"web{n % 3 + 1}"
        assert ping(h, f"web{n}", ips[peer]), f"web{n} -> {peer}: forwarding stopped with the store"
    underlay.start_etcd()  # the same data directory: a restart
    restarted = time.monotonic()
    every_agent_says("reached again", RETRY + 3)

    # after the restart: a container added on host 1, one removed on host 3; each change
    # reaches every table within the 1 s the agents keep to (as before the restart)
    hosts[0].up(overlay_config(1, extra="  api: {networks: [mesh]}\n"))
    ips["api"], on["api"] = containers(hosts[0], "shop")["api"].ip("mesh"), 0
    started = time.monotonic()  # (as in the first test: from when the address is known)
    wait_until(lambda: tables_hold(on), timeout=3, interval=0.02, what="api on every host")
    assert time.monotonic() - started < 1.0
    hosts[2].up(overlay_config(3))
    started = time.monotonic()
    del on["db"]
    wait_until(lambda: tables_hold(on), timeout=3, interval=0.02, what="db gone from every host")
    assert time.monotonic() - started < 1.0
    assert len(set(ips.values())) == len(ips), f"two containers share an address: {ips}"
    assert ping(hosts[1], "web2", ips["api"]) and ping(hosts[2], "web3", ips["api"])
    assert resolve(hosts[2], "web3", "api") == ips["api"]

    # no endpoint lost: past a TTL after the restart, every lease has been renewed since
    time.sleep(max(0.0, restarted + TTL + 1 - time.monotonic()))  # the wait is the point: a lease not renewed expires
    assert store_endpoints(underlay) == {ips[c]: c for c in on}
    assert tables_hold(on)


# -- two overlay networks over one pair of hosts (one set of hosts for the tests below) -------------
#
#    fnh-..-two1: m1 (mesh), o1 (other), both1 (mesh, other)     fnh-..-two2: m2 (mesh), o2 (other)
#    mesh 10.60.0.0/24 and other 10.61.0.0/24 each have a VNI of their own; both share each
#    host's one VXLAN device.
def two_overlays_config(containers_yaml: str, extra: str = "") -> str:
    return shop_config(MESH + "  other: {driver: overlay, subnet: 10.61.0.0/24}\n", containers_yaml, extra)


TWO_HOST_1 = "  m1: {networks: [mesh]}\n  o1: {networks: [other]}\n  both1: {networks: [mesh, other]}\n"
TWO_HOST_2 = "  m2: {networks: [mesh]}\n  o2: {networks: [other]}\n"


@dataclass
class TwoOverlays:
    underlay: Underlay
    hosts: list[Host]
    ctrs: dict[str, Ctr]  # every container of both hosts, by name
    on: dict[str, int]  # container -> index of its host

    def host_of(self, name: str) -> Host:
        return self.hosts[self.on[name]]


@pytest.fixture(scope="module")
def two_overlays(tmp_path_factory):
    u = Underlay(tmp_path_factory.mktemp("two-overlays"), tag="two")
    try:
        u.start_etcd()
        hosts = [u.add_host(1), u.add_host(2)]
        hosts[0].up(two_overlays_config(TWO_HOST_1))
        hosts[1].up(two_overlays_config(TWO_HOST_2))
        ctrs, on = {}, {}
        for i, h in enumerate(hosts):
            for name, c in containers(h, "shop").items():
                ctrs[name], on[name] = c, i
        world = TwoOverlays(u, hosts, ctrs, on)
        # each host's table: the other host's containers, an entry per interface
        theirs = [{ctrs["m2"].ip("mesh"), ctrs["o2"].ip("other")},
                  {ctrs["m1"].ip("mesh"), ctrs["o1"].ip("other"), ctrs["both1"].ip("mesh"), ctrs["both1"].ip("other")}]
        for h, want in zip(hosts, theirs):
            wait_until(lambda h=h, want=want: remotes(h) == want, timeout=3, what=f"{h.name}'s remotes")
        yield world
    finally:
        problems = u.teardown()
        if problems:
            pytest.fail("teardown found problems:\n  " + "\n  ".join(problems), pytrace=False)


def icmp_echo(src: Ctr, ip: str, timeout: float = 1.0) -> bool:
    """One ICMP echo from src's namespace to ip, answered within timeout."""
    mark = os.urandom(16)
    with icmp_echo_socket(src.netns, 0) as s:
        s.settimeout(timeout)
        s.sendto(icmp_echo_request(1, mark), (ip, 0))
        try:
            while True:
                reply, _ = s.recvfrom(2048)
                if reply[0] == 0 and reply.endswith(mark):
                    return True
        except (socket.timeout, OSError):
            return False


def reaches(src: Ctr, ip: str, servers_at: int) -> dict[str, bool]:
    """Whether src reaches ip by ICMP, TCP and UDP (echo servers at servers_at and the port after)."""
    return {"icmp": icmp_echo(src, ip),
            "tcp": tcp_echo(src.netns, ip, servers_at, size=1024, timeout=1) == "ok",
            "udp": udp_echo(src.netns, ip, servers_at + 1, size=1400, timeout=0.5, tries=3) == "ok"}


def network_vnis(underlay: Underlay) -> dict[str, int]:
    """The VNI of mesh and of other, as the first host to join recorded it in the store."""
    return {net: json.loads(underlay.store_keys(f"/fastnet/v1/net/{net}/config")[f"/fastnet/v1/net/{net}/config"])["vni"]
            for net in ("mesh", "other")}


def test_two_overlay_networks_are_isolated_end_to_end(two_overlays):
    """Each network has its VNI; a container reaches the containers of its networks on both
    hosts, and none of the other network, on its host or the other, by address or by name."""
    w = two_overlays
    vnis = network_vnis(w.underlay)
    assert vnis["mesh"] != vnis["other"], vnis

    # (source, destination, the destination's network) -> whether it must be reached
    cases = {
        ("m1", "m2", "mesh"): True, ("o1", "o2", "other"): True,        # each network across hosts
        ("both1", "m2", "mesh"): True, ("both1", "o2", "other"): True,  # on both: reaches both
        ("m2", "both1", "mesh"): True, ("o2", "both1", "other"): True,
        ("m1", "o2", "other"): False, ("o2", "m1", "mesh"): False,      # across hosts
        ("m2", "o1", "other"): False, ("o1", "m2", "mesh"): False,
        ("m1", "o1", "other"): False, ("o1", "m1", "mesh"): False,      # on one host
        ("m2", "o2", "other"): False, ("o2", "m2", "mesh"): False,
        ("m2", "both1", "other"): False, ("o2", "both1", "mesh"): False,  # the wrong side of both1
    }
    servers = [EchoServer(c.netns, proto, port=port) for c in w.ctrs.values()
               for proto, port in (("tcp", 7100), ("udp", 7101))]
    try:
        # all at once: a case that must fail costs its timeouts, and they add up otherwise
        with ThreadPoolExecutor(max_workers=len(cases)) as pool:
            got = dict(zip(cases, pool.map(lambda c: reaches(w.ctrs[c[0]], w.ctrs[c[1]].ip(c[2]), 7100), cases)))
    finally:
        for s in servers:
            s.close()
    wrong = {f"{src} -> {dst} on {net}": r for (src, dst, net), r in got.items()
             if r != dict.fromkeys(r, cases[(src, dst, net)])}
    assert not wrong, wrong

    # names: only those of the networks a container is on
    assert resolve(w.hosts[0], "m1", "m2") == w.ctrs["m2"].ip("mesh")
    assert resolve(w.hosts[0], "m1", "o2") == ""  # NXDOMAIN: dig +short prints nothing
    assert resolve(w.hosts[1], "o2", "m1") == ""
    assert resolve(w.hosts[1], "o2", "o1") == w.ctrs["o1"].ip("other")
    assert resolve(w.hosts[1], "m2", "o1") == ""
    assert resolve(w.hosts[0], "m1", "o1") == ""
    assert resolve(w.hosts[0], "both1", "o2") == w.ctrs["o2"].ip("other")
    assert resolve(w.hosts[0], "both1", "m2") == w.ctrs["m2"].ip("mesh")


def vxlan_frame(vni: int, src: Ctr, src_net: str, dst: Ctr, dst_net: str, port: int, payload: bytes) -> bytes:
    """A VXLAN datagram's payload as a host's VXLAN device would send it: src's UDP datagram
    to dst, on the network `vni` names."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    inner = (Ether(src=src.mac(src_net), dst=dst.mac(dst_net)) / IP(src=src.ip(src_net), dst=dst.ip(dst_net))
             / UDP(sport=40000, dport=port) / payload)
    return bytes(VXLAN(flags=0x08, vni=vni) / inner)


def test_a_frame_with_another_networks_vni_is_not_delivered(two_overlays):
    """Host 1 sends host 2 real VXLAN datagrams (from its underlay address to UDP 4789). A
    container of `other` on host 1 cannot reach a container of `mesh` on host 2 by sending
    with other's VNI and the mesh container's MAC and address: fn_from_vxlan finds no port of
    that MAC on `other`. The same frame on mesh's VNI from a mesh container is delivered (so
    the frames are right and only the VNI decides)."""
    w = two_overlays
    vnis = network_vnis(w.underlay)
    h1, h2 = w.hosts
    m1, o1, m2 = w.ctrs["m1"], w.ctrs["o1"], w.ctrs["m2"]
    receiver = make_socket(m2.netns, socket.SOCK_DGRAM)
    sender = make_socket(h1.netns_path, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("0.0.0.0", 7200))
        receiver.settimeout(1)
        host2 = (f"{UNDERLAY_NET}.2", 4789)
        before = h2.counters("m2", "fn_from_vxlan")

        sender.sendto(vxlan_frame(vnis["mesh"], m1, "mesh", m2, "mesh", 7200, b"on mesh"), host2)
        assert receiver.recvfrom(100) == (b"on mesh", (m1.ip("mesh"), 40000))

        sender.sendto(vxlan_frame(vnis["other"], o1, "other", m2, "mesh", 7200, b"from other"), host2)
        receiver.settimeout(0.5)
        with pytest.raises(socket.timeout):
            receiver.recvfrom(100)
        delta = moved(before, h2.counters("m2", "fn_from_vxlan"))
        assert delta["fwd_overlay_in"] >= 1 and delta["drop_unknown_dst_mac"] == 1, delta


class Prober:
    """A UDP datagram every INTERVAL from src to an echo server at (ip, port); the times the
    echoes came back, to find the longest silence while something happens."""

    INTERVAL = 0.01

    def __init__(self, src: Ctr, ip: str, port: int):
        self.sock = make_socket(src.netns, socket.SOCK_DGRAM)
        self.sock.settimeout(0.1)
        self.target = (ip, port)
        self.answered: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._receive)]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            with contextlib.suppress(OSError):
                self.sock.sendto(b"probe", self.target)

    def _receive(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                if self.sock.recv(100) == b"probe":
                    self.answered.append(time.monotonic())

    def longest_silence(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.answered if start <= t <= end), end]
        return max(b - a for a, b in zip(times, times[1:]))

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()


def test_a_datapath_rebuild_keeps_remote_containers_reachable(two_overlays):
    """Another conntrack size makes another build of the datapath (as an upgrade would). Its
    fn_ovl_remotes must hold the other host's containers before any port moves to it: the
    agent, which writes that table, refills it only later (after an ABI change, only once the
    keeper has restarted it). Here the agent is stopped for the rebuild, so what the new build
    knows is what `up` carried over, and traffic across hosts must not pause."""
    w = two_overlays
    h2 = w.hosts[1]
    m1, m2 = w.ctrs["m1"], w.ctrs["m2"]
    before = remotes(h2)
    build = uplink_program(h2)
    agent = h2.agent_record()["pid"]
    with EchoServer(m2.netns, "udp", port=7300):
        prober = Prober(m1, m2.ip("mesh"), 7300)
        try:
            wait_until(lambda: prober.answered, timeout=3, what="the first echo")
            os.kill(agent, signal.SIGSTOP)
            try:
                start = time.monotonic()
                h2.up(two_overlays_config(TWO_HOST_2, extra="conntrack: {max_flows: 8192}\n"))
                end = time.monotonic()
                assert uplink_program(h2) != build, "not a new build"
                assert remotes(h2) == before
                wait_until(lambda: prober.answered[-1] > end, timeout=3, what="an echo after the rebuild")
                for src, dst, net in (("o1", "o2", "other"), ("m2", "m1", "mesh"), ("o2", "both1", "other")):
                    assert ping(w.host_of(src), src, w.ctrs[dst].ip(net)), f"{src} -> {dst} after the rebuild"
            finally:
                os.kill(agent, signal.SIGCONT)
        finally:
            prober.close()
    silence = prober.longest_silence(start, end)
    # Without the copy the echoes stop from the moment the ports move until the agent runs
    # again (seconds here); the margin is for a busy machine compiling the new build.
    assert silence < 0.5, f"no echo for {silence:.3f} s during the rebuild"
    # the agent, back, keeps the table as it is and names the other host's containers
    wait_until(lambda: resolve(h2, "m2", "m1") == m1.ip("mesh"), timeout=3, what="m1's name on host 2")
    assert remotes(h2) == before


# -- what a bridge network does, on an overlay -------------------------------------------------------
#
#    fnh-..-ovl1: web1 (mesh, publishes 8080 -> 80), v1 (vault)     fnh-..-ovl2: w2 (mesh), v2 (vault)
#    the underlay namespace (10.99.0.254) is the hosts' outside; VXLAN on UDP 4790, not 4789
def bridge_like_config(containers_yaml: str) -> str:
    return shop_config("  mesh: {driver: overlay, subnet: 10.62.0.0/24}\n"
                       "  vault: {driver: overlay, subnet: 10.63.0.0/24, internal: true}\n",
                       containers_yaml, "vxlan_port: 4790\n")


def vxlan_port(host: Host) -> int:
    link = json.loads(host.sh("ip", "-d", "-j", "link", "show", "fastnet-vxlan").stdout)[0]
    return link["linkinfo"]["info_data"]["port"]


def test_an_overlay_network_snats_publishes_and_stays_internal_as_a_bridge_network_does(underlay):
    """SNAT to the outside through the local uplink, a published port reached from outside and
    from a container of the other host, an internal overlay that reaches its containers on
    every host but not the outside, and the configured VXLAN port on the underlay."""
    underlay.start_etcd()
    h1, h2 = underlay.add_host(1), underlay.add_host(2)
    h1.up(bridge_like_config('  web1: {networks: [mesh], publish: ["8080:80"]}\n  v1: {networks: [vault]}\n'))
    h2.up(bridge_like_config("  w2: {networks: [mesh]}\n  v2: {networks: [vault]}\n"))
    c1, c2 = containers(h1, "shop"), containers(h2, "shop")
    wait_until(lambda: len(remotes(h1)) == 2 and len(remotes(h2)) == 2, timeout=3, what="both hosts' remotes")
    assert vxlan_port(h1) == vxlan_port(h2) == 4790
    outside = f"/run/netns/{underlay.ns}"
    addr1, addr2 = f"{UNDERLAY_NET}.1", f"{UNDERLAY_NET}.2"  # the hosts' uplinks
    with EchoServer(outside, "tcp", port=9000) as out, EchoServer(c1["web1"].netns, "tcp", port=80) as web, \
            EchoServer(c2["v2"].netns, "tcp", port=7000):
        # SNAT: each host's container leaves with its own host's underlay address
        for c, addr in ((c1["web1"], addr1), (c2["w2"], addr2)):
            assert tcp_echo(c.netns, STORE_IP, 9000) == "ok", f"{c.name} to the outside"
            assert out.peers[-1][0] == addr, f"{c.name} left as {out.peers[-1][0]}"
        # published: from the outside (the client's own address kept), and from host 2's w2
        assert tcp_echo(outside, addr1, 8080) == "ok"
        assert web.peers[-1][0] == STORE_IP
        assert tcp_echo(c2["w2"].netns, addr1, 8080) == "ok"
        assert web.peers[-1][0] == addr2  # host 2 translated w2's connection to the outside first
        # internal: across hosts yes, to the outside no, and never to mesh
        assert tcp_echo(c1["v1"].netns, c2["v2"].ip("vault"), 7000) == "ok"
        assert tcp_echo(c1["v1"].netns, STORE_IP, 9000, timeout=1) != "ok"
        assert tcp_echo(c2["w2"].netns, c1["v1"].ip("vault"), 7000, timeout=1) != "ok"
    assert h1.counters("v1")["fwd_overlay_out"] > 0
