"""Published ports (DNAT): from the outside, from containers (hairpin), from the host's own
processes (socket hooks), and everything that must stay unreachable.

   project pub (module host)
   front 10.92.1.0/24 (gateway 10.92.1.1)          back 10.92.2.0/24 (gateway 10.92.2.1)
     web   publish 8080:80  8053:53/udp              other
           7000-7002:8000-8002
           198.51.100.3:9000:9000
           127.0.0.1:9443:443
     peer  publish 127.0.0.1:8054:53/udp

   HOST (host processes: 127.0.0.1 and 198.51.100.1, through the socket hooks)
     up0 198.51.100.1/24 + 198.51.100.3/24 ==== veth ==== WORLD up0 198.51.100.2/24 (clients)
     fn_from_uplink: DNAT to web, drops to containers' own and loopback addresses

   The SYN-flood test has its own host with the smallest conntrack tables; the tests of ranges
   inside the host's ephemeral ports have theirs (project eph).
"""
from __future__ import annotations

import json
import random
import socket
from contextlib import closing

import pytest
from harness import (
    BLOCKED,
    HOST_UPLINK_IP,
    UPLINK,
    WORLD_UPLINK_IP,
    EchoServer,
    assert_no_leftovers,
    containers,
    flows,
    iptables_rules,
    l2socket,
    make_socket,
    moved,
    netns,
    nstat,
    one_line_error,
    open_tcp,
    prog_map_ids,
    roundtrip,
    run,
    sysctl,
    tcp_echo,
    tx_checksum_off,
    udp_echo,
    udp_stream,
    uplink_mac,
    uplink_program,
    wait_until,
)
from scapy.all import IP, TCP, UDP, Ether, Raw

EXTRA_IP = "198.51.100.3"
FRONT_GW, BACK_GW = "10.92.1.1", "10.92.2.1"

PUB = """\
name: pub
networks:
  front:
    subnet: 10.92.1.0/24
  back:
    subnet: 10.92.2.0/24
containers:
  web:
    networks: [front]
    publish:
      - "8080:80"
      - "8053:53/udp"
      - "7000-7002:8000-8002"
      - "198.51.100.3:9000:9000"
      - "127.0.0.1:9443:443"
  peer:
    networks: [front]
    publish: ["127.0.0.1:8054:53/udp"]
  other:
    networks: [back]
"""


@pytest.fixture(scope="module")
def pub(module_host):
    # The second address must be on the uplink before `up` reads the host's addresses.
    module_host.sh("ip", "addr", "add", f"{EXTRA_IP}/24", "dev", UPLINK)
    module_host.up(PUB)
    return module_host, containers(module_host, "pub")


@pytest.fixture
def web(pub):
    """TCP and UDP echo servers in web on its published container ports 80 and 53."""
    host, c = pub
    tcp, udp = EchoServer(c["web"].netns, "tcp", port=80), EchoServer(c["web"].netns, "udp", port=53)
    with tcp, udp:
        yield tcp, udp


# -- from the outside ---------------------------------------------------------------------------
@pytest.mark.parametrize("ip", [HOST_UPLINK_IP, EXTRA_IP])
def test_world_reaches_a_published_tcp_port(pub, web, ip):
    host, _ = pub
    tcp, _ = web
    before = host.counters("web", "fn_from_uplink")
    assert tcp_echo(host.world_path, ip, 8080, size=1 << 20) == "ok"
    assert [a for a, _ in tcp.peers] == [WORLD_UPLINK_IP], f"the container saw {tcp.peers}, not the WORLD client"
    assert moved(before, host.counters("web", "fn_from_uplink"))["fwd_dnat"] >= 1


def test_world_reaches_a_published_udp_port(pub, web):
    host, _ = pub
    _, udp = web
    # every reply must come from the published address and port
    assert udp_stream(host.world_path, HOST_UPLINK_IP, 8053, count=500, size=1200) == "ok"
    assert {a for a, _ in udp.peers} == {WORLD_UPLINK_IP} and len(udp.peers) >= 500


