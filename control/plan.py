"""What a run must change: a pure diff of the current state (as observed) and the desired spec."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import modes
from .spec import ContainerSpec, InterfaceSpec, NetworkSpec, ProjectSpec


@dataclass(frozen=True)
class Observed:
    """Facts read from the kernel that can make the recorded state wrong."""

    dead_containers: frozenset[str] = frozenset()  # netns gone
    missing_ports: frozenset[str] = frozenset()  # "container/network" whose host link is gone
    stopped_commands: frozenset[str] = frozenset()  # containers whose command exited


@dataclass
class Plan:
    remove_interfaces: list[tuple[str, InterfaceSpec]] = field(default_factory=list)
    remove_containers: list[ContainerSpec] = field(default_factory=list)
    remove_networks: list[NetworkSpec] = field(default_factory=list)
    add_networks: list[NetworkSpec] = field(default_factory=list)
    add_containers: list[ContainerSpec] = field(default_factory=list)
    add_interfaces: list[tuple[str, InterfaceSpec]] = field(default_factory=list)
    stop_commands: list[str] = field(default_factory=list)
    start_commands: list[str] = field(default_factory=list)
    republish: list[str] = field(default_factory=list)  # containers whose published ports change

    @property
    def empty(self) -> bool:
        return not any(getattr(self, f) for f in self.__dataclass_fields__)

    def summary(self) -> list[str]:
        lines = []
        lines += [f"- interface {c}/{i.network} ({i.ifname})" for c, i in self.remove_interfaces]
        lines += [f"- container {c.name}" for c in self.remove_containers]
        lines += [f"- network {n.name}" for n in self.remove_networks]
        lines += [f"+ network {n.name} {n.subnet}" for n in self.add_networks]
        lines += [f"+ container {c.name}" for c in self.add_containers]
        lines += [f"+ interface {c}/{i.network} {i.ifname} {i.ipv4}/{i.prefixlen}" for c, i in self.add_interfaces]
        lines += [f"~ command of {c} restarted" for c in self.start_commands if c not in {x.name for x in self.add_containers}]
        lines += [f"~ published ports of {c}" for c in self.republish]
        return lines


def make_plan(current: ProjectSpec | None, desired: ProjectSpec, observed: Observed = Observed()) -> Plan:
    p = Plan()
    cur_nets = current.networks if current else {}
    cur_ctrs = current.containers if current else {}

    changed_nets = {n for n, spec in cur_nets.items() if desired.networks.get(n) != spec}
    for name in changed_nets:
        p.remove_networks.append(cur_nets[name])
    for name, net in desired.networks.items():
        if name not in cur_nets or name in changed_nets:
            p.add_networks.append(net)

    recreate = {
        name
        for name, ctr in cur_ctrs.items()
        if (want := desired.containers.get(name)) is None
        or name in observed.dead_containers
        or (want.netns, want.network_mode) != (ctr.netns, ctr.network_mode)
    }
    # Processes of a container:NAME container live in NAME's namespace: they go with it.
    recreate |= modes.sharing(cur_ctrs.values(), recreate)
    for ctr in modes.removal_order(cur_ctrs.values()):
        name, want = ctr.name, desired.containers.get(ctr.name)
        if name in recreate:
            p.remove_containers.append(ctr)
            if ctr.command:
                p.stop_commands.append(name)
            continue
        for iface in ctr.interfaces:
            if (
                want.interface(iface.network) != iface
                or iface.network in changed_nets
                or f"{name}/{iface.network}" in observed.missing_ports
            ):
                p.remove_interfaces.append((name, iface))
        if ctr.command and (ctr.command != want.command or name in observed.stopped_commands):
            p.stop_commands.append(name)

    removed = {c.name for c in p.remove_containers}
    removed_ifaces = {(c, i.network) for c, i in p.remove_interfaces}
    for want in modes.creation_order(desired.containers.values()):
        name, ctr = want.name, cur_ctrs.get(want.name)
        if ctr is None or name in removed:
            p.add_containers.append(want)
            p.add_interfaces += [(name, i) for i in want.interfaces]
            if want.command:
                p.start_commands.append(name)
            continue
        for iface in want.interfaces:
            have = ctr.interface(iface.network)
            if have is None or (name, iface.network) in removed_ifaces:
                p.add_interfaces.append((name, iface))
        if want.command and (name in p.stop_commands or not ctr.command):
            p.start_commands.append(name)
        if want.publish != ctr.publish:
            p.republish.append(name)
    return p
