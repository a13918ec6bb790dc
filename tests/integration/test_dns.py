"""The embedded resolver, asked from inside containers with dig (and dnspython or raw sockets
for timing and broken input), forwarding to a DNS server in the world namespace.

   HOST (project dnst; /etc/netns/HOST/resolv.conf: 198.51.100.9 (dead), 198.51.100.2)
   front 10.93.1.0/24          back 10.93.2.0/24        vault 10.93.3.0/24 (internal)
     web  .10 [www, pool]        api  .20                 safe
     web2 .11 [pool]             db   .30 [store]         mixed (vault, then back)
     api  .20                    mixed
     cmd  [command: dig web]
   bridge 172.17.0.0/16: solo, solo2
        |
       up0 --- WORLD 198.51.100.2: dns_upstream (names under example.test. -> 192.0.2.80)

Every container asks 127.0.0.11:53 in its own namespace; the agent answers on sockets it
made there, on ports that fastnet's socket hooks map 53 to (ebpf backend: fn_resolvers, no
netfilter in the container) or an nftables chain does (iptables backend).
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from harness import WORLD_UPLINK_IP, EchoServer, assert_no_leftovers, netns, tcp_echo, udp_echo, wait_until

from fastnet.control.bench.dns_upstream import ANSWER, Upstream, bind
from fastnet.control.backends.iptables import RESOLVER_TABLE as NFT_TABLE
from fastnet.control.observe import socket_netns_cookie as netns_cookie
from fastnet.datapath import libbpf, loader
from fastnet.datapath.maps import Maps

RESOLVER = "127.0.0.11"
DEAD_UPSTREAM = "198.51.100.9"  # on up0's subnet, nobody there: a query to it times out

TOPOLOGY = """\
name: dnst
networks:
  front: {subnet: 10.93.1.0/24}
  back: {subnet: 10.93.2.0/24}
  vault: {subnet: 10.93.3.0/24, internal: true}
containers:
  web:
    networks:
      front: {ipv4_address: 10.93.1.10, aliases: [www, pool]}
  web2:
    networks:
      front: {ipv4_address: 10.93.1.11, aliases: [pool]}
  api:
    networks:
      front: {ipv4_address: 10.93.1.20}
      back: {ipv4_address: 10.93.2.20}
  db:
    networks:
      back: {ipv4_address: 10.93.2.30, aliases: [store]}
  safe:
    networks: [vault]
  mixed:
    networks: [vault, back]
  cmd:
    networks: [front]
    command: [sh, -c, "cat /etc/resolv.conf; dig +short +time=2 +tries=2 web; exec sleep 600"]
  solo: {}
  solo2: {}
