"""Container interfaces: the veth pair and its container side, the same for every backend."""
from __future__ import annotations

import errno
import os
import socket
import zlib
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..datapath import nlbatch
from . import sandbox
from .spec import InterfaceSpec, link_alias

# Route protocol number tagging the routes fastnet installs (rtnetlink's rtm_protocol).
RTPROT_FASTNET = 250
# lo is the first device of every network namespace (include/net/flow.h: LOOPBACK_IFINDEX);
# knowing it saves a lookup per container.
LOOPBACK_IFINDEX = 1


def route_metric(project: str) -> int:
    """A project's network routes carry a metric derived from its name, so that they can be
    found by project without any state file."""
    return 0x7A000000 | (zlib.crc32(project.encode()) & 0xFFFFFF)


def create_veth(ipr: IPRoute, iface: InterfaceSpec, netns: Path, host_mac: str | None, peer_mac: str | None = None) -> int:
    """Create the pair with its container end already inside netns; returns the host ifindex.
    host_mac None: the kernel picks one. peer_mac: the container end's MAC (default iface.mac)."""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    mtu = {"mtu": iface.mtu} if iface.mtu else {}  # both ends: the network's
    try:
        ipr.link(
            "add",
            ifname=iface.host_ifname,
            kind="veth",
            address=host_mac,
            peer={"ifname": iface.ifname, "address": peer_mac or iface.mac, "net_ns_fd": fd, **mtu},
            **mtu,
        )
    finally:
        os.close(fd)
    # ipr is a socket of this process's namespace, where the link now is. if_nametoindex
    # (an ioctl) costs µs where a netlink lookup costs 0.3 ms of pyroute2 parsing: this runs
    # once per container in `up`.
    index = socket.if_nametoindex(iface.host_ifname)
    sandbox.write_sysctl(None, f"net/ipv6/conf/{iface.host_ifname}/disable_ipv6", "1")
    # Fail closed: what a container sends is forwarded only by fastnet's program (its
    # redirects bypass this), never by the host's stack, even if someone removes the program.
    sandbox.write_sysctl(None, f"net/ipv4/conf/{iface.host_ifname}/forwarding", "0")
    # the kernel ignores IFLA_IFALIAS when creating a link: tag it in a second message
    ipr.link("set", index=index, ifalias=iface.alias, state="up")
    return index


def configure_container_side(netns: Path, iface: InterfaceSpec) -> int:
    """Address, link state and default route inside the container; returns the interface's
    ifindex there. IPv6 is off: fastnet's networks are IPv4 and link-local chatter would
    only add noise to every port."""
    # One visit to the namespace for its sysctl, the ifindex (as in create_veth) and the
    # netlink socket, which stays bound to it.
    with sandbox.entered(netns):
        sandbox.write_sysctl(None, f"net/ipv6/conf/{iface.ifname}/disable_ipv6", "1")
        index = socket.if_nametoindex(iface.ifname)
        ipr = IPRoute()
    with ipr:
        # one datagram (datapath/nlbatch.py): this runs once per container in `up`
        requests = [
            nlbatch.addr_add(index, str(iface.ipv4), iface.prefixlen),
            nlbatch.link_up(index),
            nlbatch.link_up(LOOPBACK_IFINDEX),
        ]
        if iface.default_route:
            requests.append(nlbatch.route_replace("0.0.0.0", 0, index, gateway=str(iface.gateway)))
        nlbatch.send(ipr, requests)
    return index


def delete_link(ipr: IPRoute, ifname: str) -> bool:
    """Delete a link by name; False if it was already gone (idempotent)."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        return False
    try:
        ipr.link("del", index=found[0])
    except NetlinkError as e:
        if e.code not in (errno.ENODEV, errno.ENOENT):
            raise
        return False
    return True


def link_aliases(ipr: IPRoute) -> dict[str, str]:
    """Name -> alias ('' for none) of every link, from one dump: cheaper than a lookup per
    name when many names are checked (preflight of a project's ports)."""
    return {link.get_attr("IFLA_IFNAME"): link.get_attr("IFLA_IFALIAS") or "" for link in ipr.get_links()}


def owned_links(ipr: IPRoute, project: str) -> list[tuple[int, str, str]]:
    """(ifindex, name, alias) of every link tagged as the project's."""
    prefix = link_alias(project) + "/"
    found = []
    for link in ipr.get_links():
        alias = link.get_attr("IFLA_IFALIAS") or ""
        if alias.startswith(prefix):
            found.append((link["index"], link.get_attr("IFLA_IFNAME"), alias))
    return found