def test_port_unreachable_from_a_published_container_reaches_the_client(pub):
    """Nothing listens on web's UDP port 53: web's ICMP port unreachable is translated (outer
    source, quoted addresses and ports) so that the WORLD client's connected socket gets it."""
    host, _ = pub
    before = host.counters("web")
    s = make_socket(host.world_path, socket.SOCK_DGRAM)
    with s:
        s.settimeout(1)
        s.connect((HOST_UPLINK_IP, 8053))
        result = "no error"
        for _ in range(3):
            try:
                s.send(b"anyone there?")
                s.recv(100)
                result = "got an answer"
            except ConnectionRefusedError:
                result = "ECONNREFUSED"
                break
            except socket.timeout:
                result = "timeout"
    assert result == "ECONNREFUSED", f"the WORLD client saw {result}"
    assert moved(before, host.counters("web"))["fwd_icmp_error"] >= 1


def test_a_published_range_maps_each_port(pub):
    host, c = pub
    servers = [EchoServer(c["web"].netns, "tcp", port=8000 + i) for i in range(3)]
    try:
        for i in range(3):
            assert tcp_echo(host.world_path, HOST_UPLINK_IP, 7000 + i) == "ok", f"port {7000 + i}"
            counts = [len(s.peers) for s in servers]
            assert counts == [1 if j <= i else 0 for j in range(3)], f"7000+{i} reached servers {counts}"
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 7003, timeout=1) != "ok"
        assert sum(len(s.peers) for s in servers) == 3
    finally:
        for s in servers:
            s.close()


def test_a_port_published_on_one_address_answers_only_there(pub):
    host, c = pub
    with EchoServer(c["web"].netns, "tcp", port=9000) as srv:
        assert tcp_echo(host.world_path, EXTRA_IP, 9000) == "ok"
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 9000, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        assert [a for a, _ in srv.peers] == [WORLD_UPLINK_IP]


# -- hairpin ------------------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["peer", "other", "web"], ids=["same-network", "other-network", "itself"])
def test_hairpin_reaches_the_published_container(pub, web, client):
    """The backend sees its own network's gateway as the client (documented)."""
    host, c = pub
    tcp, udp = web
    assert tcp_echo(c[client].netns, HOST_UPLINK_IP, 8080, size=256 * 1024) == "ok"
    assert [a for a, _ in tcp.peers] == [FRONT_GW], f"web saw {tcp.peers}"
    assert udp_stream(c[client].netns, HOST_UPLINK_IP, 8053, count=20) == "ok"
    assert {a for a, _ in udp.peers} == {FRONT_GW}, f"web saw {set(udp.peers)}"
    ip = c[client].ip("back" if client == "other" else "front")
    found = flows(host, "tcp", "hairpin", src=ip, dst=HOST_UPLINK_IP, dport=8080)
    assert found and all(f["reply"]["dst"] == FRONT_GW for f in found), found


def test_conntrack_shows_dnat_and_hairpin_flows(pub, web):
    host, c = pub
    s1 = open_tcp(host.world_path, HOST_UPLINK_IP, 8080)
    s2 = open_tcp(c["peer"].netns, HOST_UPLINK_IP, 8080)
    with s1, s2:
        assert roundtrip(s1) == "ok" and roundtrip(s2) == "ok"
        web_ip = c["web"].ip("front")
        wport, pport = s1.getsockname()[1], s2.getsockname()[1]
        d = flows(host, "tcp", src=WORLD_UPLINK_IP, sport=wport)
        assert len(d) == 1, d
        assert (d[0]["kind"], d[0]["state"], d[0]["confirmed"]) == ("dnat", "established", True), d
        assert d[0]["original"] == {"src": WORLD_UPLINK_IP, "sport": wport, "dst": HOST_UPLINK_IP, "dport": 8080}
        assert d[0]["reply"] == {"src": web_ip, "sport": 80, "dst": WORLD_UPLINK_IP, "dport": wport}
        h = flows(host, "tcp", src=c["peer"].ip("front"), sport=pport)
        assert len(h) == 1 and h[0]["kind"] == "hairpin", h
        assert h[0]["original"] == {"src": c["peer"].ip("front"), "sport": pport, "dst": HOST_UPLINK_IP, "dport": 8080}
        assert (h[0]["reply"]["src"], h[0]["reply"]["sport"], h[0]["reply"]["dst"]) == (web_ip, 80, FRONT_GW), h