"""


@contextlib.contextmanager
def world_upstream(host):
    """The DNS server in WORLD, and HOST's resolv.conf naming a dead server first (before the
    first `up`: the agent sees the resolv.conf of the `ip netns exec` that started it)."""
    with netns(host.world_path):
        sockets = bind(WORLD_UPLINK_IP, 53)
    server = Upstream(*sockets)
    etc = Path("/etc/netns") / host.name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(f"nameserver {DEAD_UPSTREAM}\nnameserver {WORLD_UPLINK_IP}\n")
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(etc, ignore_errors=True)


@dataclass
class Reply:
    status: str
    answers: list[str]
    flags: str


def dig(host, container: str, *queries: str, tcp: bool = False) -> list[Reply]:
    """One dig run in the container asking each query ("NAME", "NAME TYPE", "-x ADDR")."""
    args = ["dig", "+time=4", "+tries=1", "+noall", "+comments", "+answer"] + (["+tcp"] if tcp else [])
    for q in queries:
        args += q.split()
    cp = host.exec(container, *args, timeout=60)
    chunks = cp.stdout.split(";; ->>HEADER<<-")[1:]
    assert len(chunks) == len(queries), f"dig {queries} in {container}:\n{cp.stdout}\n{cp.stderr}"
    replies = []
    for chunk in chunks:
        status = re.search(r"status: (\w+)", chunk).group(1)
        flags = re.search(r";; flags: ([^;]*);", chunk).group(1)
        answers = [line.split()[-1] for line in chunk.splitlines()[1:] if line.strip() and not line.startswith(";")]
        replies.append(Reply(status, answers, flags))
    return replies


def one(host, container: str, query: str, tcp: bool = False) -> Reply:
    return dig(host, container, query, tcp=tcp)[0]


def ns_of(host, container: str) -> str:
    return host.inspect(container)["netns"]


def ask(ns_path: str, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
    """A dnspython query to 127.0.0.11 from a socket made in the container's namespace."""
    q = dns.message.make_query(name, rdtype)
    with netns(ns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    with s:
        if tcp:
            s.settimeout(timeout)
            s.connect((RESOLVER, 53))
            return dns.query.tcp(q, RESOLVER, timeout=timeout, sock=s)
        s.setblocking(False)  # dnspython waits for readability itself; a blocking socket would hang on a lost reply
        return dns.query.udp(q, RESOLVER, timeout=timeout, sock=s)


def udp_socket(ns_path: str) -> socket.socket:
    with netns(ns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((RESOLVER, 53))
    return s


def tcp_socket(ns_path: str) -> socket.socket:
    with netns(ns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3.0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((RESOLVER, 53))
    return s


def recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def dns_counters(host, container: str) -> dict:
    return host.inspect(container)["dns"]


def agent_root(host) -> Path:
    """The keeper's (and agent's) view of HOST's state dir (its tmpfs rt/ is only visible there)."""
    return Path(f"/proc/{host.keeper_record()['pid']}/root{host.dir}")


def resolver_table(host) -> dict[int, tuple[str, int, int]]:
    """fn_resolvers of the datapath pinned in the agent's bpffs: {netns cookie: (address, udp
    port, tcp port)}; {} when no datapath is pinned."""
    dp = loader.open_pinned(agent_root(host) / "rt" / "bpf")
    if dp is None:
        return {}
    try:
        return {k: (str(a), u, t) for k, (a, u, t) in Maps(dp).resolvers().items()}
    finally:
        dp.close()


def cookie_of(ns_path: str) -> int:
    with netns(ns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        return netns_cookie(s)


def nft_tables(ns_path: str) -> str:
    with netns(ns_path):
        return run_nft("list", "tables")


def run_nft(*args: str) -> str:
    import subprocess

    cp = subprocess.run([shutil.which("nft") or "/usr/sbin/nft", *args], capture_output=True, text=True, check=True)
    return cp.stdout


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dnst(module_host):
    with world_upstream(module_host) as upstream:
        module_host.up(TOPOLOGY)
        yield module_host, upstream


def test_names_and_aliases_of_shared_networks(dnst):
    host, _ = dnst
    web, www, web2, db, store, me = dig(host, "api", "web", "WWW", "web2", "db", "store.", "api")
    assert (web.status, web.answers) == ("NOERROR", ["10.93.1.10"])
    assert "aa" in web.flags.split()
    assert www.answers == ["10.93.1.10"] and web2.answers == ["10.93.1.11"]
    assert db.answers == ["10.93.2.30"] and store.answers == ["10.93.2.30"]
    assert me.answers == ["10.93.1.20"]  # its first network answers first
    assert one(host, "db", "api").answers == ["10.93.2.20"]  # db sees api on back only


def test_name_dot_network(dnst):
    host, _ = dnst
    front, back, alias, wrong = dig(host, "api", "api.front", "api.back", "www.front", "web.back")
    assert front.answers == ["10.93.1.20"] and back.answers == ["10.93.2.20"]
    assert alias.answers == ["10.93.1.10"]
    assert (wrong.status, wrong.answers) == ("NXDOMAIN", [])


def test_other_networks_are_nxdomain_and_never_forwarded(dnst):
    host, upstream = dnst
    replies = dig(host, "web", "db", "store", "db.back", "safe", "solo")
    assert [r.status for r in replies] == ["NXDOMAIN"] * 5
    assert all(not r.answers for r in replies)
    assert not {"db.", "store.", "db.back.", "safe.", "solo."} & set(upstream.asked)


def test_round_robin(dnst):
    host, _ = dnst
    orders = [r.answers for r in dig(host, "api", "pool", "pool", "pool", "pool")]
    assert all(sorted(o) == ["10.93.1.10", "10.93.1.11"] for o in orders), orders
    assert orders[0] != orders[1] and orders[0] == orders[2] and orders[1] == orders[3], orders


def test_default_bridge_resolves_no_names(dnst):
    host, upstream = dnst
    other, itself = dig(host, "solo", "solo2", "solo")
    assert (other.status, itself.status) == ("NXDOMAIN", "NXDOMAIN")
    assert "solo2." not in upstream.asked
    # but it forwards like any container on a normal network
    assert one(host, "solo", "bridge.example.test").answers == [ANSWER]


def test_ptr(dnst):
    host, _ = dnst
    web, db = dig(host, "api", "-x 10.93.1.10", "-x 10.93.2.30")
    assert web.answers == ["web.front."] and db.answers == ["db.back."]
    hidden = one(host, "web", "-x 10.93.2.30")
    assert (hidden.status, hidden.answers) == ("NXDOMAIN", [])


def test_aaaa_of_a_known_name_is_empty_noerror(dnst):
    host, _ = dnst
    aaaa, mx = dig(host, "api", "web AAAA", "www MX")
    assert (aaaa.status, aaaa.answers) == ("NOERROR", [])
    assert (mx.status, mx.answers) == ("NOERROR", [])
    assert one(host, "web", "db AAAA").status == "NXDOMAIN"


def test_forwarding_fails_over_past_a_dead_upstream(dnst):
    host, upstream = dnst
    started = time.monotonic()
    reply = one(host, "api", "www.example.test")
    assert (reply.status, reply.answers) == ("NOERROR", [ANSWER])
    assert time.monotonic() - started >= 1.0  # the dead first upstream had its timeout
    assert upstream.asked["www.example.test."] == 1
    missing = one(host, "api", "missing.invalid")
    assert (missing.status, missing.answers) == ("NXDOMAIN", [])
    assert upstream.asked["missing.invalid."] == 1


def test_forwarding_over_tcp(dnst):
    host, upstream = dnst
    reply = one(host, "api", "tcp.example.test", tcp=True)
    assert (reply.status, reply.answers) == ("NOERROR", [ANSWER])
    assert upstream.asked["tcp.example.test."] == 1


def test_internal_network_forwards_nothing(dnst):
    host, upstream = dnst
    leak = one(host, "safe", "leak.example.test")
    assert (leak.status, leak.answers) == ("SERVFAIL", [])
    assert one(host, "safe", "leak2.example.test", tcp=True).status == "SERVFAIL"
    assert "leak.example.test." not in upstream.asked and "leak2.example.test." not in upstream.asked
    # a container with one normal network besides the internal one forwards (as in Docker)
    assert one(host, "mixed", "mixed.example.test").answers == [ANSWER]
    assert upstream.asked["mixed.example.test."] == 1


def test_tcp_local_queries(dnst):
    host, _ = dnst
    web, ptr, nx = dig(host, "api", "web", "-x 10.93.1.10", "db.front", tcp=True)
    assert web.answers == ["10.93.1.10"] and ptr.answers == ["web.front."] and nx.status == "NXDOMAIN"


def test_exec_and_command_see_the_resolver(dnst):
    host, _ = dnst
    text = host.exec("api", "cat", "/etc/resolv.conf").stdout
    assert re.search(r"^nameserver 127\.0\.0\.11$", text, re.M) and text.count("nameserver") == 1
    log = host.dir / "logs" / "dnst" / "cmd.log"
    wait_until(lambda: log.exists() and "10.93.1.10" in log.read_text(), timeout=10, what="cmd's dig answer")
    assert "nameserver 127.0.0.11" in log.read_text()
    # HOST itself keeps its own resolv.conf
    assert host.sh("cat", "/etc/resolv.conf").stdout.startswith(f"nameserver {DEAD_UPSTREAM}")


def test_a_container_may_serve_port_53_itself(dnst):
    """The resolver does not hold port 53 in the container: a program there binds 0.0.0.0:53
    (UDP and TCP, without SO_REUSEADDR) and is reachable, and 127.0.0.11 still answers."""
    host, _ = dnst
    ns = ns_of(host, "web2")
    with netns(ns):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with udp, tcp:
        udp.bind(("0.0.0.0", 53))
        tcp.bind(("0.0.0.0", 53))
    with EchoServer(ns, "udp", port=53), EchoServer(ns, "tcp", port=53):
        assert udp_echo(ns_of(host, "api"), "10.93.1.11", 53) == "ok"
        assert tcp_echo(ns_of(host, "api"), "10.93.1.11", 53) == "ok"
        assert str(ask(ns, "web").answer[0][0]) == "10.93.1.10"
        assert str(ask(ns, "web", tcp=True).answer[0][0]) == "10.93.1.10"
        assert one(host, "web2", "www").answers == ["10.93.1.10"]


def test_ebpf_backend_needs_no_netfilter_in_the_container(dnst):
    """On the ebpf backend the socket hooks map 127.0.0.11:53 to the resolver's ports: the
    container's namespace holds no nftables table, and fn_resolvers holds its namespace."""
    host, _ = dnst
    for name in ("web", "api", "solo"):
        ns = ns_of(host, name)
        assert nft_tables(ns).strip() == "", f"{name} has nftables tables"
        addr, udp_port, tcp_port = resolver_table(host)[cookie_of(ns)]
        assert addr == RESOLVER and udp_port not in (0, 53) and tcp_port not in (0, 53)


def test_replies_show_127_0_0_11_port_53(dnst):
    """recvfrom() on an unconnected UDP socket and getpeername() of connected UDP and TCP
    sockets show 127.0.0.11:53, not the resolver's real port; the hook counts each query."""
    host, _ = dnst
    ns = ns_of(host, "web2")
    before = host.counters("web2", "fn_sock")["fwd_sock_resolver"]
    query = dns.message.make_query("web", "A")
    with netns(ns):
        unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with unconnected, connected, stream:
        for s in (unconnected, connected, stream):
            s.settimeout(3.0)
        unconnected.sendto(query.to_wire(), (RESOLVER, 53))
        wire, source = unconnected.recvfrom(4096)
        assert source == (RESOLVER, 53)
        assert str(dns.message.from_wire(wire).answer[0][0]) == "10.93.1.10"

        connected.connect((RESOLVER, 53))
        assert connected.getpeername() == (RESOLVER, 53)
        connected.send(query.to_wire())
        assert str(dns.message.from_wire(connected.recv(4096)).answer[0][0]) == "10.93.1.10"

        stream.connect((RESOLVER, 53))
        assert stream.getpeername() == (RESOLVER, 53)
        wire = query.to_wire()
        stream.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", recv_exactly(stream, 2))
        assert str(dns.message.from_wire(recv_exactly(stream, length)).answer[0][0]) == "10.93.1.10"
    # sendto, connect (UDP), connect (TCP); the connected socket's send() needs no hook
    assert host.counters("web2", "fn_sock")["fwd_sock_resolver"] - before >= 3


def test_an_ipv6_socket_with_a_mapped_address_reaches_the_resolver(dnst):
    """An IPv6 socket asking ::ffff:127.0.0.11 (Java's default) is served like an IPv4 one:
    unconnected UDP (sendto runs the IPv4 hook, recvfrom the IPv6 one), connected UDP and TCP
    (connect6); replies and getpeername() show ::ffff:127.0.0.11 port 53."""
    host, _ = dnst
    mapped = f"::ffff:{RESOLVER}"
    query = dns.message.make_query("web", "A")
    with netns(ns_of(host, "web2")):
        unconnected = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        connected = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        stream = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with unconnected, connected, stream:
        for s in (unconnected, connected, stream):
            s.settimeout(3.0)
        unconnected.sendto(query.to_wire(), (mapped, 53))
        wire, source = unconnected.recvfrom(4096)
        assert source[:2] == (mapped, 53)
        assert str(dns.message.from_wire(wire).answer[0][0]) == "10.93.1.10"

        connected.connect((mapped, 53))
        assert connected.getpeername()[:2] == (mapped, 53)
        connected.send(query.to_wire())
        assert str(dns.message.from_wire(connected.recv(4096)).answer[0][0]) == "10.93.1.10"

        stream.connect((mapped, 53))
        assert stream.getpeername()[:2] == (mapped, 53)
        wire = query.to_wire()
        stream.sendall(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", recv_exactly(stream, 2))
        assert str(dns.message.from_wire(recv_exactly(stream, length)).answer[0][0]) == "10.93.1.10"


def test_a_client_sending_from_127_0_0_11_port_53_gets_its_answer(dnst):
    """The resolver's reply to 127.0.0.11:53 (a DNS server in the container asking from its own
    port 53) goes to that client: the hooks leave the resolver's own socket alone."""
    host, _ = dnst
    with netns(ns_of(host, "web2")):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.settimeout(3.0)
        s.bind((RESOLVER, 53))
        s.sendto(dns.message.make_query("web", "A").to_wire(), (RESOLVER, 53))
        wire, source = s.recvfrom(4096)
    assert source == (RESOLVER, 53)
    assert str(dns.message.from_wire(wire).answer[0][0]) == "10.93.1.10"


def test_malformed_and_truncated_udp_queries(dnst):
    host, _ = dnst
    ns = ns_of(host, "api")
    before = dns_counters(host, "api")
    query = dns.message.make_query("web", "A").to_wire()
    qid = struct.unpack("!H", query[:2])[0]
    with udp_socket(ns) as s:
        for junk in (b"", b"\x01", b"\x12\x34\x00", os.urandom(7)):  # no whole header: dropped
            s.send(junk)
        response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()
        s.send(response)  # a response, not a query: never answered
        s.send(query[:-3])  # truncated question: FORMERR under the query's id
        reply = dns.message.from_wire(s.recv(4096))
        assert reply.id == qid and reply.rcode() == dns.rcode.FORMERR
        header_only = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)  # claims one question
        s.send(header_only)
        reply = dns.message.from_wire(s.recv(4096))
        assert reply.id == 0x4242 and reply.rcode() == dns.rcode.FORMERR
        s.send(query)  # and it still answers
        reply = dns.message.from_wire(s.recv(4096))
        assert reply.id == qid and str(reply.answer[0][0]) == "10.93.1.10"
    # the agent writes its counters once a second
    after = wait_until(lambda: (c := dns_counters(host, "api"))["local"] > before["local"] and c, what="counters")
    assert after["malformed"] - before["malformed"] == 7
    assert after["dropped"] - before["dropped"] == 5
    assert after["local"] - before["local"] == 1


def test_tcp_query_split_across_segments(dnst):
    host, _ = dnst
    ns = ns_of(host, "api")
    wire = dns.message.make_query("www", "A").to_wire()
    framed = struct.pack("!H", len(wire)) + wire
    with tcp_socket(ns) as s:
        for piece in (framed[:1], framed[1:5], framed[5:-1], framed[-1:]):
            s.sendall(piece)
            time.sleep(0.05)  # each piece its own segment (TCP_NODELAY)
        (length,) = struct.unpack("!H", recv_exactly(s, 2))
        reply = dns.message.from_wire(recv_exactly(s, length))
        assert str(reply.answer[0][0]) == "10.93.1.10"
        # two queries in one segment: two answers, in order
        q1, q2 = dns.message.make_query("web2", "A"), dns.message.make_query("db", "A")
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q1.to_wire(), q2.to_wire())))
        replies = []
        for _ in range(2):
            (length,) = struct.unpack("!H", recv_exactly(s, 2))
            replies.append(dns.message.from_wire(recv_exactly(s, length)))
        assert str(replies[0].answer[0][0]) == "10.93.1.11" and replies[1].rcode() == dns.rcode.NOERROR
    with tcp_socket(ns) as s:  # a truncated message over TCP: FORMERR
        cut = wire[:-3]
        s.sendall(struct.pack("!H", len(cut)) + cut)
        (length,) = struct.unpack("!H", recv_exactly(s, 2))
        assert dns.message.from_wire(recv_exactly(s, length)).rcode() == dns.rcode.FORMERR
    with tcp_socket(ns) as s:  # a length prefix and nothing else: the resolver hangs up
        s.sendall(b"\x00\x00")
        assert s.recv(10) == b""


def _agent_rss_kb(host) -> int:
    status = Path(f"/proc/{host.agent_record()['pid']}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def test_flood_is_bounded_and_counted(dnst):
    host, _ = dnst
    ns = ns_of(host, "api")
    rss_before = _agent_rss_kb(host)
    before = dns_counters(host, "api")
    local = dns.message.make_query("web", "A").to_wire()
    with udp_socket(ns) as s:
        s.setblocking(False)
        sent = 0
        for i in range(20000):
            # forwarded names wait on the dead upstream: the in-flight cap must drop the rest
            wire = local if i % 2 else dns.message.make_query(f"f{i}.example.test", "A").to_wire()
            with contextlib.suppress(BlockingIOError):
                s.send(wire)
                sent += 1
            if i % 500 == 0:  # keep the client's own receive buffer drained
                with contextlib.suppress(BlockingIOError):
                    while s.recv(4096):
                        pass
    # TCP: connections beyond the per-container cap are closed at once
    conns = [tcp_socket(ns) for _ in range(24)]
    try:
        time.sleep(0.3)
        closed = 0
        for c in conns:
            c.setblocking(False)
            try:
                closed += c.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 24 - 16, closed
    finally:
        for c in conns:
            c.close()
    reply = ask(ns, "web", timeout=3)
    assert str(reply.answer[0][0]) == "10.93.1.10"
    assert ask(ns, "web", tcp=True, timeout=3).answer
    # what the kernel dropped from the resolver's full receive buffer was never seen (bounded
    # by the buffer); what it saw is counted, and what it could not forward is "dropped"
    time.sleep(1.5)  # the agent writes its counters once a second
    after = dns_counters(host, "api")
    print(f"sent {sent}: {after['queries'] - before['queries']} seen, {after['dropped'] - before['dropped']} dropped")
    assert after["queries"] - before["queries"] > 1000
    assert after["dropped"] - before["dropped"] > 0
    assert after["forwarded"] - before["forwarded"] > 0
    assert _agent_rss_kb(host) - rss_before < 64 * 1024


def test_inspect_shows_dns_counters(dnst):
    host, _ = dnst
    before = dns_counters(host, "web2")
    ask(ns_of(host, "web2"), "web")
    ask(ns_of(host, "web2"), "nope.front")
    after = wait_until(lambda: (c := dns_counters(host, "web2"))["queries"] - before["queries"] == 2 and c,
                       timeout=5, what="counters")
    assert after["serving"] and after["forward"]
    assert after["local"] - before["local"] == 1


# ---------------------------------------------------------------------------------------------
GROWING = """\
name: dnsd
networks:
  front: {subnet: 10.94.1.0/24}
containers:
  api:
    networks: [front]
  web:
    networks: [front]
"""
WITH_LATE = GROWING + "  late:\n    networks:\n      front: {aliases: [newcomer]}\n"


def test_added_container_resolves_at_once_and_removed_stops(host):
    with world_upstream(host):
        host.up(GROWING)
        api = ns_of(host, "api")
        assert ask(api, "web").answer
        assert ask(api, "late").rcode() != dns.rcode.NOERROR
        host.up(WITH_LATE)
        returned = time.monotonic()
        late_ip = host.inspect("late")["networks"]["front"]["ipv4"]
        while True:
            reply = ask(api, "newcomer", timeout=0.5)
            if reply.answer:
                break
            assert time.monotonic() - returned < 1.0, "late did not resolve within 1 s of `up`"
        assert str(reply.answer[0][0]) == late_ip
        assert time.monotonic() - returned < 1.0
        # the newcomer itself is served at once too
        assert str(ask(ns_of(host, "late"), "api").answer[0][0]) == host.inspect("api")["networks"]["front"]["ipv4"]
        resolv_dir = agent_root(host) / "rt" / "resolv"
        assert sorted(os.listdir(resolv_dir / "dnsd")) == ["api", "late", "web"]
        cookies = {name: cookie_of(ns_of(host, name)) for name in ("api", "web", "late")}
        assert set(resolver_table(host)) == set(cookies.values())

        host.up(GROWING)
        returned = time.monotonic()
        while ask(api, "newcomer", timeout=3).rcode() != dns.rcode.NXDOMAIN:  # forwarded: the first upstream is dead (1 s)
            assert time.monotonic() - returned < 1.0, "late still resolves 1 s after `up` removed it"
        assert ask(api, "late").rcode() == dns.rcode.NXDOMAIN
        assert sorted(os.listdir(resolv_dir / "dnsd")) == ["api", "web"]
        status = json.loads((agent_root(host) / "rt" / "dns.json").read_text())
        assert set(status["containers"]) == {"dnsd/api", "dnsd/web"}
        assert set(resolver_table(host)) == {cookies["api"], cookies["web"]}  # late's entry went

        host.down("dnsd")
        assert_no_leftovers(host)


def test_down_of_one_project_stops_its_names_only(host):
    other = "name: dnso\nnetworks:\n  front: {subnet: 10.95.1.0/24}\ncontainers:\n  x:\n    networks: [front]\n  y:\n    networks: [front]\n"
    with world_upstream(host):
        host.up(GROWING)
        host.up(other)
        x = ns_of(host, "x")
        assert ask(x, "y").answer and ask(x, "web").rcode() == dns.rcode.NXDOMAIN  # another project
        host.down("dnsd")
        status = json.loads((agent_root(host) / "rt" / "dns.json").read_text())
        assert set(status["containers"]) == {"dnso/x", "dnso/y"}
        assert os.listdir(agent_root(host) / "rt" / "resolv") == ["dnso"]
        assert sorted(os.listdir(agent_root(host) / "rt" / "resolv" / "dnso")) == ["x", "y"]
        assert ask(x, "y").answer
        host.down("dnso")
        assert_no_leftovers(host)


def test_a_new_datapath_build_gets_the_table_back_at_up(host):
    """A new build of the datapath (pins replaced on upgrade) starts with an empty
    fn_resolvers: the resolver's reload after `up` writes the whole table again."""
    with world_upstream(host):
        host.up(GROWING)
        api = ns_of(host, "api")
        dp = loader.open_pinned(agent_root(host) / "rt" / "bpf")
        try:
            for cookie in Maps(dp).resolvers():
                key = ctypes.c_uint64(cookie)
                libbpf.map_delete(dp.maps["fn_resolvers"], key)
        finally:
            dp.close()
        assert resolver_table(host) == {}
        with netns(api):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with probe:  # nothing maps :53 any more: nobody answers there
            probe.settimeout(0.5)
            probe.sendto(dns.message.make_query("web", "A").to_wire(), (RESOLVER, 53))
            with pytest.raises(TimeoutError):
                probe.recvfrom(4096)
        host.up(GROWING)
        assert set(resolver_table(host)) == {cookie_of(api), cookie_of(ns_of(host, "web"))}
        assert ask(api, "web").answer
        host.down("dnsd")
        assert_no_leftovers(host)


def test_resolving_survives_up_replacing_the_datapath_build(host):
    """Other conntrack sizes make `up` compile a new build and move every port to it (as an
    upgrade of fastnet does): the new build starts with an empty fn_resolvers, and the reload
    after `up` fills it for every container, including those `up` did not change."""
    with world_upstream(host):
        host.up(GROWING)
        pins = agent_root(host) / "rt" / "bpf"
        before = {p.name for p in pins.glob("v*_*")}
        host.up(GROWING + "conntrack: {max_flows: 2048}\n")
        after = {p.name for p in pins.glob("v*_*")}
        assert len(after) == 1 and after != before, (before, after)
        assert set(resolver_table(host)) == {cookie_of(ns_of(host, n)) for n in ("api", "web")}
        assert ask(ns_of(host, "api"), "web").answer and ask(ns_of(host, "web"), "api", tcp=True).answer
        host.down("dnsd")
        assert_no_leftovers(host)


def test_a_new_build_takes_the_table_over_before_the_old_one_goes(host):
    """`up` itself copies the old build's fn_resolvers into the new build before the old pins
    (and their socket hooks) go: with the agent frozen, so that no reload can refill it, the
    new build already maps every container's :53."""
    with world_upstream(host):
        host.up(GROWING)
        table = resolver_table(host)
        assert len(table) == 2
        pins = agent_root(host) / "rt" / "bpf"
        before = {p.name for p in pins.glob("v*_*")}
        agent = host.agent_record()["pid"]
        os.kill(agent, signal.SIGSTOP)
        try:
            host.up(GROWING + "conntrack: {max_flows: 2048}\n")  # its reload waits time out
            assert {p.name for p in pins.glob("v*_*")}.isdisjoint(before), "the build was not replaced"
            assert resolver_table(host) == table
        finally:
            os.kill(agent, signal.SIGCONT)
        assert ask(ns_of(host, "api"), "web").answer
        host.down("dnsd")
        assert_no_leftovers(host)


def test_iptables_backend_containers_get_the_same_resolver(host):
    with world_upstream(host) as upstream:
        host.up(GROWING.replace("name: dnsd\n", "name: dnsi\nbackend: iptables\n"))
        web, fwd = dig(host, "api", "web", "ipt.example.test")
        assert web.answers == [host.inspect("web")["networks"]["front"]["ipv4"]]
        assert fwd.answers == [ANSWER] and upstream.asked["ipt.example.test."] == 1
        # the reference backend keeps Docker's way: an nftables chain in the container
        api = ns_of(host, "api")
        assert NFT_TABLE in nft_tables(api)
        assert cookie_of(api) not in resolver_table(host)
        assert str(ask(api, "web").answer[0][0]) == host.inspect("web")["networks"]["front"]["ipv4"]
        host.down("dnsi")
        assert_no_leftovers(host)


MODES = """\
name: dnsm
networks:
  front: {subnet: 10.96.1.0/24}
containers:
  web:
    networks:
      front: {aliases: [www]}
  api:
    networks: [front]
  side:
    network_mode: "container:api"
  h:
    network_mode: host
  n:
    network_mode: none
"""


def test_network_modes(host):
    with world_upstream(host) as upstream:
        host.up(MODES)
        web_ip = host.inspect("web")["networks"]["front"]["ipv4"]
        # container:api shares api's namespace, so api's resolv.conf and resolver
        assert one(host, "side", "www").answers == [web_ip]
        assert host.exec("side", "cat", "/etc/resolv.conf").stdout == host.exec("api", "cat", "/etc/resolv.conf").stdout
        # host mode keeps the host's resolv.conf (and so the host's resolvers)
        assert host.exec("h", "cat", "/etc/resolv.conf").stdout.startswith(f"nameserver {DEAD_UPSTREAM}")
        # none: its own 127.0.0.11 that resolves nothing and forwards nothing
        name, outside = dig(host, "n", "web", "none.example.test")
        assert (name.status, outside.status) == ("NXDOMAIN", "SERVFAIL")
        assert "none.example.test." not in upstream.asked
        # names of containers without an address are NXDOMAIN to the others
        assert [r.status for r in dig(host, "web", "side", "h", "n")] == ["NXDOMAIN"] * 3
        host.down("dnsm")
        assert_no_leftovers(host)
