"""Published host ports are reserved, as Docker reserves them by binding them on the host:
a port a host process holds stops `up` with one line naming the port and the process, and
once `up` has published a port, a host process's bind() to it fails.

   project res (eBPF backend; the module's host)
   front 10.93.1.0/24 (gateway 10.93.1.1)
     web   publish 8080:80              tcp, every host address
                   127.0.0.1:9443:443   tcp, loopback only
                   198.51.100.3:9000:9000  tcp, one host address
                   7000-7009:7000-7009  tcp, a range
                   8053:53/udp          udp, every host address

   HOST  lo 127.0.0.1 ::1, up0 198.51.100.1/24 + 198.51.100.3/24 ==== veth ==== WORLD up0 198.51.100.2/24
         host processes bind() here: the bind hooks (cgroup/bind4, bind6 on the root cgroup)
         refuse a published (address, port, protocol) with EADDRINUSE and count it
         (fn_sock: drop_bind_published); the container's own namespace is not the host's.

   The preflight tests and the iptables backend's each get a fresh host: a listener in HOST
   (nc, or a socket of this test process) before `up`; the iptables backend holds published
   ports with the agent's sockets, as dockerd does.
"""
from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess

import pytest
from harness import (
    HOST_UPLINK_IP,
    UPLINK,
    assert_no_leftovers,
    containers,
    netns,
    one_line_error,
    tcp_echo,
    wait_until,
    EchoServer,
)

EXTRA_IP = "198.51.100.3"

RES = """\
name: res
networks:
  front: {subnet: 10.93.1.0/24}
containers:
  web:
    networks: [front]
    publish:
      - "8080:80"
      - "127.0.0.1:9443:443"
      - "198.51.100.3:9000:9000"
      - "7000-7009:7000-7009"
      - "8053:53/udp"
"""


def one_port(publish: str, backend: str = "ebpf") -> str:
    return f"""\
name: one
backend: {backend}
networks:
  front: {{subnet: 10.93.2.0/24}}
containers:
  web:
    networks: [front]
    publish: ["{publish}"]
"""


