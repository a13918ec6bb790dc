"""The macvlan driver: the kernel's macvlan device, in fastnet as in Docker. Each container
interface is a macvlan device on `parent` (modes bridge, private, vepa, passthru), created
directly inside the container's namespace, so it goes with the namespace. Containers are on
the parent's segment with their own MAC (02:fa:<address>, or the parent's in passthru); the
host cannot reach them through the parent (macvlan never hands frames between the parent and
its macvlan devices), exactly as with Docker. Backend-independent: no BPF, no iptables rule."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import sandbox
from .base import Role
from .base import DriverError
from .parent import ParentDriver, parent_ifindex, parent_mac

if TYPE_CHECKING:
    from ..project import Project
    from ..spec import InterfaceSpec, NetworkSpec


class Macvlan(ParentDriver):
    name = "macvlan"
    role = Role.KERNEL
    modes = ("bridge", "private", "vepa", "passthru")
    has_host_link = False  # the device lives and dies with the container's namespace

    def create_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
        """The device, created straight inside the namespace as ethN; its ifindex there."""
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            kw = {} if net.mode == "passthru" else {"address": iface.mac}  # passthru takes the parent's MAC
            project.ipr.link("add", ifname=iface.ifname, kind="macvlan", link=parent_ifindex(project.ipr, net),
                             macvlan_mode=net.mode, net_ns_fd=fd, **kw)
        finally:
            os.close(fd)
        with sandbox.netlink(netns) as inner:
            return inner.link_lookup(ifname=iface.ifname)[0]

    def delete_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path | None) -> None:
        if netns is None or not sandbox.alive(netns):
            return  # the device went with the namespace
        with sandbox.netlink(netns) as inner:
            found = inner.link_lookup(ifname=iface.ifname)
            if found:
                try:
                    inner.link("del", index=found[0])
                except NetlinkError as e:
                    if e.code not in (errno.ENODEV, errno.ENOENT):
                        raise

    def interface_mac(self, net: NetworkSpec, iface: InterfaceSpec) -> str:
        if net.mode != "passthru":
            return iface.mac
        try:
            with IPRoute() as ipr:
                return parent_mac(ipr, net)
        except (DriverError, NetlinkError, IndexError):
            return iface.mac
