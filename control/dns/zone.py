"""Which names each container may resolve, built from the project states of one host.

Pure data, no sockets: the resolver rebuilds a Zone whenever a project changes.

Rules (Docker's, see docs/dns.md):
- a container resolves the names and aliases of the containers it shares a *user-defined*
  network with (itself included), as `NAME` or `NAME.NETWORK`; the default network `bridge`
  gives no names;
- when it shares several networks with the target, the first of its own networks (in
  interface order) that knows the name answers, with the target's address on that network;
- several containers with one alias on a network: every address, rotated per query;
- PTR of an address it could resolve by name gives `NAME.NETWORK`;
- a name or address that belongs to this host's containers but is not visible to the asker
  is NXDOMAIN here and never forwarded (nothing about other networks leaks, in or out): any
  name of the asker's project, and single-label names of other projects (a container of another
  project named like a real domain does not shadow that domain);
- everything else is forwarded, unless every network of the asker is internal.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable

from ..model import DEFAULT_NETWORK
from ..modes import owns_namespace
from ..spec import ProjectSpec

REVERSE_SUFFIX = ".in-addr.arpa"


@dataclass(frozen=True)
class View:
    """What one container (named by its netns) sees."""

    netns: str
    project: str
    container: str
    networks: tuple[str, ...]  # user-defined networks that give names, in interface order
    forward: bool  # may ask the host's resolvers (not every network is internal)


@dataclass(frozen=True)
class Lookup:
    """The outcome for one name: `addresses` (possibly empty: the name exists with no record of
    the asked type), `nxdomain`, or neither (not ours: forward)."""

    addresses: tuple[IPv4Address, ...] = ()
    ptr: str | None = None
    known: bool = False
    nxdomain: bool = False

    @property
    def local(self) -> bool:
        return self.known or self.nxdomain


NOT_OURS = Lookup()
NXDOMAIN = Lookup(nxdomain=True)


def normalize(name: str) -> str:
    """Lower case, no trailing dot (DNS names compare case-insensitively)."""
    return name.rstrip(".").lower()


@dataclass
class _Network:
    names: dict[str, list[IPv4Address]] = field(default_factory=lambda: defaultdict(list))
    reverse: dict[IPv4Address, str] = field(default_factory=dict)  # address -> "name.network"


class Zone:
    def __init__(self, projects: Iterable[ProjectSpec], remotes: Iterable = ()):
        """`remotes`: containers of other hosts on overlay networks (control/overlaysync.Remote),
        named on each project's network of that name."""
        self.views: dict[str, View] = {}
        self._networks: dict[tuple[str, str], _Network] = {}
        self._project_names: dict[str, set[str]] = defaultdict(set)  # names, aliases, NAME.NETWORK
        self._host_labels: set[str] = set()  # single-label names of every project on the host
        self._subnets: list[IPv4Network] = []
        self._rotation: dict[tuple[str, str, str], itertools.count] = {}
        remotes = list(remotes)
        for spec in projects:
            self._add_project(spec)
            self._add_remotes(spec, remotes)

    def _add_project(self, spec: ProjectSpec) -> None:
        for net in spec.networks.values():
            self._subnets.append(net.subnet)
            if net.name != DEFAULT_NETWORK:
                self._networks[(spec.name, net.name)] = _Network()
        for c in spec.containers.values():
            self._project_names[spec.name].add(normalize(c.name))  # every container, attached or not
            if "." not in c.name:
                self._host_labels.add(normalize(c.name))
            for iface in c.interfaces:
                table = self._networks.get((spec.name, iface.network))
                names = dict.fromkeys(normalize(n) for n in (c.name, *iface.aliases))
                self._project_names[spec.name].update(names)
                self._host_labels.update(n for n in names if "." not in n)
                if table is None:  # the default network: no names, but never asked upstream
                    continue
                for name in names:
                    table.names[name].append(iface.ipv4)
                    self._project_names[spec.name].add(f"{name}.{normalize(iface.network)}")
                table.reverse[iface.ipv4] = f"{c.name}.{iface.network}"
            if not owns_namespace(c):
                # host mode keeps the host's resolv.conf; container:NAME shares NAME's resolver
                continue
            nets = {n.name: n for n in spec.networks.values()}
            attached = [nets[i.network] for i in c.interfaces if i.network in nets]
            self.views[c.netns] = View(
                netns=c.netns,
                project=spec.name,
                container=c.name,
                networks=tuple(n.name for n in attached if n.name != DEFAULT_NETWORK),
                forward=any(not n.internal for n in attached),
            )

    def _add_remotes(self, spec: ProjectSpec, remotes: list) -> None:
        """Containers of other hosts, on the project's overlay networks (those with a VNI)."""
        for r in remotes:
            net = spec.networks.get(r.network)
            table = self._networks.get((spec.name, r.network))
            if net is None or net.vni is None or table is None:
                continue
            names = dict.fromkeys(normalize(n) for n in (r.name, *r.aliases))
            # as for the project's own containers: asked from another network, the name is
            # NXDOMAIN here, never forwarded (nothing about the overlay leaks upstream)
            self._project_names[spec.name].update(names)
            self._host_labels.update(n for n in names if "." not in n)
            for name in names:
                if r.ipv4 not in table.names[name]:
                    table.names[name].append(r.ipv4)
                self._project_names[spec.name].add(f"{name}.{normalize(r.network)}")
            table.reverse.setdefault(r.ipv4, f"{r.name}.{r.network}")

    # -- queries ------------------------------------------------------------------------------
    def lookup(self, view: View, qname: str) -> Lookup:
        """The A records of qname for view's container (all of them, rotated per call)."""
        name = normalize(qname)
        for net in view.networks:
            found = self._find(view, net, name)
            if found is not None:
                return found
        known = self._project_names.get(view.project, set())
        ours = name in known or name in self._host_labels
        for net in view.networks:
            suffix = "." + normalize(net)
            if name.endswith(suffix):
                found = self._find(view, net, name[: -len(suffix)])
                if found is not None:
                    return found
                prefix = name[: -len(suffix)]
                ours = ours or prefix in known or prefix in self._host_labels
        return NXDOMAIN if ours else NOT_OURS

    def _find(self, view: View, net: str, name: str) -> Lookup | None:
        addresses = self._networks[(view.project, net)].names.get(name)
        if not addresses:
            return None
        if len(addresses) > 1:
            turn = next(self._rotation.setdefault((view.project, net, name), itertools.count()))
            k = turn % len(addresses)
            addresses = addresses[k:] + addresses[:k]
        return Lookup(addresses=tuple(addresses), known=True)

    def reverse(self, view: View, qname: str) -> Lookup:
        """PTR of a.b.c.d.in-addr.arpa: the container's NAME.NETWORK if view may see it."""
        name = normalize(qname)
        if not name.endswith(REVERSE_SUFFIX):
            return NOT_OURS
        labels = name[: -len(REVERSE_SUFFIX)].split(".")
        try:
            address = IPv4Address(".".join(reversed(labels)))
        except ValueError:
            return NOT_OURS
        if len(labels) != 4:
            return NOT_OURS
        for net in view.networks:
            target = self._networks[(view.project, net)].reverse.get(address)
            if target is not None:
                return Lookup(ptr=target + ".", known=True)
        if any(address in subnet for subnet in self._subnets):
            return NXDOMAIN
        return NOT_OURS
