"""The desired shape of one project on this host, derived from its config and the previous run.

Everything a run needs to name or address is decided here, deterministically and before
anything is touched: network ids, interface names, addresses (via ipam), MACs and the names
of the host-side links. Stable across runs: what existed keeps its id, name and address.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING

from . import ipam
from ..datapath.errors import FastnetError
from .model import CONTAINER_MODE_PREFIX, DEFAULT_DRIVER, ORIGIN_FILE, Conntrack, PortMapping

if TYPE_CHECKING:  # what reads state files (the agent) must not load the config model
    from .config import Config

LINK_ALIAS_PREFIX = "fastnet:"


def mac_for(address: IPv4Address) -> str:
    """Locally administered MAC derived from an address (cf. Docker's 02:42:<ip>)."""
    return "02:fa:" + ":".join(f"{b:02x}" for b in address.packed)


def link_name(project: str, *parts: str) -> str:
    """A host link fastnet makes: `<project prefix>-<hash of project and parts>`, at most 15
    characters (the kernel's limit); its alias carries the exact owner."""
    digest = hashlib.sha1("/".join((project, *parts)).encode()).hexdigest()[:7]
    return f"{project[:7]}-{digest}"


def host_ifname(project: str, container: str, network: str) -> str:
    """Host end of a container's veth."""
    return link_name(project, container, network)


def link_alias(project: str, *parts: str) -> str:
    """The ownership tag on every host-side link (IFLA_IFALIAS): exact, unlike a name prefix."""
    return LINK_ALIAS_PREFIX + "/".join((project, *parts))


def netns_name(project: str, container: str) -> str:
    """Where the container's namespace is bound, under the keeper's `rt/netns/`: a directory
    per project, so that a project's namespaces are found by exact ownership (project `shop`
    with container `v2-web` and project `shop-v2` with container `web` never meet)."""
    return f"{project}/{container}"


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    net_id: int
    subnet: IPv4Network
    gateway: IPv4Address
    internal: bool = False
    driver: str = DEFAULT_DRIVER
    parent: str | None = None  # macvlan/ipvlan: the host interface (IF.VLAN: the sub-interface)
    mode: str | None = None
    mtu: int | None = None  # as configured; None: each interface takes the uplink's (InterfaceSpec.mtu)
    vni: int | None = None  # overlay: the VXLAN network identifier the store gave the network

    @property
    def gateway_mac(self) -> str:
        return mac_for(self.gateway)


@dataclass(frozen=True)
class InterfaceSpec:
    network: str
    ifname: str  # inside the container: eth0, eth1, ...
    host_ifname: str
    alias: str
    ipv4: IPv4Address
    prefixlen: int
    gateway: IPv4Address
    default_route: bool
    aliases: tuple[str, ...] = ()
    mtu: int | None = None  # of both ends of the veth; None: the kernel's default (1500)

    @property
    def mac(self) -> str:
        return mac_for(self.ipv4)


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    netns: str  # the namespace its processes run in; "" = the host's (control/modes.py)
    interfaces: tuple[InterfaceSpec, ...]
    command: tuple[str, ...] | None = None
    publish: tuple[PortMapping, ...] = ()
    network_mode: str | None = None  # as in config.Container
    origin: str = ORIGIN_FILE  # model.ORIGIN_*: what added it, and so what may remove it

    def interface(self, network: str) -> InterfaceSpec | None:
        return next((i for i in self.interfaces if i.network == network), None)

    @property
    def publish_interface(self) -> InterfaceSpec | None:
        """Published ports lead to the interface holding the default route (as in Docker)."""
        return next((i for i in self.interfaces if i.default_route), None)


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    backend: str
    uplink: str | None
    networks: dict[str, NetworkSpec] = field(default_factory=dict)
    containers: dict[str, ContainerSpec] = field(default_factory=dict)
    conntrack: Conntrack = Conntrack()  # host-wide: every project on a host must agree
    store: str | None = None  # overlay networks: the etcd v3 URL their hosts share
    vxlan_port: int = 4789  # overlay networks: the UDP port of the host's VXLAN device


def _namespace(config: Config, name: str) -> str:
    """The namespace a container's processes run in: its own, the host's ("") in host mode,
    or, for container:OTHER, OTHER's (config forbids chains, so one step resolves it)."""
    mode = config.containers[name].network_mode
    if mode == "host":
        return ""
    if mode is not None and mode.startswith(CONTAINER_MODE_PREFIX):
        return _namespace(config, mode[len(CONTAINER_MODE_PREFIX):])
    return netns_name(config.name, name)


def _interface_mtu(net: NetworkSpec, sized: bool, prev_net: NetworkSpec | None, prev: InterfaceSpec | None,
                   default_mtu: int | None, overhead: int = 0) -> int | None:
    """A bridge network's `mtu:`, else what the interface had (so a changed uplink MTU does not
    recreate running containers; None in state from before `mtu:`), else the uplink's."""
    if not sized:  # the driver's interfaces have their parent's MTU
        return None
    if net.mtu is not None:
        return net.mtu
    if prev is not None and prev_net == net:
        return prev.mtu
    return default_mtu - overhead if default_mtu and overhead else default_mtu


class SpecError(FastnetError):
    """The config cannot be applied as it stands beside what the project holds."""


def _adopted(config: Config, previous: ProjectSpec | None) -> dict[str, ContainerSpec]:
    """The containers another caller added to the project (a container engine, through CNI):
    `up` keeps them exactly as they are, so their names and their networks' subnets stay."""
    kept = {n: c for n, c in (previous.containers.items() if previous else ()) if c.origin != ORIGIN_FILE}
    for c in kept.values():
        if c.name in config.containers:
            raise SpecError(f"containers.{c.name}: the name is taken by a container attached through {c.origin}")
        for i in c.interfaces:
            net, old = config.networks.get(i.network), previous.networks.get(i.network)
            if old is not None and (net is None or (net.subnet, net.gateway) != (old.subnet, old.gateway)):
                raise SpecError(f"networks.{i.network}: container {c.name}, attached through {c.origin}, is on it: "
                                f"it must stay, with subnet {old.subnet} and gateway {old.gateway}")
    return kept


def build(config: Config, previous: ProjectSpec | None, foreign_net_ids: frozenset[int] = frozenset(),
          default_mtu: int | None = None, taken: dict[str, frozenset[IPv4Address]] | None = None,
          claimed: dict[str, dict[str, IPv4Address]] | None = None) -> ProjectSpec:
    """`foreign_net_ids`: ids held by other projects on the host (the datapath is shared);
    `default_mtu`: the uplink's MTU, for new interfaces of bridge networks without `mtu:`;
    `taken`: per network, addresses others hold (other hosts of an overlay); `claimed`: per
    network, the addresses the containers already hold there (an overlay's store), which they
    keep as they keep earlier runs' ones."""
    prev_nets = previous.networks if previous else {}
    prev_ctrs = previous.containers if previous else {}
    adopted = _adopted(config, previous)

    networks: dict[str, NetworkSpec] = {}
    used_ids = {n.net_id for name, n in prev_nets.items() if name in config.networks} | set(foreign_net_ids)
    next_id = 1
    for name, net in config.networks.items():
        old = prev_nets.get(name)
        if old is not None and old.subnet == net.subnet:
            net_id = old.net_id
        else:
            while next_id in used_ids:
                next_id += 1
            net_id = next_id
            used_ids.add(net_id)
        networks[name] = NetworkSpec(
            name, net_id, net.subnet, net.gateway, net.internal, net.driver, net.parent, net.mode, net.mtu
        )

    addresses: dict[str, dict[str, IPv4Address]] = {}
    for name, net in config.networks.items():
        requests = [
            (c.name, a.ipv4_address)
            for c in config.containers.values()
            for a in c.attachments
            if a.network == name
        ]
        requests += [(c.name, i.ipv4) for c in adopted.values() if (i := c.interface(name)) is not None]
        existing = dict((claimed or {}).get(name, {}))
        for cname, ctr in prev_ctrs.items():
            iface = ctr.interface(name)
            if iface is not None and name in prev_nets and prev_nets[name].subnet == net.subnet:
                existing[cname] = iface.ipv4
        addresses[name] = ipam.allocate(net, requests, existing, (taken or {}).get(name, frozenset()))

    containers: dict[str, ContainerSpec] = {}
    for c in config.containers.values():
        old = prev_ctrs.get(c.name)
        kept = {i.network: i.ifname for i in old.interfaces} if old else {}
        taken = {kept[a.network] for a in c.attachments if a.network in kept}
        interfaces = []
        default_taken = False
        for a in c.attachments:
            ifname = kept.get(a.network)
            if ifname is None:
                n = 0
                while f"eth{n}" in taken:
                    n += 1
                ifname = f"eth{n}"
                taken.add(ifname)
            net = networks[a.network]
            default_route = not net.internal and not default_taken
            default_taken = default_taken or default_route
            interfaces.append(
                InterfaceSpec(
                    network=a.network,
                    ifname=ifname,
                    host_ifname=host_ifname(config.name, c.name, a.network),
                    alias=link_alias(config.name, c.name, a.network),
                    ipv4=addresses[a.network][c.name],
                    prefixlen=net.subnet.prefixlen,
                    gateway=net.gateway,
                    default_route=default_route,
                    aliases=tuple(a.aliases),
                    mtu=_interface_mtu(net, config.networks[a.network].sized, prev_nets.get(a.network),
                                       old.interface(a.network) if old else None, default_mtu,
                                       config.networks[a.network].mtu_overhead),
                )
            )
        containers[c.name] = ContainerSpec(
            name=c.name,
            netns=_namespace(config, c.name),
            interfaces=tuple(interfaces),
            command=tuple(c.command) if c.command else None,
            publish=tuple(c.publish),
            network_mode=c.network_mode,
        )
    containers.update(adopted)
    return ProjectSpec(config.name, config.backend, config.uplink, networks, containers, config.conntrack,
                       config.store, config.vxlan_port)
