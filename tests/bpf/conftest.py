"""Fixtures of the BPF unit tests: one test build of the datapath per session, and maps reset
before every test — to the standard topology without an uplink (`bridge`), or to the NAT
topology with the host's uplink and published ports (`nat`); see topology.py. Conntrack, the
counters and the programs' clock are reset too, so no test sees another's flows."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.packet import Packet

from fastnet.datapath.maps import CtRecord, HostRecord, Maps, PortRecord
from fastnet.datapath.testrun import RunResult, TestDatapath

from topology import HOST, NAT_NETWORKS, NAT_PORTS, NETWORKS, NO_UPLINK, PORTS, ROUTES, SERVICES, UPLINK_IFINDEX

PROG = "fn_from_container"
UPLINK_PROG = "fn_from_uplink"
ROUTE_PROG = "fn_from_route"
NSEC = 1_000_000_000


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
    maps.reset_counters()
    datapath.now_ns = TestDatapath.now_ns
    datapath.set_routes(routes)
    datapath.mtus = {}
    return maps


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
