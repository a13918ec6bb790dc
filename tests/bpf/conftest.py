"""Fixtures of the BPF unit tests: one test build of the datapath per session, and maps reset
before every test — to the standard topology without an uplink (`bridge`), or to the NAT
topology with the host's uplink and published ports (`nat`); see topology.py. Conntrack, the
counters and the programs' clock are reset too, so no test sees another's flows.

Every test runs in a network namespace of its own (`private_netns`): a test run's packet is in
the namespace of the thread that runs it, and the NAT path asks the kernel which of that
namespace's sockets hold a port (bpf_sk_lookup_*). There the only sockets are those a test opens
on purpose (`host_sockets`), as the host's."""
from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from dataclasses import dataclass

import pytest
from scapy.packet import Packet

from fastnet.datapath import abi, libbpf
from fastnet.datapath.maps import CtRecord, HostRecord, Maps, PortRecord
from fastnet.datapath.testrun import RunResult, TestDatapath

from topology import HOST, NAT_NETWORKS, NAT_PORTS, NETWORKS, NO_UPLINK, PORTS, ROUTES, SERVICES, UPLINK_IFINDEX

PROG = "fn_from_container"
UPLINK_PROG = "fn_from_uplink"
ROUTE_PROG = "fn_from_route"
NSEC = 1_000_000_000


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _new_netns() -> int:
    """A file descriptor of a new network namespace, made by a thread of its own (unshare moves
    only the calling thread) and alive while the descriptor is open: nothing is named in
    /run/netns, so nothing can be left behind."""
    found: list = []

    def make():
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            found.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            found.append(exc)

    t = threading.Thread(target=make)
    t.start()
    t.join()
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


@pytest.fixture(scope="session")
def netns_fd():
    fd = _new_netns()
    yield fd
    os.close(fd)


@pytest.fixture(autouse=True)
def private_netns(netns_fd):
    """The test's thread in the session's own network namespace, then back."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(netns_fd)
        try:
            yield
        finally:
            _setns(saved)
    finally:
        os.close(saved)


@contextlib.contextmanager
def host_sockets(held: tuple[tuple[int, int], ...]):
    """Sockets of "the host" (the test's namespace) holding ports: (IPPROTO_TCP, port) listens
    on 0.0.0.0:port, (IPPROTO_UDP, port) is bound to it."""
    socks = []
    try:
        for proto, port in held:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == socket.IPPROTO_TCP else socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("0.0.0.0", port))
            if proto == socket.IPPROTO_TCP:
                s.listen(1)
        yield
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def test_datapath():
    """The FN_TEST build (redirects are recorded, not performed), compiled once."""
    tdp = TestDatapath()
    yield tdp
    tdp.close()


def reset(datapath: TestDatapath, networks, ports, host: HostRecord, services, routes=ROUTES) -> Maps:
    """Every map back to the given configuration, no flows, zero counters, the start time, the
    host's routing table (topology.ROUTES) and every device at MTU 1500."""
    maps = Maps(datapath.dp)
    maps.sync(networks, ports)
    maps.sync_host(host)
    maps.sync_services(services)
    maps.conntrack_flush()
    zero_budgets(maps)
    maps.reset_counters()
    datapath.now_ns = TestDatapath.now_ns
    datapath.set_routes(routes)
    datapath.mtus = {}
    return maps


def zero_budgets(maps: Maps) -> None:
    """fn_ct_budget back to zero. The flush above releases what every flow it removes holds;
    this also clears what a test left counted on purpose (tests/bpf/test_conntrack.py checks
    the counts against the table where it matters)."""
    if not any(u.flows or u.new_flows for u in maps.conntrack_usage().values()):
        return  # an owner's count moves only with its total's
    fd = maps.dp.maps["fn_ct_budget"]
    for slot, value in libbpf.map_lookup_batch(fd, ctypes.c_uint32, abi.CtCount):
        if value.flows or value.new_flows:
            libbpf.map_update(fd, slot, abi.CtCount())


@dataclass
class Bridge:
    """fn_from_container of the test build, with its maps."""

    datapath: TestDatapath
    maps: Maps

    def send(self, frame: Packet | bytes, ingress_ifindex: int) -> RunResult:
        return self.datapath.run(PROG, bytes(frame), ingress_ifindex)

    def counters(self) -> dict[str, tuple[int, int]]:
        """Non-zero counters of fn_from_container: {short name: (packets, bytes)}."""
        return self.maps.counters()[PROG]


@pytest.fixture
def bridge(test_datapath) -> Bridge:
    return Bridge(test_datapath, reset(test_datapath, NETWORKS, PORTS, NO_UPLINK, []))


@dataclass
class Nat:
    """The NAT's TC programs of the test build on the NAT topology: packets from a container's
    port (fn_from_container), from the uplink (fn_from_uplink) and from another device the host
    routes through (fn_from_route), sharing conntrack."""

    datapath: TestDatapath
    maps: Maps

    def configure(self, host: HostRecord = HOST, services=SERVICES) -> None:
        self.maps.sync_host(host)
        self.maps.sync_services(services)

    def from_container(self, port: PortRecord, frame: Packet | bytes, **shape) -> RunResult:
        """shape: linear=, vlan= of TestDatapath.run()."""
        return self.datapath.run(PROG, bytes(frame), port.ifindex, **shape)

    def from_uplink(self, frame: Packet | bytes, **shape) -> RunResult:
        return self.datapath.run(UPLINK_PROG, bytes(frame), UPLINK_IFINDEX, **shape)

    def from_route(self, frame: Packet | bytes, ifindex: int, **shape) -> RunResult:
        """fn_from_route on another device of the host (topology.VPN_IFINDEX)."""
        return self.datapath.run(ROUTE_PROG, bytes(frame), ifindex, **shape)

    def counters(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Non-zero counters of the NAT's TC programs: {(program, short name): (packets, bytes)}."""
        table = self.maps.counters()
        return {(prog, name): v for prog in (PROG, UPLINK_PROG, ROUTE_PROG) for name, v in table[prog].items()}

    def conntrack(self) -> list[CtRecord]:
        return self.maps.conntrack()

    @property
    def now(self) -> int:
        return self.datapath.now_ns

    def advance(self, seconds: float) -> int:
        """Moves the programs' clock forward; returns the new time (ns)."""
        self.datapath.now_ns += int(seconds * NSEC)
        return self.datapath.now_ns

    def expire(self) -> int:
        """The agent's garbage collection at the current time."""
        return self.maps.conntrack_expire(self.now)


@pytest.fixture
def nat(test_datapath) -> Nat:
    return Nat(test_datapath, reset(test_datapath, NAT_NETWORKS, NAT_PORTS, HOST, SERVICES))
