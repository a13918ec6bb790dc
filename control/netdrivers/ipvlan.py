"""The ipvlan driver, built on the eBPF datapath: this kernel has no ipvlan module, and fastnet
takes this path also where the module exists -- one datapath with the same anti-spoofing,
counters and teardown as every other fastnet port, and one behaviour on every host (the module
refuses a parent that already carries macvlan devices and changes how the parent's own traffic
is received). Each container gets a veth whose container end has the parent's MAC (as a kernel
ipvlan slave does); `fn_from_ipvlan` on the host end and `fn_from_parent` on the parent
(bpf/lib/ipvlan.h) move frames between the containers and the wire. Modes l2 (each container
answers ARP for itself) and l3 (no ARP, `default dev eth0`, the segment's router routes the
subnet to the host)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from .. import links, sandbox
from .base import Role
from .base import DriverError
from .parent import ParentDriver, parent_mac

if TYPE_CHECKING:
    from ..project import Project
    from ..spec import InterfaceSpec, NetworkSpec

IFF_NOARP = 0x80


class Ipvlan(ParentDriver):
    name = "ipvlan"
    role = Role.PARENT
    modes = ("l2", "l3")
    backends = frozenset({"ebpf"})
    backends_why = " (this kernel has no ipvlan module; fastnet builds ipvlan with its eBPF datapath)"

    def create_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
        """The container end carries the parent's MAC, so the container's own ARP replies
        already name the MAC the wire knows."""
        return links.create_veth(project.ipr, iface, netns, None, peer_mac=parent_mac(project.ipr, net))

    def configure_container_side(self, netns: Path, net: NetworkSpec, iface: InterfaceSpec) -> None:
        """l3: the interface resolves no neighbours (NOARP) and routes everything through the
        host (`default dev eth0`), like a kernel ipvlan l3 slave."""
        if net.mode != "l3":
            links.configure_container_side(netns, iface)
            return
        index = links.configure_container_side(netns, dataclasses.replace(iface, default_route=False))
        with sandbox.netlink(netns) as ipr:
            ipr.link("set", index=index, flags=IFF_NOARP, change=IFF_NOARP)
            if iface.default_route:
                ipr.route("replace", dst="0.0.0.0/0", oif=index, scope=253)

    def interface_mac(self, net: NetworkSpec, iface: InterfaceSpec) -> str:
        try:
            with IPRoute() as ipr:
                return parent_mac(ipr, net)
        except (DriverError, NetlinkError, IndexError):
            return iface.mac
