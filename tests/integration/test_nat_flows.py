"""SNAT to the outside, ICMP errors through the NAT, connection tracking, internal networks and
checksums. Published ports (DNAT) are in test_publish.py, `down` in test_nat_down.py.

   project nat (module host)
   front 10.91.1.0/24     back 10.91.2.0/24      vault 10.91.9.0/24 (internal: true)
     a    b                 c                      v1    v2
      \\   |                 |                       \\   /
       +--+----- HOST: fn_from_container on every port; SNAT to 198.51.100.1 -----+
                                                                                  |
   HOST  up0 198.51.100.1/24  (fn_from_uplink) ==== veth ==== WORLD up0 198.51.100.2/24
                                                              echo servers (TCP/UDP)
                                                                     |  far0, mtu 1280
                                                     (path MTU test) FAR 203.0.113.2

   The UDP-expiry test uses its own host (conntrack: {timeouts: {udp: 2}}); what `down`
   removes is in test_nat_down.py.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import (
    BLOCKED,
    HOST_UPLINK_IP,
    UPLINK,
    WORLD_UPLINK_IP,
    Capture,
    EchoServer,
    containers,
    far_network,
    flows,
    icmp_echo_request,
    icmp_echo_socket,
    in_netns,
    make_socket,
    moved,
    nstat,
    open_tcp,
    ping,
    queue_icmp_errors,
    roundtrip,
    sysctl,
    tcp_echo,
    tx_checksum_off,
    udp_echo,
    udp_stream,
    wait_for_icmp_error,
    wait_until,
)

NAT = """\
name: nat
networks:
  front:
    subnet: 10.91.1.0/24
  back:
    subnet: 10.91.2.0/24
  vault:
    subnet: 10.91.9.0/24
    internal: true
containers:
  a:
    networks: [front]
  b:
    networks: [front]
  c:
    networks: [back]
  v1:
    networks: [vault]
  v2:
    networks: [vault]
