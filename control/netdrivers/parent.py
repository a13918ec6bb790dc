"""What the parent drivers (macvlan, ipvlan) share: a host interface, `parent:`, whose L2
segment the containers join as stations of their own (Docker's macvlan and ipvlan drivers).

The network's gateway is the segment's router (default: the subnet's first address, as
Docker's IPAM picks it), not the host; nothing is published on these networks. A parent
written IF.VLAN is an 802.1Q sub-interface (vlan.py), shared by every network that names it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import vlan
from .base import DriverError, NetworkDriver

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from ..project import Project
    from ..spec import NetworkSpec, ProjectSpec


def parent_ifindex(ipr: IPRoute, net: NetworkSpec) -> int:
    found = ipr.link_lookup(ifname=net.parent)
    if not found:
        raise DriverError(f"network {net.name}: parent {net.parent} is missing")
    return found[0]


def parent_mac(ipr: IPRoute, net: NetworkSpec) -> str:
    return ipr.get_links(parent_ifindex(ipr, net))[0].get_attr("IFLA_ADDRESS")


class ParentDriver(NetworkDriver):
    needs_parent = True

    def preflight(self, ipr: IPRoute, net: NetworkSpec, desired: ProjectSpec, others: list[ProjectSpec]) -> str | None:
        """The parent exists (or can be made), the backend can build the driver, no container
        takes an address of the host, and no network of another project overlaps on the parent."""
        assert net.parent is not None
        found = vlan.vlan_of(net.parent)
        base = found[0] if found else net.parent
        if not ipr.link_lookup(ifname=base):
            return f"networks.{net.name}.parent: no interface named {base!r} on this host"
        if found and not ipr.link_lookup(ifname=net.parent) and not vlan.kernel_has_8021q() and desired.backend != "ebpf":
            return (f"networks.{net.name}.parent: creating {net.parent} on this kernel (no 802.1Q driver, "
                    f"CONFIG_VLAN_8021Q) needs the ebpf backend, which tags in its datapath, not {desired.backend}")
        problem = super().preflight(ipr, net, desired, others)
        if problem:
            return problem
        host_addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)}
        for c in desired.containers.values():
            i = c.interface(net.name)
            if i is not None and str(i.ipv4) in host_addrs:
                return (f"containers.{c.name}.networks.{net.name}: {i.ipv4} is an address of this host; "
                        "give the container another ipv4_address (or the network a subnet the host does not use)")
        for other in others:
            for on in other.networks.values():
                if on.parent == net.parent and on.subnet.overlaps(net.subnet):
                    return (f"networks.{net.name}.subnet: {net.subnet} overlaps {on.subnet} of network "
                            f"{other.name}/{on.name} on parent {net.parent}")
        return None

    def add_network(self, project: Project, net: NetworkSpec) -> None:
        vlan.ensure(project.ipr, net.name, net.parent)

    def remove_network(self, project: Project, net: NetworkSpec) -> None:
        parents = frozenset(n.parent for n in project.st.spec.networks.values() if n.parent)
        errors = vlan.prune(project.ipr, project.host, project.st.name, parents)
        if errors:
            raise DriverError("; ".join(errors))
