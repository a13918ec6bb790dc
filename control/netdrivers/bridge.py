"""The bridge driver: fastnet's own bridging, built by the backend (the eBPF datapath, or the
Docker-style Linux bridge and iptables of the reference backend). Each interface is a veth
pair whose host end carries the gateway's MAC (eBPF) or is a bridge port (iptables)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import NetworkDriver, Role

if TYPE_CHECKING:
    from ..project import Project
    from ..spec import InterfaceSpec, NetworkSpec


class Bridge(NetworkDriver):
    name = "bridge"
    role = Role.BRIDGED
    sets_mtu = True  # its veths: the network's `mtu:`, else the uplink's

    def add_network(self, project: Project, net: NetworkSpec) -> None:
        project.backend.add_network(project.ipr, net)

    def remove_network(self, project: Project, net: NetworkSpec) -> None:
        project.backend.remove_network(project.ipr, net)

    def create_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
        from .. import links

        return links.create_veth(project.ipr, iface, netns, project.backend.host_mac(net))