"""
VAULT_GATEWAY = "10.91.9.1"

IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14  # linux/in.h
SO_NO_CHECK = 11  # asm-generic/socket.h


@pytest.fixture(scope="module")
def nat(module_host):
    # WORLD answers every probe to a closed port: no ICMP rate limit to make a retry flaky.
    sysctl(module_host.world_path, "net.ipv4.icmp_ratelimit", 0)
    module_host.up(NAT)
    return module_host, containers(module_host, "nat")


def world_servers(host):
    return EchoServer(host.world_path, "tcp"), EchoServer(host.world_path, "udp")


# -- SNAT ----------------------------------------------------------------------------------
def test_snat_source_is_the_uplink_address_and_the_port_is_kept(nat):
    host, c = nat
    before = host.counters("a")
    tcp, udp = world_servers(host)
    with tcp, udp:
        for i, name in enumerate(("a", "c")):  # front and back
            port = 22000 + 10 * i
            assert tcp_echo(c[name].netns, WORLD_UPLINK_IP, tcp.port, bind=port) == "ok"
            assert tcp.peers[-1] == (HOST_UPLINK_IP, port), f"{name}: the WORLD server saw {tcp.peers[-1]}"
            assert udp_echo(c[name].netns, WORLD_UPLINK_IP, udp.port, bind=port + 1) == "ok"
            assert set(udp.peers) == {(HOST_UPLINK_IP, port + 1)}, f"{name}: the WORLD server saw {set(udp.peers)}"
            udp.peers.clear()
        # a source port the container's kernel picked is in its ip_local_port_range, which is
        # the host's too (the same default): it moves to the SNAT range below it
        s = open_tcp(c["b"].netns, WORLD_UPLINK_IP, tcp.port)
        with s:
            assert roundtrip(s) == "ok"
            assert 32768 <= s.getsockname()[1] <= 60999
            assert tcp.peers[-1][0] == HOST_UPLINK_IP and 1024 <= tcp.peers[-1][1] <= 32767, tcp.peers[-1]
    assert moved(before, host.counters("a"))["fwd_snat"] >= 4


@pytest.mark.parametrize("container_first", [True, False], ids=["container-first", "host-first"])
def test_a_host_socket_and_a_container_on_the_same_port_both_get_their_replies(nat, container_first):
    """The host and container a talk to the same WORLD servers from the same port, one of the
    host's ephemeral range: the container's flows take another external port, so no reply of
    one reaches the other (a shared tuple would send the host's replies into a)."""
    host, c = nat
    port = 41000 + (0 if container_first else 10)
    tcp, udp = world_servers(host)
    with tcp, udp:
        socks = {}
        for who in (("a", "host") if container_first else ("host", "a")):
            ns = c["a"].netns if who == "a" else host.netns_path
            u = make_socket(ns, socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            u.bind(("0.0.0.0", port))
            socks[who] = (u, open_tcp(ns, WORLD_UPLINK_IP, tcp.port, bind=port + 1))
            assert udp_stream("", WORLD_UPLINK_IP, udp.port, count=5, sock=u) == "ok", who
        try:
            for who in ("a", "host", "a", "host"):  # each one's replies reach it, both ways round
                u, t = socks[who]
                assert udp_stream("", WORLD_UPLINK_IP, udp.port, count=20, sock=u) == "ok", who
                assert roundtrip(t) == "ok", who
        finally:
            for u, t in socks.values():
                u.close()
                t.close()
    # the host's own sockets keep their port; the container's flows come from another one
    assert {p for a, p in udp.peers} - {port} and (HOST_UPLINK_IP, port) in udp.peers, set(udp.peers)
    assert len({p for _, p in tcp.peers}) == 2 and (HOST_UPLINK_IP, port + 1) in tcp.peers, tcp.peers


def test_icmp_echo_to_the_outside(nat):
    host, c = nat
    assert ping(host, "a", WORLD_UPLINK_IP) and ping(host, "c", WORLD_UPLINK_IP)
    # what WORLD sees: the echo request comes from the uplink address
    mark = uuid.uuid4().bytes
    with Capture({"world": (host.world_path, UPLINK)}) as cap:
        cp = host.exec("b", "ping", "-n", "-c1", "-W2", "-p", mark.hex(), WORLD_UPLINK_IP)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        seen = cap.wait_for("world", mark)  # (what WORLD receives; scapy skips outgoing frames)
    assert [(p["IP"].src, p["IP"].dst) for p in seen] == [(HOST_UPLINK_IP, WORLD_UPLINK_IP)], [p.summary() for p in seen]
    assert seen[0]["IP"].ttl == 63, "the NAT must decrement the TTL exactly once (ping sends 64)"
    found = flows(host, "icmp", "snat", src=c["b"].ip("front"), dst=WORLD_UPLINK_IP)
    assert found and found[0]["reply"]["dst"] == HOST_UPLINK_IP, found


def test_icmp_echo_identifiers_are_translated_like_ports(nat):
    """a and c ping WORLD at the same time with the same echo identifier: both get their
    replies, WORLD sees two identifiers (a free one in the SNAT range is kept)."""
    host, c = nat
    socks = [icmp_echo_socket(c[n].netns, 7777) for n in ("a", "c")]
    marks = [uuid.uuid4().hex.encode() for _ in socks]
    try:
        with Capture({"world": (host.world_path, UPLINK)}) as cap:
            for s, mark in zip(socks, marks):
                s.sendto(icmp_echo_request(1, mark), (WORLD_UPLINK_IP, 0))
            for s, mark in zip(socks, marks):
                s.settimeout(2)
                reply, _ = s.recvfrom(2048)
                assert reply[0] == 0 and reply.endswith(mark), f"wrong reply {reply!r}"
            ids = []
            for mark in marks:
                (p,) = cap.wait_for("world", mark)
                assert p["IP"].src == HOST_UPLINK_IP, p.summary()
                ids.append(p["ICMP"].id)
    finally:
        for s in socks:
            s.close()
    assert len(set(ids)) == 2 and 7777 in ids, f"WORLD saw identifiers {ids}"


def test_an_echo_request_with_a_containers_identifier_is_the_hosts(nat):
    """a pings WORLD with identifier 7788 (kept); WORLD then sends the host an echo *request*
    with that identifier. The host answers it and a never sees it: a's flow expects replies."""
    host, c = nat
    sa = icmp_echo_socket(c["a"].netns, 7788)
    sw = icmp_echo_socket(host.world_path, 7788)
    mark = uuid.uuid4().hex.encode()
    try:
        with Capture({"a": (c["a"].netns, "eth0")}) as cap:
            sa.settimeout(2)
            sw.settimeout(2)
            sa.sendto(icmp_echo_request(1, b"from a"), (WORLD_UPLINK_IP, 0))
            assert sa.recvfrom(2048)[0].endswith(b"from a")
            assert flows(host, "icmp", "snat", src=c["a"].ip("front"), sport=7788)
            sw.sendto(icmp_echo_request(2, mark), (HOST_UPLINK_IP, 0))
            reply, peer = sw.recvfrom(2048)
            assert reply[0] == 0 and reply.endswith(mark) and peer[0] == HOST_UPLINK_IP, (reply, peer)
            cap.wait_for("a", b"from a")  # a's own reply was seen: the capture runs
            time.sleep(0.3)
            assert not cap.seen("a", mark), "WORLD's echo request went into a"
    finally:
        sa.close()
        sw.close()


@pytest.mark.parametrize("pair", [("a", "b"), ("a", "c")], ids=["same-network", "two-networks"])
def test_two_containers_with_the_same_source_port(nat, pair):
    """Both flows work at once; WORLD sees two different source ports on the uplink address."""
    host, c = nat
    first, second = (c[n] for n in pair)
    port = 23000 if pair[1] == "b" else 23100
    tcp, udp = world_servers(host)
    with tcp, udp:
        s1 = open_tcp(first.netns, WORLD_UPLINK_IP, tcp.port, bind=port)
        s2 = open_tcp(second.netns, WORLD_UPLINK_IP, tcp.port, bind=port)
        with s1, s2:
            for s in (s1, s2, s1, s2):
                assert roundtrip(s) == "ok"
        addrs = {a for a, _ in tcp.peers}
        ports = [p for _, p in tcp.peers]
        assert addrs == {HOST_UPLINK_IP} and len(ports) == 2, tcp.peers
        assert len(set(ports)) == 2 and port in ports, f"WORLD saw source ports {ports} (both bound to {port})"

        u1, u2 = (make_socket(x.netns, socket.SOCK_DGRAM) for x in (first, second))
        with u1, u2:
            for u in (u1, u2):
                u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                u.bind(("0.0.0.0", port + 1))
            for u in (u1, u2, u1, u2):  # each reply reaches the right container
                assert udp_stream("", WORLD_UPLINK_IP, udp.port, count=10, sock=u) == "ok"
        uports = {p for a, p in udp.peers if a == HOST_UPLINK_IP}
        assert {a for a, _ in udp.peers} == {HOST_UPLINK_IP} and len(uports) == 2 and port + 1 in uports, set(udp.peers)


class StunServer:
    """A UDP server in WORLD that answers every datagram with the address and port it came
    from, as a STUN binding response does: how a container learns its SNAT mapping."""

    def __init__(self, ns_path: str):
        self.sock = make_socket(ns_path, socket.SOCK_DGRAM)
        self.sock.bind((WORLD_UPLINK_IP, 0))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                _, peer = self.sock.recvfrom(100)
            except OSError:
                continue
            self.sock.sendto(f"{peer[0]} {peer[1]}".encode(), peer)

    def mapping(self, s: socket.socket) -> tuple[str, int]:
        """The (address, port) WORLD sees s's datagrams come from."""
        for _ in range(3):
            s.sendto(b"binding request", self.sock.getsockname())
            try:
                addr, port = s.recv(100).decode().split()
                return addr, int(port)
            except socket.timeout:
                continue
        raise AssertionError("no answer from the STUN server")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("sender", ["b", "c"], ids=["same-network", "other-network"])
def test_hairpin_to_another_containers_snat_mapping(nat, sender):
    """RFC 4787 REQ-9: a learns its SNAT mapping from a STUN server in WORLD, the sender its own;
    the sender's datagram to a's mapping reaches a from the sender's mapping, and a's answer to
    that address and port reaches the sender from a's mapping. Ports of the host's ephemeral
    range: both mappings are ports fastnet chose."""
    host, c = nat
    before = host.counters("a")
    sa, sx = make_socket(c["a"].netns, socket.SOCK_DGRAM), make_socket(c[sender].netns, socket.SOCK_DGRAM)
    with StunServer(host.world_path) as stun, sa, sx:
        for s, port in ((sa, 41500), (sx, 41600)):
            s.settimeout(1)
            s.bind(("0.0.0.0", port))
        a_mapped, x_mapped = stun.mapping(sa), stun.mapping(sx)
        assert a_mapped[0] == x_mapped[0] == HOST_UPLINK_IP and a_mapped[1] != x_mapped[1]
        sx.sendto(b"to a's mapping", a_mapped)
        assert sa.recvfrom(100) == (b"to a's mapping", x_mapped)
        sa.sendto(b"answer", x_mapped)
        assert sx.recvfrom(100) == (b"answer", a_mapped)
        assert stun.mapping(sa) == a_mapped and stun.mapping(sx) == x_mapped  # endpoint-independent
    assert moved(before, host.counters("a"))["fwd_snat_hairpin"] == 1


def test_100_concurrent_flows_with_colliding_source_ports(nat):
    """50 flows from a and 50 from b, source ports 20000-20049 in both, open at the same time."""
    host, c = nat
    ports = range(20000, 20050)
    clients = [(c[n].netns, p) for n in ("a", "b") for p in ports]
    with EchoServer(host.world_path, "tcp") as srv, ThreadPoolExecutor(len(clients)) as pool:
        def connect(client):
            ns, port = client
            try:
                return open_tcp(ns, WORLD_UPLINK_IP, srv.port, bind=port, timeout=10)
            except OSError as exc:
                return exc

        socks = list(pool.map(connect, clients))
        try:
            failed = [f"{p}: {s}" for (_, p), s in zip(clients, socks) if isinstance(s, Exception)]
            assert not failed, f"connect failed: {failed}"
            results = list(pool.map(lambda s: roundtrip(s, 32 * 1024), socks))
        finally:
            for s in socks:
                if isinstance(s, socket.socket):
                    s.close()
        bad = [f"{'ab'[i // 50]}:{p} {r}" for i, ((_, p), r) in enumerate(zip(clients, results)) if r != "ok"]
        assert not bad, f"{len(bad)} of 100 flows failed: {bad[:10]}"
        seen = list(srv.peers)
    assert {a for a, _ in seen} == {HOST_UPLINK_IP}
    seen_ports = [p for _, p in seen]
    assert len(seen_ports) == 100 and len(set(seen_ports)) == 100, f"{len(set(seen_ports))} distinct source ports"
    assert set(ports) <= set(seen_ports), "a free source port was not kept"


# -- ICMP errors --------------------------------------------------------------------------------
def closed_udp_port(ns_path: str) -> int:
    s = make_socket(ns_path, socket.SOCK_DGRAM)
    with s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def test_port_unreachable_is_translated_back(nat):
    host, c = nat
    port = closed_udp_port(host.world_path)
    before = host.counters("a", "fn_from_uplink")
    s = make_socket(c["a"].netns, socket.SOCK_DGRAM)
    with s:
        s.settimeout(1)
        s.connect((WORLD_UPLINK_IP, port))
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
    assert result == "ECONNREFUSED", f"the connected UDP socket saw {result}"
    assert moved(before, host.counters("a", "fn_from_uplink"))["fwd_icmp_error"] >= 1


def test_path_mtu_discovery_through_the_nat(nat):
    """WORLD routes to FAR over a 1280-byte link: its "fragmentation needed" reaches the
    container, translated, and lowers the path MTU the container's socket sees."""
    host, c = nat
    with far_network(host, mtu=1280) as far:
        far_ip = "203.0.113.2"
        with EchoServer(far, "udp") as srv:
            assert udp_echo(c["a"].netns, far_ip, srv.port, size=1000) == "ok", "FAR is not reachable at all"
            before = host.counters("a", "fn_from_uplink")
            s = make_socket(c["a"].netns, socket.SOCK_DGRAM)
            with s:
                s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
                s.connect((far_ip, srv.port))
                assert s.getsockopt(socket.IPPROTO_IP, IP_MTU) == 1500

                def learned():
                    try:
                        s.send(bytes(1400))  # DF set: too big for far0
                    except OSError:  # EMSGSIZE once the path MTU is known
                        pass
                    return s.getsockopt(socket.IPPROTO_IP, IP_MTU) == 1280

                wait_until(learned, timeout=3, interval=0.2, what="the container to learn path MTU 1280")
            assert moved(before, host.counters("a", "fn_from_uplink"))["fwd_icmp_error"] >= 1
        cp = host.exec("b", "ping", "-n", "-c2", "-i0.2", "-W1", "-M", "do", "-s", "1400", far_ip)
        text = cp.stdout + cp.stderr
        assert cp.returncode != 0 and ("mtu = 1280" in text or "mtu=1280" in text), text


def ttl_probe(ns_path: str, ip: str, port: int, ttl: int) -> tuple | None:
    """Send one UDP datagram with the given TTL; the ICMP error the socket then reports."""
    s = make_socket(ns_path, socket.SOCK_DGRAM)
    with s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        queue_icmp_errors(s)
        s.connect((ip, port))
        s.send(b"probe")
        return wait_for_icmp_error(s, timeout=1.5)


def test_time_exceeded_is_translated_back(nat):
    """A traceroute through the NAT: the router behind the uplink (WORLD) answers TTL 2, FAR's
    closed port answers TTL 3; both errors reach the container's socket."""
    host, c = nat
    with far_network(host, mtu=1500) as far:
        port = closed_udp_port(far)
        hop2 = ttl_probe(c["a"].netns, "203.0.113.2", port, ttl=2)
        assert hop2 and (hop2.icmp_type, hop2.offender) == (11, WORLD_UPLINK_IP), hop2
        hop3 = ttl_probe(c["a"].netns, "203.0.113.2", port, ttl=3)
        assert hop3 and (hop3.icmp_type, hop3.icmp_code, hop3.offender) == (3, 3, "203.0.113.2"), hop3


class NoTimeExceeded(AssertionError):
    pass


def test_the_gateway_answers_an_expiring_ttl(nat):
    host, c = nat
    assert in_netns(host.netns_path, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    hop1 = ttl_probe(c["a"].netns, WORLD_UPLINK_IP, 33434, ttl=1)
    if hop1 is None:
        raise NoTimeExceeded("no ICMP error for a TTL-1 probe")
    assert (hop1.icmp_type, hop1.offender) == (11, "10.91.1.1"), hop1


def test_a_zero_udp_checksum_stays_zero(nat):
    host, c = nat
    with EchoServer(host.world_path, "udp") as srv, Capture({"world": (host.world_path, UPLINK)}) as cap:
        s = make_socket(c["a"].netns, socket.SOCK_DGRAM)
        with s:
            s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)  # send without a checksum
            s.settimeout(1)
            mark = uuid.uuid4().hex.encode()
            s.sendto(mark, (WORLD_UPLINK_IP, srv.port))
            assert s.recv(100) == mark
        seen = cap.wait_for("world", mark)
    assert [(p["IP"].src, p["UDP"].chksum) for p in seen] == [(HOST_UPLINK_IP, 0)], [p.summary() for p in seen]


# -- connection tracking --------------------------------------------------------------------------
def test_conntrack_lists_a_live_flow_and_flush_forgets_it(nat):
    host, c = nat
    a_ip = c["a"].ip("front")
    with EchoServer(host.world_path, "tcp") as srv:
        s = open_tcp(c["a"].netns, WORLD_UPLINK_IP, srv.port, bind=24000)
        with s:
            assert roundtrip(s) == "ok"
            found = flows(host, "tcp", src=a_ip, sport=24000)
            assert len(found) == 1, found
            f = found[0]
            assert (f["kind"], f["state"], f["confirmed"]) == ("snat", "established", True), f
            assert f["original"] == {"src": a_ip, "sport": 24000, "dst": WORLD_UPLINK_IP, "dport": srv.port}, f
            assert f["reply"] == {"src": WORLD_UPLINK_IP, "sport": srv.port, "dst": HOST_UPLINK_IP, "dport": 24000}, f
            assert 0 <= f["age_s"] < 30 and f["expires_in_s"] > 3600, f

            out = host.fastnet("conntrack", "flush").stdout
            assert "removed" in out and int(out.split()[1]) >= 2, out
            assert flows(host) == [], "flows left after flush"
            # the connection itself goes on: its next packet is tracked anew, same translation
            assert roundtrip(s) == "ok"
            again = flows(host, "tcp", src=a_ip, sport=24000)
            assert len(again) == 1 and again[0]["reply"] == f["reply"], again
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b""  # the server's FIN came back
        # FIN both ways: the short tcp_closing timeout (10 s by default)
        closing = flows(host, "tcp", src=a_ip, sport=24000)
        assert [(x["state"], x["expires_in_s"] <= 10) for x in closing] == [("closing", True)], closing


SHORT_UDP_TIMEOUT = """\
name: short
networks:
  front:
    subnet: 10.91.1.0/24
containers:
  a:
    networks: [front]
conntrack:
  timeouts: {udp: 2}
"""


def test_udp_flow_expires_after_its_timeout(host):
    host.up(SHORT_UDP_TIMEOUT)
    c = containers(host, "short")
    with EchoServer(host.world_path, "udp") as srv:
        assert udp_echo(c["a"].netns, WORLD_UPLINK_IP, srv.port, bind=25000) == "ok"
        last_packet = time.monotonic()
    found = flows(host, "udp", sport=25000)
    assert len(found) == 1 and found[0]["confirmed"], found
    assert 0 < found[0]["expires_in_s"] <= 2, found
    # deleted by the agent's garbage collection (every 5 s) once expired
    wait_until(lambda: not flows(host, "udp", sport=25000), timeout=2 + 5 + 3, interval=0.25, what="the UDP flow to expire")
    assert time.monotonic() - last_packet > 0.9, "the flow vanished before its timeout"


# -- internal networks ----------------------------------------------------------------------------
def test_internal_network_reaches_nothing_outside(nat):
    host, c = nat
    v1, v2 = c["v1"], c["v2"]
    assert ping(host, "v1", v2.ip("vault")) and ping(host, "v2", v1.ip("vault"))
    with EchoServer(v2.netns, "tcp") as srv:
        assert tcp_echo(v1.netns, v2.ip("vault"), srv.port) == "ok"

    tcp, udp = world_servers(host)
    with tcp, udp:
        # No default route: the container's own kernel refuses.
        assert tcp_echo(v1.netns, WORLD_UPLINK_IP, tcp.port, timeout=1) in BLOCKED
        # A container that adds one anyway is stopped by the datapath.
        in_netns(v1.netns, "ip", "route", "add", "default", "via", VAULT_GATEWAY)
        try:
            before = host.counters("v1")
            assert tcp_echo(v1.netns, WORLD_UPLINK_IP, tcp.port, timeout=1) in BLOCKED
            assert udp_echo(v1.netns, WORLD_UPLINK_IP, udp.port, timeout=0.5, tries=1) in BLOCKED
            assert not ping(host, "v1", WORLD_UPLINK_IP, expect=False)
            assert moved(before, host.counters("v1"))["drop_internal"] >= 3
        finally:
            in_netns(v1.netns, "ip", "route", "del", "default", check=False)
        assert tcp.peers == [] and udp.peers == [], (tcp.peers, udp.peers)


# -- checksums --------------------------------------------------------------------------------------
def test_snat_checksums_with_tx_offload_off(nat):
    """With TX checksum offload off on every veth involved, every checksum is complete on the
    wire and WORLD and the container verify each one fastnet rewrote."""
    host, c = nat
    a = c["a"]
    points = [
        (a.netns, a.ifname("front")),
        (host.netns_path, a.nets["front"]["host_ifname"]),
        (host.netns_path, UPLINK),
        (host.world_path, UPLINK),
    ]
    tcp, udp = world_servers(host)
    with tcp, udp, tx_checksum_off(points):
        before = {"world": nstat(host.world_path), "a": nstat(a.netns)}
        assert tcp_echo(a.netns, WORLD_UPLINK_IP, tcp.port, size=1 << 20, bind=26000) == "ok"
        assert udp_stream(a.netns, WORLD_UPLINK_IP, udp.port, count=300, size=1400, bind=26001) == "ok"
        after = {"world": nstat(host.world_path), "a": nstat(a.netns)}
    assert tcp.peers == [(HOST_UPLINK_IP, 26000)] and set(udp.peers) == {(HOST_UPLINK_IP, 26001)}
    assert after == before, f"checksum/header error counters moved: {before} -> {after}"