# -- host processes -------------------------------------------------------------------------------
@pytest.mark.parametrize("ip", ["127.0.0.1", HOST_UPLINK_IP])
def test_host_process_reaches_published_ports(pub, web, ip):
    host, _ = pub
    tcp, udp = web
    before = host.counters("web", "fn_sock")
    s = open_tcp(host.netns_path, ip, 8080)
    with s:
        assert s.getpeername() == (ip, 8080)
        assert roundtrip(s, 256 * 1024) == "ok"
    assert len(tcp.peers) == 1, tcp.peers
    # unconnected UDP: each reply appears to come from the published address
    assert udp_stream(host.netns_path, ip, 8053, count=50) == "ok"
    # connected UDP
    u = make_socket(host.netns_path, socket.SOCK_DGRAM)
    with u:
        u.settimeout(1)
        u.connect((ip, 8053))
        assert u.getpeername() == (ip, 8053)
        u.send(b"connected")
        assert u.recv(100) == b"connected"
    assert moved(before, host.counters("web", "fn_sock"))["fwd_sock_dnat"] >= 3


@pytest.mark.parametrize("ip", ["127.0.0.1", HOST_UPLINK_IP])
def test_host_ipv6_socket_with_a_mapped_address_reaches_published_ports(pub, web, ip):
    """An IPv6 socket using IPv4-mapped addresses (Java's default) reaches published ports like
    an IPv4 one (connect6, recvmsg6, getpeername6; its sendto() runs sendmsg4) and sees the
    published address as its peer and as the source of every reply."""
    host, _ = pub
    tcp, udp = web
    mapped = f"::ffff:{ip}"
    before = host.counters("web", "fn_sock")
    with netns(host.netns_path):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        cu = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with s, u, cu:
        s.settimeout(5)
        s.connect((mapped, 8080))
        assert s.getpeername()[:2] == (mapped, 8080)
        assert roundtrip(s, 64 * 1024) == "ok"
        u.settimeout(1)
        for i in range(5):  # unconnected: each reply from the published address
            u.sendto(b"datagram %d" % i, (mapped, 8053))
            data, peer = u.recvfrom(100)
            assert (data, peer[:2]) == (b"datagram %d" % i, (mapped, 8053))
        cu.settimeout(1)
        cu.connect((mapped, 8053))
        assert cu.getpeername()[:2] == (mapped, 8053)
        cu.send(b"connected")
        assert cu.recvfrom(100)[0] == b"connected"
    assert len(tcp.peers) == 1 and len(udp.peers) == 6, (tcp.peers, udp.peers)
    assert moved(before, host.counters("web", "fn_sock"))["fwd_sock_dnat"] >= 7


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6-mapped"])
def test_one_udp_socket_sees_each_published_port_answer_from_its_own_address(pub, web, family):
    """One unconnected UDP socket of the host talks to two published ports at once (web's 8053
    on every address, peer's 8054 on 127.0.0.1: a datagram to each, then both replies): every
    reply comes from the address and port it was sent to, not from a container's address (the
    hooks keep one mapping per destination, not one per socket)."""
    host, c = pub
    _, udp = web
    dests = [(HOST_UPLINK_IP, 8053), ("127.0.0.1", 8054)]
    if family == socket.AF_INET6:
        dests = [(f"::ffff:{a}", p) for a, p in dests]
    with EchoServer(c["peer"].netns, "udp", port=53) as peer_udp:
        with netns(host.netns_path):
            s = socket.socket(family, socket.SOCK_DGRAM)
        with s:
            s.settimeout(1)
            for i in range(10):
                sent = {b"%d to %s" % (i, str(dest).encode()): dest for dest in dests}
                for payload, dest in sent.items():
                    s.sendto(payload, dest)
                for _ in dests:
                    data, peer = s.recvfrom(200)
                    assert peer[:2] == sent[data], f"{data!r}: reply from {peer}"
        assert len(peer_udp.peers) == 10 and len(udp.peers) == 10, (peer_udp.peers, udp.peers)


def test_socket_hooks_act_only_in_the_host_namespace(pub, web):
    """The hooks sit on the root cgroup, so they see every process of the machine: a process
    in WORLD or in a container connecting to its *own* 127.0.0.1:8080 is left alone."""
    host, c = pub
    tcp, udp = web
    before = host.counters("web", "fn_sock")
    for ns in (host.world_path, c["peer"].netns):
        assert tcp_echo(ns, "127.0.0.1", 8080, timeout=1) == "ECONNREFUSED"
        assert udp_echo(ns, "127.0.0.1", 8053, timeout=0.3, tries=1) in ("ECONNREFUSED", "timeout")
    assert tcp.peers == [] and udp.peers == []
    assert moved(before, host.counters("web", "fn_sock"))["fwd_sock_dnat"] == 0


