"""Facts about the host read from the kernel, for the datapath's host configuration."""
from __future__ import annotations

import socket
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # callers pass their socket; pyroute2 costs 0.1 s to import, which the agent's restart must not pay
    from pyroute2 import IPRoute

SO_NETNS_COOKIE = 71  # asm-generic/socket.h; Python 3.11 has no constant for it
LOCAL_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def uplink(ipr: IPRoute, name: str | None) -> tuple[int, IPv4Address | None]:
    """(ifindex, first IPv4 address) of the uplink; (0, None) when there is none."""
    if not name:
        return 0, None
    found = ipr.link_lookup(ifname=name)
    if not found:
        return 0, None
    for addr in ipr.get_addr(family=socket.AF_INET, index=found[0]):
        return found[0], IPv4Address(addr.get_attr("IFA_ADDRESS"))
    return found[0], None


def link_mtu(ipr: IPRoute, ifindex: int) -> int:
    """A link's MTU; 0 when there is no such link."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        found = ipr.get_links(ifindex) if ifindex else []
    except NetlinkError:
        return 0
    return (found[0].get_attr("IFLA_MTU") or 0) if found else 0


IFF_UP, IFF_LOWER_UP = 0x1, 0x10000


def uplink_status(ipr: IPRoute, name: str) -> dict:
    """What `ps` says of an uplink: "missing", "down" (administratively or no carrier) or
    "up", and its IPv4 addresses (SNAT needs one)."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        return {"state": "missing", "ipv4": []}
    link = ipr.get_links(found[0])[0]
    up = link["flags"] & IFF_UP and link["flags"] & IFF_LOWER_UP
    addrs = [a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET, index=found[0])]
    return {"state": "up" if up else "down", "ipv4": addrs}


def host_addresses(ipr: IPRoute) -> list[tuple[IPv4Address, bool]]:
    """Every IPv4 address of the host, with whether it is a loopback address."""
    found = {IPv4Address("127.0.0.1"): True}
    for addr in ipr.get_addr(family=socket.AF_INET):
        a = IPv4Address(addr.get_attr("IFA_LOCAL") or addr.get_attr("IFA_ADDRESS"))
        found[a] = a.is_loopback
    return sorted(found.items())


def local_port_range() -> tuple[int, int]:
    """The host's ephemeral ports (net.ipv4.ip_local_port_range of this network namespace): the
    kernel picks the source ports of the host's own connections from them."""
    lo, hi = (int(x) for x in LOCAL_PORT_RANGE.read_text().split())
    return lo, hi


def snat_port_range() -> tuple[int, int]:
    """The larger stretch of ports outside the host's ephemeral range (never below 1024), so
    translated flows never collide with the host's own outgoing connections."""
    lo, hi = local_port_range()
    below = (1024, lo - 1)
    above = (hi + 1, 65535)
    return max((r for r in (below, above) if r[1] >= r[0]), key=lambda r: r[1] - r[0], default=(1024, 65535))


def netns_cookie() -> int:
    """The cookie of this thread's network namespace (never reused, unlike its inode)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return socket_netns_cookie(s)


def socket_netns_cookie(sock: socket.socket) -> int:
    """The cookie of the network namespace `sock` was made in (what bpf_get_netns_cookie()
    returns for that namespace's sockets)."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)