def bind(ns_path: str, proto: str, addr: str, port: int, v6only: bool = False, reuse: bool = False) -> str:
    """bind() a new socket of ns_path to (addr, port): "ok", or the errno's name."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with netns(ns_path):
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    with s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind((addr, port))
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))
        return "ok"


@contextlib.contextmanager
def held(ns_path: str, proto: str, addr: str, port: int, v6only: bool = False):
    """A socket of this test process holding (addr, port) in ns_path: listening (TCP) or bound
    (UDP)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with netns(ns_path):
        s = socket.socket(family, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    with s:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        s.bind((addr, port))
        if proto == "tcp":
            s.listen()
        yield s


@contextlib.contextmanager
def nc_listening(host, port: int):
    """`nc -l` in HOST (a process of its own, named nc, with ip netns exec's pid) on 0.0.0.0:port."""
    proc = subprocess.Popen(["ip", "netns", "exec", host.name, "nc", "-4", "-k", "-l", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: f":{port} " in host.sh("ss", "-Hltn").stdout, what=f"nc listening on {port}")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def my_name() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


# -- preflight: a port a host process holds --------------------------------------------------------
@pytest.mark.parametrize("backend", ["ebpf", "iptables"])
def test_a_host_tcp_listener_stops_up_naming_port_and_process(host, backend):
    with nc_listening(host, 2222) as nc:
        cp = host.up(one_port("2222:22", backend), check=False)
        assert cp.returncode == 1, cp.stderr
        err = one_line_error(cp)
        assert err == (f"fastnet: error: up one: containers.web.publish: 2222/tcp: port 2222 is in use on this host "
                       f"by nc (pid {nc.pid}, listening on 0.0.0.0:2222)"), err
    assert_no_leftovers(host)  # nc gone: it is a process in HOST


def test_a_host_udp_socket_stops_up_naming_port_and_process(host):
    """A bound UDP socket on one address conflicts with a range published on every address;
    the process is this test's own."""
    with held(host.netns_path, "udp", "127.0.0.1", 5354):
        cp = host.up(one_port("5350-5359:5350-5359/udp"), check=False)
        assert cp.returncode == 1, cp.stderr
        err = one_line_error(cp)
        assert err == (f"fastnet: error: up one: containers.web.publish: 5350-5359/udp: port 5354 is in use on this host "
                       f"by {my_name()} (pid {os.getpid()}, bound to 127.0.0.1:5354)"), err
        assert_no_leftovers(host)


# (host socket: proto, address, IPV6_V6ONLY) x publish entry -> conflict? As Linux's bind
# would decide between that socket and one bound for the published port.
OVERLAP = [
    pytest.param(("tcp", "0.0.0.0", False), "127.0.0.1:2300:80", True, id="wildcard-vs-loopback"),
    pytest.param(("tcp", "127.0.0.1", False), "2300:80", True, id="loopback-vs-every-address"),
    pytest.param(("tcp", "127.0.0.1", False), "127.0.0.1:2300:80", True, id="same-address"),
    pytest.param(("tcp", "127.0.0.1", False), f"{HOST_UPLINK_IP}:2300:80", False, id="other-address"),
    pytest.param(("tcp", "127.0.0.1", False), "2300:80/udp", False, id="other-protocol"),
    pytest.param(("tcp", "::", False), "2300:80", True, id="dual-stack-wildcard"),
    pytest.param(("tcp", "::", True), "2300:80", False, id="ipv6-only-wildcard"),
    pytest.param(("udp", "::ffff:127.0.0.1", False), "127.0.0.1:2300:80/udp", True, id="ipv4-mapped"),
    pytest.param(("tcp", "::1", False), "2300:80", False, id="ipv6-loopback"),
]


@pytest.mark.parametrize("sock, publish, conflict", OVERLAP)
def test_which_host_sockets_conflict(host, sock, publish, conflict):
    proto, addr, v6only = sock
    with held(host.netns_path, proto, addr, 2300, v6only):
        cp = host.up(one_port(publish), check=False)
        if conflict:
            shown = f"[{addr}]" if ":" in addr else addr
            assert f": port 2300 is in use on this host by {my_name()} (pid {os.getpid()}, " in one_line_error(cp)
            assert f" {shown}:2300)" in cp.stderr
            assert_no_leftovers(host)
        else:
            assert cp.returncode == 0, cp.stderr
            host.down(cp.path)


def test_a_projects_own_ports_are_no_conflict_when_up_runs_again(host):
    """A host process bound next to a port published on one address (allowed) does not stop
    the next `up` of that project, nor a change that keeps the port on that address."""
    cp = host.up(one_port("127.0.0.1:2400:80"))
    with held(host.netns_path, "tcp", HOST_UPLINK_IP, 2400):
        host.up(cp.path)
        host.up(one_port("127.0.0.1:2400-2401:80-81"))
    host.down("one")


def test_another_projects_port_is_refused_as_that_projects_not_as_a_host_process(host):
    """The agent's sockets holding an iptables project's port are no host process: a second
    project publishing it is told whose port it is."""
    first = host.up(one_port("2700:80", "iptables"))
    second = one_port("2700-2701:80-81").replace("name: one", "name: two").replace("10.93.2.", "10.93.3.")
    err = one_line_error(host.up(second, check=False))
    assert err.endswith(": containers.web.publish: 2700-2701/tcp overlaps 2700/tcp already published by one/web"), err
    host.down(first.path)


# -- after up: the bind hooks --------------------------------------------------------------------
@pytest.fixture(scope="module")
def res(module_host):
    module_host.sh("ip", "addr", "add", f"{EXTRA_IP}/24", "dev", UPLINK)
    module_host.up(RES)
    return module_host, containers(module_host, "res")


REFUSED = "EADDRINUSE"


def refusals(host) -> int:
    return host.counters("web", "fn_sock")["drop_bind_published"]


def test_a_port_published_on_every_address_refuses_every_host_bind(res):
    host, _ = res
    before = refusals(host)
    addresses = ["0.0.0.0", HOST_UPLINK_IP, "127.0.0.1", "127.0.0.2", "::", "::ffff:127.0.0.1", "::ffff:0.0.0.0"]
    assert {a: bind(host.netns_path, "tcp", a, 8080) for a in addresses} == dict.fromkeys(addresses, REFUSED)
    # nor by asking to share the port, nor with an IPv6-only wildcard (Docker's [::] socket refuses it too)
    assert bind(host.netns_path, "tcp", "0.0.0.0", 8080, reuse=True) == REFUSED
    assert bind(host.netns_path, "tcp", "::", 8080, v6only=True) == REFUSED
    assert refusals(host) - before == len(addresses) + 2


def test_other_protocols_ports_and_ipv6_addresses_bind(res):
    host, _ = res
    before = refusals(host)
    assert bind(host.netns_path, "udp", "0.0.0.0", 8080) == "ok"  # 8080 is published for TCP only
    assert bind(host.netns_path, "tcp", "0.0.0.0", 8053) == "ok"  # 8053 for UDP only
    assert bind(host.netns_path, "udp", "0.0.0.0", 8053) == REFUSED
    for port in (8079, 8081, 0):
        assert bind(host.netns_path, "tcp", "0.0.0.0", port) == "ok", port
    assert bind(host.netns_path, "tcp", "::1", 8080) == "ok"  # fastnet publishes nothing over IPv6
    assert refusals(host) - before == 1


def test_a_container_binds_the_published_port_in_its_own_namespace(res):
    host, c = res
    before = refusals(host)
    for addr in ("0.0.0.0", "127.0.0.1", "::"):
        assert bind(c["web"].netns, "tcp", addr, 8080) == "ok", addr
    with EchoServer(c["web"].netns, "tcp", port=80):  # and the published port still leads there
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8080) == "ok"
    assert refusals(host) == before


def test_a_port_published_on_one_address_refuses_that_address_and_the_wildcard(res):
    host, _ = res
    expected = {
        # 127.0.0.1:9443
        ("127.0.0.1", 9443): REFUSED, ("0.0.0.0", 9443): REFUSED, ("::", 9443): REFUSED,
        ("::ffff:127.0.0.1", 9443): REFUSED, (HOST_UPLINK_IP, 9443): "ok", (EXTRA_IP, 9443): "ok",
        ("127.0.0.2", 9443): "ok",
        # 198.51.100.3:9000
        (EXTRA_IP, 9000): REFUSED, ("0.0.0.0", 9000): REFUSED, (HOST_UPLINK_IP, 9000): "ok", ("127.0.0.1", 9000): "ok",
    }
    before = refusals(host)
    assert {k: bind(host.netns_path, "tcp", *k) for k in expected} == expected
    assert refusals(host) - before == list(expected.values()).count(REFUSED)


def test_a_published_range_refuses_each_of_its_ports(res):
    host, _ = res
    got = {port: bind(host.netns_path, "tcp", "0.0.0.0", port) for port in range(6999, 7011)}
    assert got == {6999: "ok", **dict.fromkeys(range(7000, 7010), REFUSED), 7010: "ok"}


def test_after_down_the_port_binds_again(host):
    cp = host.up(one_port("2500:80"))
    assert bind(host.netns_path, "tcp", "0.0.0.0", 2500) == REFUSED
    host.down(cp.path)
    assert bind(host.netns_path, "tcp", "0.0.0.0", 2500) == "ok"


# -- the iptables backend: the agent holds the ports -------------------------------------------
def test_iptables_backend_holds_published_ports_with_the_agents_sockets(host):
    """As dockerd does: the agent binds each published port (TCP listening, with SO_REUSEADDR;
    UDP without), so a host process's bind fails in the kernel, with the same errno as under
    the eBPF backend. The difference (README: the reference backend): an IPv6-only [::] socket
    does bind there, as Docker (which holds no IPv6 socket for an IPv4-only container) lets it,
    where the eBPF bind hook, which cannot see IPV6_V6ONLY, refuses every [::] bind."""
    yaml = one_port("2600-2601:80-81", "iptables").replace('"]', '", "127.0.0.1:2610:80/udp"]')
    cp = host.up(yaml)
    agent = host.agent_record()["pid"]
    assert bind(host.netns_path, "tcp", "0.0.0.0", 2600) == REFUSED
    assert bind(host.netns_path, "tcp", HOST_UPLINK_IP, 2601, reuse=True) == REFUSED
    assert bind(host.netns_path, "tcp", "::", 2600) == REFUSED  # dual-stack
    assert bind(host.netns_path, "tcp", "::", 2600, v6only=True) == "ok"  # the documented difference
    assert bind(host.netns_path, "udp", "0.0.0.0", 2610) == REFUSED
    assert bind(host.netns_path, "udp", "127.0.0.1", 2610, reuse=True) == REFUSED
    assert bind(host.netns_path, "udp", HOST_UPLINK_IP, 2610) == "ok"  # another address
    held_by = host.sh("ss", "-Hltnup", "sport", ">=", ":2600", "and", "sport", "<=", ":2610").stdout
    assert held_by.count(f"pid={agent},") == 3, held_by
    host.up(cp.path)  # its own reservations do not stop the next `up`
    host.down(cp.path)
    assert bind(host.netns_path, "tcp", "0.0.0.0", 2600) == "ok"
    assert bind(host.netns_path, "udp", "0.0.0.0", 2610) == "ok"
