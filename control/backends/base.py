"""The interface every backend implements: the host side of networks and ports."""
from __future__ import annotations

from typing import Protocol

from pyroute2 import IPRoute

from ..spec import InterfaceSpec, NetworkSpec, ProjectSpec
from ..state import ProjectState


class Backend(Protocol):
    name: str
    # Whether its tables hold copies of the host's addresses and links, which the agent then
    # has it rewrite (sync) when they change (control/hostwatch.py).
    copies_host_facts: bool

    def host_mac(self, network: NetworkSpec) -> str | None:
        """MAC of the host end of a port on this network (None: the kernel's choice)."""

    @staticmethod
    def table_problems(specs: list[ProjectSpec]) -> str | None:
        """What would not fit in the backend's own tables with these projects (every project of
        the backend on the host, after the run); None if everything fits."""

    def prepare(self, spec: ProjectSpec) -> None:
        """Load whatever the backend's datapath needs for spec (may compile)."""

    def add_network(self, ipr: IPRoute, network: NetworkSpec) -> None: ...

    def remove_network(self, ipr: IPRoute, network: NetworkSpec) -> None:
        """Idempotent."""

    def owned_networks(self, ipr: IPRoute) -> list[NetworkSpec]:
        """The project's networks found in the kernel by their tags (down without state)."""

    def attach_port(self, ipr: IPRoute, network: NetworkSpec, iface: InterfaceSpec, ifindex: int) -> None:
        """Host-side setup of a port whose veth exists; undone by deleting the veth."""

    def sync(self, state: ProjectState) -> None:
        """Bring per-project tables in line with what exists (called after every change)."""

    def teardown(self) -> None:
        """Remove every project-level object of the backend. Idempotent."""

    def redirect_resolver(self, udp_port: int, tcp_port: int) -> None:
        """Called with the calling thread inside a container's network namespace, once the
        resolver's sockets are bound there: make 127.0.0.11:53 reach them, if the backend does
        that per namespace (control/dns/server.py says why the resolver is not on port 53)."""

    def publish_resolvers(self, resolvers: dict[int, tuple[int, int]]) -> None:
        """Make the backend's own table of resolver ports hold exactly `resolvers` ({network
        namespace cookie: (UDP port, TCP port)}) if it keeps one; OSError if it cannot."""

    def counters(self) -> dict[str, dict[str, tuple[int, int]]]: ...

    def conntrack(self) -> list:
        """The tracked connections (datapath.maps.CtRecord), one per direction."""

    def conntrack_flush(self) -> int:
        """Forget every tracked connection; returns how many entries went."""
