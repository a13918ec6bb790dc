"""Connection tracking in real namespaces: what outsiders cannot do to the containers' flows,
and TCP followed as RFC 5382 and Linux do.

   project ctflood (own host; conntrack: max_flows 2048, max_new_flows 512, inbound_percent 25)
   front 10.93.1.0/24
     a, b    1,000 idle TCP connections to WORLD (500 each), then new ones during the flood
     web     publish 8080:80 (TCP, listening) and 8053:53/udp (an echo server: it answers all)

   HOST  up0 198.51.100.1 (fn_from_uplink) ==== veth ==== WORLD up0 198.51.100.2
                                                           the echo server of the idle flows;
                                                           the flood leaves from here, with
                                                           random sources in 100.64.0.0/10
                                                           (web's answers to them die in WORLD)

   project cttrack (module host; tcp_closing 2 s, tcp_half_closed 60 s)
     a       connections to servers in WORLD: spoofed RSTs, half-close, a flush

   project ctcarry (own host): `up` again with another max_flows makes a new build of the
   datapath; a's TCP connection and UDP flow to WORLD must go on
"""
from __future__ import annotations

import random
import resource
import selectors
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
from harness import (HOST_UPLINK_IP, UPLINK, WORLD_UPLINK_IP, EchoServer, containers, flows, l2socket, make_socket,
                     moved, netns, open_tcp, prog_map_ids, roundtrip, uplink_mac, uplink_program, wait_until)
from scapy.all import IP, TCP, Ether

from fastnet.control.bench.bpfcost import _csum, tcp_frame

FLOOD = """\
name: ctflood
networks:
  front:
    subnet: 10.93.1.0/24
containers:
  a:
    networks: [front]
  b:
    networks: [front]
  web:
    networks: [front]
    publish: ["8080:80", "8053:53/udp"]
conntrack: {max_flows: 2048, max_new_flows: 512, inbound_percent: 25}
"""
# The budgets that makes (datapath/maps.py ct_budgets): in 512 + 128 new, out 1536 + 384 new.
IN_CAPACITY = 512 + 128
TABLE_CAPACITY = 2048 + 512
IDLE_FLOWS = 1000