def test_host_process_reaches_a_port_published_on_one_address(pub):
    host, c = pub
    with EchoServer(c["web"].netns, "tcp", port=9000) as srv:
        assert tcp_echo(host.netns_path, EXTRA_IP, 9000) == "ok"
        assert len(srv.peers) == 1


def test_loopback_publish_is_for_host_processes_only(pub):
    host, c = pub
    with EchoServer(c["web"].netns, "tcp", port=443) as srv:
        s = open_tcp(host.netns_path, "127.0.0.1", 9443)
        with s:
            assert s.getpeername() == ("127.0.0.1", 9443) and roundtrip(s) == "ok"
        assert len(srv.peers) == 1
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 9443, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        assert tcp_echo(host.netns_path, HOST_UPLINK_IP, 9443, timeout=1) in ("ECONNREFUSED", *BLOCKED)

        # WORLD sends a SYN for 127.0.0.1:9443 straight to HOST's MAC
        before = host.counters("web", "fn_from_uplink")
        frame = (
            Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
            / IP(src=WORLD_UPLINK_IP, dst="127.0.0.1")
            / TCP(sport=40443, dport=9443, flags="S")
        )
        with closing(l2socket(host.world_path, UPLINK)) as sk:
            sk.send(frame)
        wait_until(
            lambda: moved(before, host.counters("web", "fn_from_uplink"))["drop_loopback_dst"] >= 1,
            timeout=2, what="drop_loopback_dst",
        )
        assert len(srv.peers) == 1, srv.peers


# -- what stays unreachable ---------------------------------------------------------------------------
def test_unpublished_ports_and_container_addresses_are_unreachable(pub, web):
    host, c = pub
    tcp, udp = web
    web_ip = c["web"].ip("front")
    with EchoServer(c["web"].netns, "tcp", port=81) as unpublished:
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 81, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        before = host.counters("web", "fn_from_uplink")
        run("ip", "-n", host.world, "route", "add", "10.92.0.0/16", "via", HOST_UPLINK_IP)
        try:
            for port in (80, 81):
                assert tcp_echo(host.world_path, web_ip, port, timeout=1) in BLOCKED
            assert udp_echo(host.world_path, web_ip, 53, timeout=0.5, tries=1) in BLOCKED
        finally:
            run("ip", "-n", host.world, "route", "del", "10.92.0.0/16", check=False)
        assert moved(before, host.counters("web", "fn_from_uplink"))["drop_direct_access"] >= 3
        assert unpublished.peers == [] and tcp.peers == [] and udp.peers == []


def test_packets_from_outside_with_a_container_source_are_dropped(pub, web):
    host, c = pub
    tcp, _ = web
    before = host.counters("web", "fn_from_uplink")
    frame = (
        Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
        / IP(src=c["peer"].ip("front"), dst=HOST_UPLINK_IP)
        / TCP(sport=40080, dport=8080, flags="S")
    )
    with closing(l2socket(host.world_path, UPLINK)) as sk:
        sk.send(frame)
    wait_until(
        lambda: moved(before, host.counters("web", "fn_from_uplink"))["drop_uplink_spoof"] >= 1,
        timeout=2, what="drop_uplink_spoof",
    )
    assert tcp.peers == []


def test_no_iptables_or_nftables_rules(pub, web):
    host, _ = pub
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8080) == "ok"  # the datapath is in use
    assert iptables_rules(host.name) == []


# -- checksums -------------------------------------------------------------------------------------------
def test_dnat_checksums_with_tx_offload_off(pub, web):
    host, c = pub
    tcp, udp = web
    w = c["web"]
    points = [
        (w.netns, w.ifname("front")),
        (host.netns_path, w.nets["front"]["host_ifname"]),
        (host.netns_path, UPLINK),
        (host.world_path, UPLINK),
    ]
    with tx_checksum_off(points):
        before = {"world": nstat(host.world_path), "web": nstat(w.netns)}
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8080, size=1 << 20) == "ok"
        assert udp_stream(host.world_path, HOST_UPLINK_IP, 8053, count=300, size=1400) == "ok"
        after = {"world": nstat(host.world_path), "web": nstat(w.netns)}
        assert after == before, f"checksum/header error counters moved: {before} -> {after}"

        # The counters do see what fastnet cannot fix: a datagram sent with a bad checksum
        # is translated (incrementally, so still bad) and refused by web's stack.
        frame = (
            Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
            / IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP)
            / UDP(sport=40053, dport=8053, chksum=0x1234)
            / Raw(b"bad checksum")
        )
        with closing(l2socket(host.world_path, UPLINK)) as sk:
            sk.send(frame)
        wait_until(lambda: nstat(w.netns)["UdpInCsumErrors"] > before["web"]["UdpInCsumErrors"], timeout=2,
                   what="web to count the bad checksum")
    assert ("198.51.100.2", 40053) not in udp.peers


