"""Fixtures of the BPF unit tests: one test build of the datapath per session, and maps reset
to the standard topology (topology.py) before every test."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from scapy.packet import Packet

from fastnet.datapath.maps import Maps
from fastnet.datapath.testrun import RunResult, TestDatapath

from topology import NETWORKS, PORTS

PROG = "fn_from_container"


@pytest.fixture(scope="session")
def test_datapath():
    """The FN_TEST build (redirects are recorded, not performed), compiled once."""
    tdp = TestDatapath()
    yield tdp
    tdp.close()


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
    maps = Maps(test_datapath.dp)
    maps.sync(NETWORKS, PORTS)
    maps.reset_counters()
    return Bridge(test_datapath, maps)
