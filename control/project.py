"""One project on one host: the single-object operations `up` and `down` are made of, each
recording its undo in a journal. They work one container or interface at a time, so a
CNI-style caller can drive a single container (the CNI ADD/DEL of a later issue)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyroute2 import IPRoute

from . import failpoints, interrupt, links, logs, modes, netdrivers, sandbox
from .backends.base import Backend
from .dns import resolvconf
from .host import Host
from .model import ORIGIN_FILE
from .plan import Observed, Plan
from .spec import ContainerSpec, InterfaceSpec, ProjectSpec
from .state import CommandState, ProjectState, port_key
from ..datapath.errors import FastnetError


class ApplyError(FastnetError):
    """A step failed in a way that leaves no exception of its own (e.g. several errors)."""


@dataclass
class Journal:
    """Undo actions of the steps done so far, run in reverse on failure. Each entry is a step
    boundary: an interruptible journal (the run's own, not the scratch ones of undo actions)
    raises there if a signal arrived meanwhile (control/interrupt.py)."""

    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    interruptible: bool = False

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self.undo.append((what, fn))
        if self.interruptible:
            interrupt.checkpoint()

    def rollback(self) -> list[str]:
        errors = []
        for what, fn in reversed(self.undo):
            try:
                fn()
            except Exception as exc:  # keep undoing the rest
                errors.append(f"undo {what}: {exc}")
        self.undo.clear()
        return errors


def remove_namespace(host: Host, netns: str) -> None:
    """A container's namespace and its resolv.conf (idempotent)."""
    sandbox.remove(host.netns_dir / netns)
    resolvconf.remove(host.runtime, netns)


def empty_state(desired: ProjectSpec, source: str) -> ProjectState:
    spec = ProjectSpec(desired.name, desired.backend, desired.uplink, conntrack=desired.conntrack,
                       store=desired.store, vxlan_port=desired.vxlan_port)
    return ProjectState(spec=spec, source=source)


class Project:
    """One project on one host, inside the agent's mount namespace."""

    def __init__(self, host: Host, st: ProjectState, backend: Backend, ipr: IPRoute):
        self.host, self.st, self.backend, self.ipr = host, st, backend, ipr
        # Called once the containers are wired, before their commands start (the engine
        # publishes the names to the DNS resolver there: a command may resolve at once).
        self.before_commands: Callable[[], None] | None = None

    def netns_path(self, c: ContainerSpec) -> Path | None:
        """Where the namespace its processes run in is bound; None: the host's (host mode)."""
        return None if modes.in_host_namespace(c) else self.host.netns_dir / c.netns

    # -- observe ----------------------------------------------------------------------------
    def observe(self) -> Observed:
        dead, missing, stopped = set(), set(), set()
        for c in self.st.spec.containers.values():
            path = self.netns_path(c)
            if path is not None and not sandbox.alive(path):  # for container:NAME, NAME's
                dead.add(c.name)
                continue
            for i in c.interfaces:
                if not self._driver(i.network).has_host_link:
                    continue  # the device lives and dies with the namespace
                idx = self.ipr.link_lookup(ifname=i.host_ifname)
                if not idx or idx[0] != self.st.ports.get(port_key(c.name, i.network)):
                    missing.add(port_key(c.name, i.network))
            cmd = self.st.commands.get(c.name)
            if c.command and (cmd is None or not sandbox.linux.process_alive(cmd.pid, cmd.start_time)):
                stopped.add(c.name)
        return Observed(frozenset(dead), frozenset(missing), frozenset(stopped))

    def _driver(self, network: str) -> netdrivers.NetworkDriver:
        return netdrivers.of(self.st.spec.networks.get(network))

    # -- single-object operations ---------------------------------------------------------
    def add_network(self, net, journal: Journal) -> None:
        # Recorded first: the undo of a half-made network (a sub-interface created, the
        # backend's part failed) must find it.
        self.st.spec.networks[net.name] = net
        journal.add(f"network {net.name}", lambda: self.remove_network(net))
        netdrivers.of(net).add_network(self, net)

    def remove_network(self, net) -> None:
        self.st.spec.networks.pop(net.name, None)
        netdrivers.of(net).remove_network(self, net)

    def create_container(self, c: ContainerSpec, journal: Journal) -> None:
        """An adopted container's namespace (origin other than a file's) is bound by its
        caller (control/cni/attach.py) before this: fastnet records it, never creates one."""
        if c.origin == ORIGIN_FILE and modes.owns_namespace(c):
            sandbox.create(self.netns_path(c))
            resolvconf.write(self.host.runtime, c.netns)
            if c.network_mode == "none":
                modes.loopback_up(self.netns_path(c))
        self.st.spec.containers[c.name] = dataclasses.replace(c, interfaces=())
        journal.add(f"container {c.name}", lambda: self.remove_container(c.name))

    def attach_interface(self, cname: str, iface: InterfaceSpec, journal: Journal) -> None:
        c = self.st.spec.containers[cname]
        net = self.st.spec.networks[iface.network]
        driver = netdrivers.of(net)
        ifindex = driver.create_interface(self, net, iface, self.netns_path(c))
        journal.add(f"interface {cname}/{iface.network}", lambda: self.detach_interface(cname, iface))
        self.st.ports[port_key(cname, iface.network)] = ifindex  # no host end: its ifindex in the container
        self.st.spec.containers[cname] = dataclasses.replace(c, interfaces=c.interfaces + (iface,))
        driver.configure_container_side(self.netns_path(c), net, iface)
        if driver.role is not netdrivers.Role.KERNEL:
            self.backend.attach_port(self.ipr, net, iface, ifindex)
        failpoints.check(f"attach_interface:{cname}/{iface.network}")

    def detach_interface(self, cname: str, iface: InterfaceSpec) -> None:
        c = self.st.spec.containers.get(cname)
        net = self.st.spec.networks.get(iface.network)
        netdrivers.of(net).delete_interface(self, net, iface, self.netns_path(c) if c is not None else None)
        self.st.ports.pop(port_key(cname, iface.network), None)
        if c is not None:
            rest = tuple(i for i in c.interfaces if i.network != iface.network)
            self.st.spec.containers[cname] = dataclasses.replace(c, interfaces=rest)

    def remove_container(self, cname: str) -> list[str]:
        """Stop its command, delete its ports and namespace. Keeps going past errors."""
        errors = []
        c = self.st.spec.containers.get(cname)
        if c is None:
            return errors
        steps = [("command", lambda: self.stop_command(cname))]
        steps += [(f"interface {i.network}", lambda i=i: self.detach_interface(cname, i)) for i in c.interfaces]
        if c.origin != ORIGIN_FILE:  # a runtime's namespace: let go of it, kill nothing in it
            steps += [("namespace", lambda: sandbox.release(self.host.netns_dir / c.netns))]
        elif modes.owns_namespace(c):  # never the host's or another container's
            steps += [("namespace", lambda: remove_namespace(self.host, c.netns))]
        for what, fn in steps:
            try:
                fn()
            except Exception as exc:
                errors.append(f"container {cname}: {what}: {exc}")
        self.st.spec.containers.pop(cname, None)
        return errors

    # -- what the state does not know ---------------------------------------------------------
    def sweep_unrecorded(self, foreign_subnets: frozenset = frozenset()) -> list[str]:
        """Remove every object tagged as the project's that its state does not record: what a run
        killed after its last record made (or, in `down` once the recorded containers are gone,
        everything left). Objects are found by exact ownership -- the link alias
        `fastnet:<project>/<container>/<network>`, the namespace directory `rt/netns/<project>/`,
        the command tag `<host>/<project>/<container>`, the route metric of the project -- never
        by a name prefix another project could share; `foreign_subnets` (other projects') are
        never touched, even if a metric collided. Keeps going past errors."""
        errors: list[str] = []
        containers = self.st.spec.containers
        ports = {i.alias for c in containers.values() for i in c.interfaces}
        for _, name, alias in links.owned_links(self.ipr, self.st.name):
            if alias.count("/") == 2 and alias not in ports:  # a port; networks are below
                try:
                    links.delete_link(self.ipr, name)
                except Exception as exc:
                    errors.append(f"link {name} ({alias}): {exc}")
        running = {name for name, cmd in self.st.commands.items()
                   if name in containers and sandbox.linux.process_alive(cmd.pid, cmd.start_time)}
        try:
            modes.stop_tagged(modes.project_tag_prefix(self.host.key, self.st.name), keep=running)
        except Exception as exc:
            errors.append(f"commands: {exc}")
        namespaces = {c.netns for c in containers.values() if modes.owns_namespace(c)}
        project_dir = self.host.netns_dir / self.st.name
        for path in sorted(project_dir.iterdir()) if project_dir.is_dir() else []:
            netns = f"{self.st.name}/{path.name}"
            if netns not in namespaces:
                try:
                    remove_namespace(self.host, netns)
                except Exception as exc:
                    errors.append(f"namespace {netns}: {exc}")
        keep = {n.subnet for n in self.st.spec.networks.values()} | set(foreign_subnets)
        for net in self.backend.owned_networks(self.ipr):
            if net.subnet not in keep:
                try:
                    self.backend.remove_network(self.ipr, net)
                except Exception as exc:
                    errors.append(f"network {net.name}: {exc}")
        return errors

    def start_command(self, c: ContainerSpec, journal: Journal) -> None:
        assert c.command
        pid, start = sandbox.spawn(
            self.netns_path(c),
            resolvconf.path_for(self.host.runtime, c.netns) if c.netns else None,
            self.host.runtime,
            c.command,
            logs.open_command_log(self.host.dir, self.st.name, c.name),
            {modes.TAG_VARIABLE: modes.tag(self.host.key, self.st.name, c.name)},
        )
        self.st.commands[c.name] = CommandState(pid, start, c.command)
        journal.add(f"command of {c.name}", lambda: self.stop_command(c.name))
        failpoints.check(f"start_command:{c.name}")

    def stop_command(self, cname: str) -> None:
        cmd = self.st.commands.pop(cname, None)
        if cmd is not None:
            sandbox.stop(cmd.pid, cmd.start_time)

    # -- undoing removals ---------------------------------------------------------------------
    def restore_container(self, c: ContainerSpec, command: CommandState | None) -> None:
        """Rebuild a removed container as it was (its interfaces get new ifindexes)."""
        scratch = Journal()
        self.create_container(c, scratch)
        for iface in c.interfaces:
            self.attach_interface(cname=c.name, iface=iface, journal=scratch)
        if command is not None:
            self.start_command(dataclasses.replace(c, command=command.argv), scratch)

    def restart_command(self, cname: str, command: CommandState) -> None:
        c = self.st.spec.containers.get(cname)
        if c is not None:
            self.start_command(dataclasses.replace(c, command=command.argv), Journal())

    # -- a whole plan -----------------------------------------------------------------------
    def apply(self, plan: Plan, desired: ProjectSpec, journal: Journal) -> None:
        """Removals first (names and addresses are reused by what replaces them), each with an
        undo that rebuilds what it removed, then additions; the journal undoes all of it."""
        for cname in plan.stop_commands:
            old = self.st.commands.get(cname)
            self.stop_command(cname)
            if old is not None:
                journal.add(f"stopped command of {cname}", lambda cname=cname, old=old: self.restart_command(cname, old))
        for cname, iface in plan.remove_interfaces:
            self.detach_interface(cname, iface)
            journal.add(f"removed interface {cname}/{iface.network}",
                        lambda cname=cname, iface=iface: self.attach_interface(cname, iface, Journal()))
        for c in plan.remove_containers:
            old, command = self.st.spec.containers[c.name], self.st.commands.get(c.name)
            errors = self.remove_container(c.name)
            journal.add(f"removed container {c.name}", lambda old=old, command=command: self.restore_container(old, command))
            if errors:
                raise ApplyError("; ".join(errors))
        for net in plan.remove_networks:
            self.remove_network(net)
            journal.add(f"removed network {net.name}", lambda net=net: self.add_network(net, Journal()))
        if plan.remove_interfaces or plan.remove_containers or plan.remove_networks:
            self.backend.sync(self.st)
        for net in plan.add_networks:
            self.add_network(net, journal)
        for c in plan.add_containers:
            self.create_container(c, journal)
        for cname, iface in plan.add_interfaces:
            self.attach_interface(cname, iface, journal)
        # What changes no kernel object (published ports, aliases, interface order) is
        # recorded as desired before the tables are computed from it.
        before = (dict(self.st.spec.containers), dict(self.st.spec.networks), self.st.spec)
        journal.add("recorded settings", lambda: self._restore_records(*before))
        for cname, c in desired.containers.items():
            if cname in self.st.spec.containers:
                self.st.spec.containers[cname] = c
        self.st.spec.networks.update(desired.networks)
        self.st.spec = dataclasses.replace(self.st.spec, uplink=desired.uplink, conntrack=desired.conntrack,
                                           store=desired.store, vxlan_port=desired.vxlan_port)
        self.backend.sync(self.st)
        if plan.start_commands and self.before_commands is not None:
            self.before_commands()
        for cname in plan.start_commands:
            self.start_command(desired.containers[cname], journal)

    def _restore_records(self, containers: dict, networks: dict, spec: ProjectSpec) -> None:
        kept = {name: c for name, c in containers.items() if name in self.st.spec.containers}
        self.st.spec = dataclasses.replace(spec, containers={**self.st.spec.containers, **kept}, networks=networks)
