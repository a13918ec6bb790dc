"""The standard topology every tests/bpf test starts from (drawn at the top of test_bridge.py),
and what the NAT tests add to it: an internal network, the host's uplink and addresses, the
outside, and published ports (drawn at the top of test_nat.py).

conftest.py loads it into the maps before each test; the tests import the records to build
frames and expectations, so each address is written down once, here.
"""
from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from socket import IPPROTO_TCP, IPPROTO_UDP

from fastnet.control.spec import mac_for
from fastnet.datapath.maps import CtBudgets, HostRecord, NetworkRecord, PortRecord, ServiceRecord, default_timeouts
from fastnet.datapath.testrun import FIB_BLACKHOLE, FIB_NOT_FWDED, FIB_PROHIBIT, FIB_UNREACHABLE, Route


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


# ---- the host and the outside (test_nat.py) -------------------------------------------------
#
# The NAT tests add an internal network and the host's uplink to the standard topology.

INTERNAL = replace(network(4, "10.0.4.0/24"), internal=True)
F = port(401, "10.0.4.2", INTERNAL.net_id)

NAT_NETWORKS = [*NETWORKS, INTERNAL]
NAT_PORTS = [*PORTS, F]


def gateway_of(p: PortRecord) -> NetworkRecord:
    return next(n for n in NAT_NETWORKS if n.net_id == p.net_id)


UPLINK_IFINDEX = 900
UPLINK_MAC = "02:00:00:00:09:00"  # the host's uplink
ROUTER_MAC = "02:00:00:00:09:01"  # the next hop outside
UPLINK_IP = IPv4Address("198.51.100.1")
SECOND_IP = IPv4Address("198.51.100.2")  # a second address of the host, on the uplink
LOOPBACK = IPv4Address("127.0.0.1")
SERVER = IPv4Address("203.0.113.10")  # somewhere outside
OTHER_SERVER = IPv4Address("203.0.113.11")
CLIENT = IPv4Address("192.0.2.50")  # an outside client of published ports
NOT_HOST = IPv4Address("198.51.100.99")  # on the uplink's subnet, not the host's

# A second way out: the host routes VPN_NET through a tunnel device (a VPN, or a second NIC).
VPN_IFINDEX = 950
VPN_IP = IPv4Address("10.8.0.2")  # the host's address on it
VPN_NET = IPv4Network("203.0.113.128/25")
VPN_SERVER = IPv4Address("203.0.113.200")
BLACKHOLE_NET = IPv4Network("203.0.113.64/26")  # routes the host discards ...
PROHIBIT_NET = IPv4Network("203.0.113.32/27")  # ... or refuses

SNAT_PORTS = (1024, 32767)
HOST_ADDRESSES = ((UPLINK_IP, False), (SECOND_IP, False), (LOOPBACK, True), (FRONT.gateway, False),
                  (BACK.gateway, False), (INTERNAL.gateway, False), (VPN_IP, False))
UPLINK_NET = IPv4Network("198.51.100.0/24")
UPLINK_BROADCAST = UPLINK_NET.broadcast_address
FIB_IFINDEX = 990  # fastnet's FIB device (control/routing.py): lookups are made as if arriving on it


def host_routes(networks: list[NetworkRecord] = NAT_NETWORKS, ports: list[PortRecord] = NAT_PORTS) -> list[Route]:
    """The host's routing table as the kernel would answer bpf_fib_lookup (fn_test_fib): the
    default route and the uplink's subnet out of the uplink, VPN_NET through the VPN device, a
    blackhole and a prohibit route; local addresses and broadcasts (not forwarded); fastnet's
    unreachable route per subnet and a /32 per container."""
    routes = [
        Route(IPv4Network("0.0.0.0/0"), ifindex=UPLINK_IFINDEX, src=UPLINK_IP),
        Route(UPLINK_NET, ifindex=UPLINK_IFINDEX, src=UPLINK_IP),
        Route(VPN_NET, ifindex=VPN_IFINDEX, src=VPN_IP),
        Route(BLACKHOLE_NET, FIB_BLACKHOLE),
        Route(PROHIBIT_NET, FIB_PROHIBIT),
        Route(IPv4Network(f"{UPLINK_BROADCAST}/32"), FIB_NOT_FWDED),
        Route(IPv4Network("127.0.0.0/8"), FIB_NOT_FWDED),
        *(Route(IPv4Network(f"{a}/32"), FIB_NOT_FWDED) for a, _ in HOST_ADDRESSES),
    ]
    for n in networks:
        routes.append(Route(n.subnet, FIB_UNREACHABLE))
    for p in ports:
        net = next((n for n in networks if n.net_id == p.net_id), None)
        if net is not None:
            routes.append(Route(IPv4Network(f"{p.ipv4}/32"), ifindex=p.ifindex, src=net.gateway))
    return routes


ROUTES = host_routes()


def host(snat_ports: tuple[int, int] = SNAT_PORTS, uplink_is_parent: bool = False, budgets: CtBudgets | None = None,
         fib_ifindex: int = FIB_IFINDEX, uplink_mtu: int = 1500, **timeouts: int) -> HostRecord:
    """The host with its uplink; keyword arguments override conntrack timeouts (seconds)."""
    return HostRecord(UPLINK_IFINDEX, UPLINK_IP, snat_ports, 0, HOST_ADDRESSES, {**default_timeouts(), **timeouts},
                      uplink_is_parent, budgets, fib_ifindex, uplink_mtu)


HOST = host()
# What the bridge tests run with: no uplink, so nothing is translated.
NO_UPLINK = HostRecord(0, None, SNAT_PORTS, 0, ())


def publish(proto: int, host_addr, first: int, last: int, backend: PortRecord, backend_first: int,
            local_only: bool = False) -> ServiceRecord:
    net = gateway_of(backend)
    return ServiceRecord(proto, None if host_addr is None else int(host_addr), first, last, int(backend.ipv4),
                         backend_first, backend.ifindex, backend.mac, int(net.gateway), net.gateway_mac, local_only)


WEB = publish(IPPROTO_TCP, None, 7000, 7099, D, 8000)  # every host address, 7000-7099 -> D:8000-8099
DNS = publish(IPPROTO_UDP, UPLINK_IP, 5353, 5353, B, 53)  # the uplink address only -> B:53
ADMIN = publish(IPPROTO_TCP, LOOPBACK, 9000, 9000, C, 9000, local_only=True)  # host processes only
SERVICES = (WEB, DNS, ADMIN)
