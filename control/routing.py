"""The host's routing as fastnet's eBPF datapath asks it (bpf/lib/route.h).

The FIB device. New flows are routed with bpf_fib_lookup, which the kernel answers only for
a device that forwards (net.ipv4.conf.DEV.forwarding; BPF_FIB_LKUP_RET_FWD_DISABLED
otherwise). No device fastnet serves may forward: the container ports keep forwarding=0 (so
that without fastnet's programs nothing a container sends is routed) and the uplink must not
route for the outside. So each host has one device of fastnet's own, `fastnet-fib`: a
persistent tun device that stays down, has no address, receives nothing (forwarding=1 lets
nothing through it) and only names the "arriving" device of every lookup
(fn_host_config.fib_ifindex). Writing net.ipv4.ip_forward resets every device's forwarding:
the agent's host watch (control/hostwatch.py) follows the netconf events and sets it again.
Without the device (it could not be made, or a lookup is refused) the datapath falls back to
the host's address table and the uplink, as before it routed by the FIB.

Route devices. A SNAT flow leaves by whatever device the host routes its destination through
(a VPN, a second NIC), and its replies come back there: each device with an IPv4 address,
but the loopback, the uplink, ipvlan parents and fastnet's own links, carries fn_from_route.
The agent's host watch attaches it to a device that appears or gets an address.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .spec import LINK_ALIAS_PREFIX

FIB_DEVICE = "fastnet-fib"
FIB_ALIAS = LINK_ALIAS_PREFIX + "-host/fib"  # "-" never starts a project name

# linux/if_tun.h
TUNSETIFF, TUNSETPERSIST = 0x400454CA, 0x400454CB
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def _forwarding(name: str) -> Path:
    return Path("/proc/sys/net/ipv4/conf") / name / "forwarding"


def _make_tun(name: str) -> None:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    finally:
        os.close(fd)


def fib_device(ipr: IPRoute) -> int:
    """The FIB device's ifindex, made (and its forwarding set) if needed; 0 when a device of
    that name is not fastnet's or none can be made (the datapath then falls back)."""
    found = ipr.link_lookup(ifname=FIB_DEVICE)
    if not found:
        try:
            _make_tun(FIB_DEVICE)
        except OSError:
            return 0
        found = ipr.link_lookup(ifname=FIB_DEVICE)
        if not found:
            return 0
        # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
        ipr.link("set", index=found[0], ifalias=FIB_ALIAS)
    link = ipr.get_links(found[0])[0]
    if (link.get_attr("IFLA_IFALIAS") or "") != FIB_ALIAS:
        return 0
    path = _forwarding(FIB_DEVICE)
    if path.read_text().strip() != "1":
        path.write_text("1")
    return found[0]


def remove_fib_device(ipr: IPRoute) -> None:
    """Delete the FIB device (only fastnet's own: the alias says so)."""
    for index in ipr.link_lookup(ifname=FIB_DEVICE):
        if (ipr.get_links(index)[0].get_attr("IFLA_IFALIAS") or "") != FIB_ALIAS:
            continue
        try:
            ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code not in (errno.ENODEV, errno.ENOENT):
                raise


IFF_LOOPBACK = 0x8


def route_devices(ipr: IPRoute, skip: set[str]) -> dict[str, int]:
    """{name: ifindex} of the devices a SNAT flow may leave by besides the uplink: every link
    with an IPv4 address but the loopback, fastnet's own links (container ports, bridges,
    taggers: the alias says so) and the names in `skip` (the uplink, ipvlan parents)."""
    with_address = {a["index"] for a in ipr.get_addr(family=socket.AF_INET)}
    found = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        alias = link.get_attr("IFLA_IFALIAS") or ""
        if (link["index"] in with_address and not link["flags"] & IFF_LOOPBACK
                and not alias.startswith(LINK_ALIAS_PREFIX) and name not in skip):
            found[name] = link["index"]
    return found