class IdleServer:
    """A TCP echo server (one thread, selectors) that keeps every connection as long as the
    client does: thousands of idle connections, no timeout."""

    def __init__(self, ns_path: str):
        self.sock = make_socket(ns_path, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            for key, _ in self.sel.select(timeout=0.1):
                if key.fileobj is self.sock:
                    try:
                        conn, _ = self.sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self.conns.append(conn)
                    self.sel.register(conn, selectors.EVENT_READ)
                    continue
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(key.fileobj)
                    key.fileobj.close()
                    continue
                key.fileobj.setblocking(True)
                try:
                    key.fileobj.sendall(data)
                except OSError:
                    pass
                key.fileobj.setblocking(False)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for c in self.conns:
            c.close()
        self.sel.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def udp_frame(smac: str, dmac: str, src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    udp = udp[:6] + struct.pack("!H", _csum(s + d + struct.pack("!BBH", 0, socket.IPPROTO_UDP, len(udp)) + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, socket.IPPROTO_UDP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00" + ip + udp


def spoofed_frames(host, count: int) -> list[bytes]:
    """count frames from random sources in 100.64.0.0/10, each a new flow: half datagrams to the
    published UDP port, half blind TCP ACKs (no handshake before them) to the published TCP port."""
    rnd = random.Random(13)
    wmac, hmac = uplink_mac(host, host.world), uplink_mac(host)
    frames, seen = [], set()
    while len(frames) < count:
        src = socket.inet_ntoa(struct.pack("!I", (100 << 24 | 64 << 16) + rnd.randrange(1 << 22)))
        sport = rnd.randrange(1024, 65536)
        if (src, sport) in seen:
            continue
        seen.add((src, sport))
        if len(frames) % 2:
            frames.append(tcp_frame(wmac, hmac, src, HOST_UPLINK_IP, sport, 8080))  # flags ACK
        else:
            frames.append(udp_frame(wmac, hmac, src, HOST_UPLINK_IP, sport, 8053, b"spoofed"))
    return frames


def raw_socket(ns_path: str) -> socket.socket:
    with netns(ns_path):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((UPLINK, 0))
    return s


def check_all(socks: list[socket.socket]) -> list[str]:
    """A short echo round trip on every connection, many at a time, 2 s each at most."""
    def check(s: socket.socket) -> str:
        s.settimeout(2)
        return roundtrip(s, 64)

    with ThreadPoolExecutor(64) as pool:
        return list(pool.map(check, socks))


@pytest.fixture
def many_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_spoofed_flood_leaves_established_flows_and_new_outbound_connections(host, many_files):
    """Spoofed traffic at 10x the table's capacity (2,560 flows), random sources, half datagrams
    a container answers and half blind TCP ACKs, leaves 1,000 idle established container flows
    all alive, and the containers' new outbound connections during the flood succeed."""
    host.up(FLOOD)
    c = containers(host, "ctflood")
    with IdleServer(host.world_path) as world, EchoServer(c["web"].netns, "udp", port=53):
        idle = []
        try:
            for i in range(IDLE_FLOWS):
                s = open_tcp(c["ab"[i % 2]].netns, WORLD_UPLINK_IP, world.port, timeout=10)
                idle.append(s)
            assert check_all(idle) == ["ok"] * len(idle)
            before = {p: host.counters("web", p) for p in ("fn_from_uplink", "fn_from_container")}

            # the flood, in 10 bursts, while a and b open new connections to WORLD
            frames = spoofed_frames(host, 10 * TABLE_CAPACITY)
            results: list[str] = []

            def new_connection(i: int) -> str:
                try:
                    s = open_tcp(c["ab"[i % 2]].netns, WORLD_UPLINK_IP, world.port, timeout=5)
                except OSError as exc:
                    return type(exc).__name__
                with s:
                    return roundtrip(s, 256)

            with raw_socket(host.world_path) as raw, ThreadPoolExecutor(8) as pool:
                pending = []
                for burst in range(10):
                    pending += [pool.submit(new_connection, 10 * burst + k) for k in range(10)]
                    for f in frames[burst * TABLE_CAPACITY:(burst + 1) * TABLE_CAPACITY]:
                        raw.send(f)
                    time.sleep(0.2)
                results = [p.result() for p in pending]
            after = {p: host.counters("web", p) for p in ("fn_from_uplink", "fn_from_container")}

            alive = check_all(idle)
            alive_pct = 100 * alive.count("ok") / len(idle)
            new_pct = 100 * results.count("ok") / len(results)
            print(f"\nflood of {len(frames)} spoofed packets: {alive_pct:.1f} % of {len(idle)} idle flows alive, "
                  f"{new_pct:.1f} % of {len(results)} new outbound connections succeeded")
            refused = moved(before["fn_from_uplink"], after["fn_from_uplink"])["drop_ct_new_full"]
            refused_answers = moved(before["fn_from_container"], after["fn_from_container"])["drop_ct_full"]
            print(f"refused: {refused} new flows from outside, {refused_answers} answers over the in budget")
            assert alive_pct == 100, [r for r in alive if r != "ok"][:10]
            assert new_pct >= 99, [r for r in results if r != "ok"]
            # the flood went beyond its budgets, and was refused there
            assert refused > 0 and refused_answers > 0, (before, after)
            tracked = flows(host, "tcp", "snat")
            assert sum(f["confirmed"] and f["state"] == "established" for f in tracked) >= IDLE_FLOWS
            spoofed = [f for f in flows(host, kind="dnat") if f["original"]["src"].startswith("100.")]
            assert 0 < len(spoofed) <= IN_CAPACITY
            assert not any(f["confirmed"] for f in spoofed if f["proto"] == "tcp"), "a blind ACK confirmed a flow"
        finally:
            for s in idle:
                s.close()


# -- TCP tracking: RST in the window only, half-close, pick-up ----------------------------------------
TRACK = """\
name: cttrack
networks:
  front:
    subnet: 10.93.2.0/24
containers:
  a:
    networks: [front]
conntrack: {timeouts: {tcp_closing: 2, tcp_half_closed: 60}}
"""
TCP_INFO_UNACKED = 24  # offset of tcpi_unacked in struct tcp_info (linux/tcp.h)


@pytest.fixture(scope="module")
def track(module_host):
    module_host.up(TRACK)
    return module_host, containers(module_host, "cttrack")["a"]


def connection(host, a, port: int):
    """A connection from a (source port `port`, kept by SNAT) to a server in WORLD: (client, server)."""
    listener = make_socket(host.world_path, socket.SOCK_STREAM)
    listener.bind(("0.0.0.0", 0))
    listener.listen(1)
    client = open_tcp(a.netns, WORLD_UPLINK_IP, listener.getsockname()[1], bind=port)
    server, _ = listener.accept()
    listener.close()
    return client, server


def exchange(client: socket.socket, server: socket.socket) -> None:
    client.sendall(b"ping")
    assert server.recv(4) == b"ping"
    server.sendall(b"pong")
    assert client.recv(4) == b"pong"


def the_flow(host, port: int) -> dict:
    (f,) = flows(host, "tcp", "snat", sport=port)
    return f


def test_an_rst_outside_the_window_leaves_the_flow(track):
    """A spoofed RST with the flow's addresses and ports but a sequence number far from the
    server's is delivered to the container (whose stack ignores it) and changes nothing in
    conntrack; the server's own RST then closes the flow."""
    host, a = track
    client, server = connection(host, a, 29000)
    with client, server:
        exchange(client, server)
        before = host.counters("a", "fn_from_uplink")
        rst = (Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
               / IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP)
               / TCP(sport=server.getsockname()[1], dport=29000, flags="R", seq=random.Random(3).getrandbits(32)))
        with closing(l2socket(host.world_path, UPLINK)) as sk:
            sk.send(rst)
        wait_until(lambda: moved(before, host.counters("a", "fn_from_uplink"))["fwd_ct_rst_ignored"] == 1, timeout=3,
                   what="the RST to reach the datapath")
        assert the_flow(host, 29000)["state"] == "established"
        exchange(client, server)  # the container's stack ignored it too
        server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # the server's close with linger 0 sends an RST with its own next sequence number
    wait_until(lambda: the_flow(host, 29000)["state"] == "closed", timeout=3, what="the server's RST to close the flow")


def unacked(s: socket.socket) -> int:
    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, TCP_INFO_UNACKED)[0]


def test_a_half_closed_connection_outlives_the_closing_timeout(track):
    """shutdown(SHUT_WR) in the container, then a server silent for longer than tcp_closing
    (2 s) and the agent's collection (every 5 s): the server's late data reaches the container
    and the container's ACKs leave by the same mapping (the server sees them acknowledged)."""
    host, a = track
    client, server = connection(host, a, 29001)
    with client, server:
        exchange(client, server)
        client.shutdown(socket.SHUT_WR)
        assert server.recv(10) == b""  # the FIN arrived
        assert the_flow(host, 29001)["state"] == "half-closed"
        time.sleep(2 + 5 + 1)
        server.sendall(b"late answer")
        assert client.recv(100) == b"late answer"
        wait_until(lambda: unacked(server) == 0, timeout=3, what="the container's ACK to reach the server")
        f = the_flow(host, 29001)
        assert f["reply"]["dport"] == 29001 and f["state"] == "half-closed" and f["expires_in_s"] > 50, f


def test_a_connection_picked_up_after_a_flush_is_confirmed(track):
    """After `fastnet conntrack flush` (what an upgrade without carrying conntrack did), the
    connection's next packets make a flow that is confirmed once both directions are seen, with
    the established timeout, instead of dying with the SYN timeout."""
    host, a = track
    client, server = connection(host, a, 29002)
    with client, server:
        exchange(client, server)
        host.fastnet("conntrack", "flush")
        assert flows(host, "tcp", sport=29002) == []
        exchange(client, server)
        f = the_flow(host, 29002)
        assert (f["confirmed"], f["state"]) == (True, "established") and f["expires_in_s"] > 3600, f
        assert f["reply"]["dport"] == 29002


# -- a datapath rebuild (an upgrade) carries conntrack over ---------------------------------------------
REBUILD = """\
name: ctcarry
networks:
  front:
    subnet: 10.93.3.0/24
containers:
  a:
    networks: [front]
conntrack: {max_flows: %d}
"""


def test_conntrack_survives_a_datapath_rebuild(host):
    """Other compile-time settings make another build of the datapath (as other sources or
    another ABI would): `up` moves the ports to it, and the flows go with them — same mapping,
    same age, still confirmed — so the server may speak first after the rebuild."""
    host.up(REBUILD % 4096)
    a = containers(host, "ctcarry")["a"]
    udp_server = make_socket(host.world_path, socket.SOCK_DGRAM)
    udp_server.bind(("0.0.0.0", 0))
    client, server = connection(host, a, 29100)
    udp_client = make_socket(a.netns, socket.SOCK_DGRAM)
    with client, server, udp_server, udp_client:
        exchange(client, server)
        udp_client.bind(("0.0.0.0", 29101))
        udp_client.sendto(b"hello", (WORLD_UPLINK_IP, udp_server.getsockname()[1]))
        _, peer = udp_server.recvfrom(100)
        assert peer == (HOST_UPLINK_IP, 29101)
        udp_server.sendto(b"back", peer)
        assert udp_client.recv(100) == b"back"
        before = {(f["proto"], f["original"]["sport"]): f for f in flows(host) if f["original"]["sport"] in (29100, 29101)}
        build = uplink_program(host), prog_map_ids(uplink_program(host))
        assert len(before) == 2 and all(f["confirmed"] for f in before.values()), before

        host.up(REBUILD % 8192)  # a new build
        new_build = uplink_program(host), prog_map_ids(uplink_program(host))
        assert new_build[0] != build[0] and not new_build[1] & build[1], "not a new build"
        after = {(f["proto"], f["original"]["sport"]): f for f in flows(host) if f["original"]["sport"] in (29100, 29101)}
        for k, f in before.items():
            g = after.get(k)
            assert g and (g["reply"], g["state"], g["confirmed"]) == (f["reply"], f["state"], True), (f, g)
            assert g["age_s"] >= f["age_s"], (f, g)  # the same flow, not a new one
        # the servers speak first: their packets need the carried reply entries
        server.sendall(b"first")
        client.settimeout(3)
        assert client.recv(100) == b"first"
        udp_server.sendto(b"first", peer)
        udp_client.settimeout(3)
        assert udp_client.recvfrom(100) == (b"first", (WORLD_UPLINK_IP, udp_server.getsockname()[1]))


# -- a container's flows go with its interface ------------------------------------------------------------
# WireGuard's port lies in the host's ephemeral range: publishing it takes the opt-in (README)
WG = """\
name: ctwg
publish_ephemeral_ports: true
networks:
  front:
    subnet: 10.93.4.0/24
containers:
  other:
    networks: [front]
%s"""
WG_BACKEND = """\
  wg:
    networks:
      front: {ipv4_address: 10.93.4.10}
    publish: ["51820:51820/udp"]
"""


class KeepAlive:
    """A WireGuard-like peer in WORLD: from port 51820 to HOST:51820, a datagram every 0.1 s;
    `answered` counts the echoes that came back."""

    def __init__(self, ns_path: str):
        self.sock = make_socket(ns_path, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", 51820))
        self.sock.settimeout(0.1)
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.sock.sendto(b"keepalive", (HOST_UPLINK_IP, 51820))
                data, _ = self.sock.recvfrom(100)
                self.answered += data == b"keepalive"
            except OSError:  # a timeout, or the port unreachable while no backend exists
                pass
            time.sleep(0.1)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def test_a_backend_recreated_under_a_keepalive_flow_answers_again(host):
    """The backend of a published UDP port is removed and made again with the same address
    (a new interface) while its client keeps sending keep-alives: the client's flow went with
    the old interface, so its next keep-alive reaches the new backend (on main the keep-alives
    kept the old flow alive and went to the old interface for ever)."""
    host.up(WG % WG_BACKEND)
    peer = KeepAlive(host.world_path)
    try:
        with EchoServer(containers(host, "ctwg")["wg"].netns, "udp", port=51820):
            wait_until(lambda: peer.answered > 3, timeout=5, what="the keep-alives to be answered")
            assert flows(host, "udp", "dnat", sport=51820), "no flow for the keep-alives"
        host.up(WG % "")  # the backend goes ...
        assert not flows(host, "udp", "dnat", sport=51820), "the removed backend's flow stayed"
        time.sleep(0.5)  # ... the keep-alives go on (to a port nobody publishes now) ...
        host.up(WG % WG_BACKEND)  # ... and it comes back, with the same address
        with EchoServer(containers(host, "ctwg")["wg"].netns, "udp", port=51820):
            answered = peer.answered
            wait_until(lambda: peer.answered > answered + 3, timeout=5, what="the new backend to answer")
    finally:
        peer.close()