# -- connection tracking under attack -----------------------------------------------------------------
# A TCP flow is confirmed by the client's ACK of the SYN-ACK (ct.h fn_ct_tcp_handshake): a spoofed
# SYN that the container answers stays a new flow with the SYN timeout.
class HalfOpenConfirmed(AssertionError):
    """A half-open flow was confirmed."""


def test_an_unanswered_handshake_is_not_an_established_flow(pub, web):
    """A SYN from a spoofed source, answered by the container's SYN-ACK, must not become an
    established flow with the 6-hour timeout."""
    host, _ = pub
    frame = (
        Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
        / IP(src="192.0.2.7", dst=HOST_UPLINK_IP)
        / TCP(sport=4444, dport=8080, flags="S", seq=1000)
    )
    with closing(l2socket(host.world_path, UPLINK)) as sk:
        sk.send(frame)
    found = wait_until(lambda: flows(host, "tcp", src="192.0.2.7", sport=4444), timeout=2, what="the flow")
    f = found[0]
    if f["state"] == "established" or f["expires_in_s"] > 60:
        raise HalfOpenConfirmed(f"half-open flow: {f}")


FLOOD = """\
name: flood
networks:
  front:
    subnet: 10.92.1.0/24
containers:
  web:
    networks: [front]
    publish: ["8080:80"]
  a:
    networks: [front]
conntrack: {max_flows: 1024, max_new_flows: 256}
"""


def test_a_syn_flood_does_not_evict_established_flows(host):
    """docs/datapath.md: a flood of new flows (spoofed SYNs to a published port) fills only the
    budget of new flows from outside and never evicts an established flow."""
    host.up(FLOOD)
    c = containers(host, "flood")
    sizes = {}
    for m in prog_map_ids(uplink_program(host)):
        info = json.loads(run("bpftool", "-j", "map", "show", "id", str(m)).stdout)
        sizes[info.get("name")] = info.get("max_entries")
    # two entries per flow of both budgets (1024 + 256 flows), and FN_CT_SLACK
    assert sizes.get("fn_ct") == 2 * (1024 + 256) + 256 and "fn_ct_new" not in sizes, f"conntrack sizes: {sizes}"
    listener = make_socket(host.world_path, socket.SOCK_STREAM)
    with listener, EchoServer(c["web"].netns, "tcp", port=80):
        listener.bind(("0.0.0.0", 0))
        listener.listen(1)
        s = open_tcp(c["a"].netns, WORLD_UPLINK_IP, listener.getsockname()[1], bind=28000)
        conn, _ = listener.accept()
        with s, conn:
            conn.sendall(b"hello")
            assert s.recv(5) == b"hello"
            # 3 x max_flows spoofed SYNs from 192.0.2.0/24 (their SYN-ACKs die in WORLD)
            rnd = random.Random(7)
            hmac, wmac = uplink_mac(host), uplink_mac(host, host.world)
            before, before_uplink = host.counters("web"), host.counters("web", "fn_from_uplink")
            with closing(l2socket(host.world_path, UPLINK)) as sk:
                for i in range(3 * 1024):  # each a new tuple
                    sk.send(
                        Ether(src=wmac, dst=hmac)
                        / IP(src=f"192.0.2.{i % 254 + 1}", dst=HOST_UPLINK_IP)
                        / TCP(sport=1024 + i, dport=8080, flags="S", seq=rnd.getrandbits(32))
                    )
            # every SYN is either a new flow or refused: the budget of new flows from outside
            # (256 x 50 %) and port 8080's share of it (50 %) admit 64
            uplink = lambda: moved(before_uplink, host.counters("web", "fn_from_uplink"))  # noqa: E731
            wait_until(lambda: uplink()["fwd_dnat"] + uplink()["drop_ct_new_full"] >= 3 * 1024, timeout=5,
                       what="the flood to reach the datapath")
            assert uplink()["fwd_dnat"] == 64, uplink()
            # web answers every SYN it got (SYN-ACK, or a cookie): their effect on the tables is what counts
            answered = lambda: sum(moved(before, host.counters("web"))[k] for k in ("fwd_ct", "fwd_snat"))  # noqa: E731
            wait_until(lambda: answered() >= 64, timeout=5, what="web's answers to the flood")
            # Only the budget of new flows from outside fills: no spoofed flow is confirmed ...
            spoofed = [f for f in flows(host, "tcp", "dnat") if f["original"]["src"].startswith("192.0.2.")]
            confirmed = [f for f in spoofed if f["confirmed"]]
            if confirmed:
                raise HalfOpenConfirmed(
                    f"{len(confirmed)} of {len(spoofed)} spoofed half-open flows are in the confirmed table, "
                    f"e.g. {confirmed[0]}; the established SNAT flow "
                    + ("survived" if flows(host, "tcp", "snat", sport=28000) else "was evicted")
                )
            # ... and the established flow is still there and works
            assert flows(host, "tcp", "snat", sport=28000), "the established SNAT flow was evicted by the flood"
            # the server speaks first: its packet needs the flow's reply entry
            conn.sendall(b"still there?")
            s.settimeout(2)
            try:
                got = s.recv(100)
            except OSError as exc:
                raise HalfOpenConfirmed(f"the established flow broke: {exc!r}") from None
            assert got == b"still there?"


