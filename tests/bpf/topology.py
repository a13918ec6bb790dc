"""The standard topology every tests/bpf test starts from (drawn at the top of test_bridge.py).

conftest.py loads it into the maps before each test; the tests import the records to build
frames and expectations, so each address is written down once, here.
"""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from fastnet.control.spec import mac_for
from fastnet.datapath.maps import NetworkRecord, PortRecord


def network(net_id: int, subnet: str) -> NetworkRecord:
    net = IPv4Network(subnet)
    gateway = net.network_address + 1
    return NetworkRecord(net_id, net, gateway, mac_for(gateway))


def port(ifindex: int, ipv4: str, net_id: int) -> PortRecord:
    address = IPv4Address(ipv4)
    return PortRecord(ifindex, mac_for(address), address, net_id)


FRONT = network(1, "10.0.1.0/24")
BACK = network(2, "10.0.2.0/24")

A = port(101, "10.0.1.2", FRONT.net_id)
B = port(102, "10.0.1.3", FRONT.net_id)
C = port(103, "10.0.1.4", FRONT.net_id)
D = port(201, "10.0.2.2", BACK.net_id)
# A port whose network 3 has no fn_networks entry (what a half-applied sync would leave).
E = port(301, "10.0.3.2", 3)

NETWORKS = [FRONT, BACK]
PORTS = [A, B, C, D, E]

UNKNOWN_IFINDEX = 999
