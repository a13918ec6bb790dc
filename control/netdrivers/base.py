"""The interface every network driver implements (`NetworkDriver`) and what the backends do
with a driver's ports (`Role`). The registry is the package's (`netdrivers.DRIVERS`)."""
from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING

from ...datapath.errors import FastnetError

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..project import Project
    from ..spec import InterfaceSpec, NetworkSpec, ProjectSpec


class DriverError(FastnetError):
    """What a driver finds wrong with a network on this host (its parent, its kernel)."""


class Role(enum.Enum):
    """What the backends do with the ports of a driver's networks."""

    BRIDGED = "bridged"  # the backend switches, routes, translates and publishes them
    PARENT = "parent"  # stations of a parent's segment whose frames the backend's datapath moves
    KERNEL = "kernel"  # a kernel device does it all: the backends have nothing to do


class NetworkDriver:
    name: str
    role: Role
    modes: tuple[str, ...] = ()  # the first is the default; () for none
    needs_parent = False  # `parent:` names the host interface the network lives on
    backends: frozenset[str] | None = None  # the backends that can build it (None: every one)
    backends_why = ""  # why only those, for the error
    has_host_link = True  # each interface has a host-side link named InterfaceSpec.host_ifname
    sets_mtu = False  # `mtu:` applies (fastnet sizes the interfaces; the others have their parent's)
    mtu_overhead = 0  # bytes its encapsulation takes: interfaces default to the uplink's MTU minus this
    needs_store = False  # shared with other hosts through the file's `store:` (overlay)

    # -- before anything is made ----------------------------------------------------------------
    def preflight(self, ipr: IPRoute, net: NetworkSpec, desired: ProjectSpec, others: list[ProjectSpec]) -> str | None:
        """Why `net` of `desired` cannot be built on this host beside `others` (None: it can)."""
        if self.backends is not None and desired.backend not in self.backends:
            return (f"networks.{net.name}.driver: {self.name} needs the {' or '.join(sorted(self.backends))} "
                    f"backend{self.backends_why}, not {desired.backend}")
        return None

    # -- networks and interfaces (the project records them; undo is the project's journal) --------
    def add_network(self, project: Project, net: NetworkSpec) -> None:
        raise NotImplementedError

    def remove_network(self, project: Project, net: NetworkSpec) -> None:
        """Idempotent; the project has already forgotten `net`."""
        raise NotImplementedError

    def create_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path) -> int:
        """The container's interface on `net` inside `netns`; returns the ifindex the backend
        attaches to (the host end's), or the interface's own ifindex where there is no host end."""
        raise NotImplementedError

    def delete_interface(self, project: Project, net: NetworkSpec, iface: InterfaceSpec, netns: Path | None) -> None:
        """Idempotent."""
        from .. import links

        links.delete_link(project.ipr, iface.host_ifname)

    def settle(self, desired: ProjectSpec, rebuild, previous: ProjectSpec | None) -> ProjectSpec:
        """Before anything is made: agree `desired` with whatever the network is shared with
        (other hosts, through the store), rebuilding it with `rebuild(taken, claimed)` when
        addresses must change; a one-line FastnetError when that cannot be done. Default: as is."""
        return desired

    def release_addresses(self, ipr: IPRoute, spec: ProjectSpec, net: NetworkSpec, containers: list[str]) -> None:
        """After `containers` of `spec` left `net` outside a run of `up` (a CNI DEL, a failed
        ADD): give back what settle() took for them beyond this host. Best effort, never raises.
        Default: nothing was taken."""

    def configure_container_side(self, netns: Path, net: NetworkSpec, iface: InterfaceSpec) -> None:
        """Address, link state and default route inside the container."""
        from .. import links

        links.configure_container_side(netns, iface)

    def interface_mac(self, net: NetworkSpec, iface: InterfaceSpec) -> str:
        """The MAC the container's interface has."""
        return iface.mac