# -- published ranges and the host's ephemeral ports -----------------------------------------------
EPHEMERAL = """\
name: eph
backend: {backend}
networks:
  front: {{subnet: 10.92.5.0/24}}
containers:
  web:
    networks: [front]
    publish: ["40000-40100:40000-40100", "40000-40100:40000-40100/udp"]
  peer:
    networks: [front]
"""


@pytest.mark.parametrize("backend", ["ebpf", "iptables"])
def test_up_refuses_to_publish_the_hosts_ephemeral_ports(host, backend):
    """ebpf: a published range inside ip_local_port_range is refused before anything is made
    (answers to the host's own connections from those ports would look like new flows to it);
    the iptables backend holds every published port with a socket, so the host never uses one."""
    cp = host.up(EPHEMERAL.format(backend=backend), check=False)
    if backend == "iptables":
        assert cp.returncode == 0, cp.stderr
        host.down(cp.path)
        return
    assert cp.returncode == 1, cp.stderr
    assert one_line_error(cp) == (
        "fastnet: error: up eph: containers.web.publish: 40000-40100/tcp is in the host's ephemeral port range "
        "32768-60999 (net.ipv4.ip_local_port_range), where its own connections take their source ports, and "
        "answers to those would go to the container; publish outside that range, or set "
        "publish_ephemeral_ports: true to accept it")
    assert_no_leftovers(host)


def test_host_connections_from_ports_of_a_published_range_get_their_replies(host):
    """With publish_ephemeral_ports and the host's ephemeral ports narrowed into a published TCP
    range, the host's own connections (to WORLD, and to a container's address) come from ports
    of that range: their SYN-ACKs and data reach the host, none becomes a flow into web."""
    sysctl(host.netns_path, "net.ipv4.ip_local_port_range", "40000 40009")
    host.up(EPHEMERAL.format(backend="ebpf").replace("name: eph\n", "name: eph\npublish_ephemeral_ports: true\n"))
    c = containers(host, "eph")
    before = {p: host.counters("web", p) for p in ("fn_from_uplink", "fn_from_container")}
    with EchoServer(host.world_path, "tcp") as world, EchoServer(c["peer"].netns, "tcp", port=80) as peer:
        for _ in range(3):
            assert tcp_echo(host.netns_path, WORLD_UPLINK_IP, world.port) == "ok"
            assert tcp_echo(host.netns_path, c["peer"].ip("front"), 80) == "ok"
        ports = [p for _, p in world.peers + peer.peers]
    assert len(ports) == 6 and all(40000 <= p <= 40009 for p in ports), ports
    for prog, counts in before.items():
        assert moved(counts, host.counters("web", prog))["fwd_dnat"] == 0, prog
