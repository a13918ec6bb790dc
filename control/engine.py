"""`up` and `down`: validate, plan, apply with rollback, and tear down collecting errors.

The per-container operations (create_container / attach_interface / remove_container) are
callable one at a time, so a CNI-style caller can drive a single container later on.
"""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyroute2 import IPRoute

from . import failpoints, links, sandbox
from . import state as statestore
from .backends import backend_for
from .backends.base import Backend
from .config import Config, describe_mapping, mappings_overlap
from .host import Host, current_host, enter_agent_mounts, locked, start_agent, stop_agent
from .plan import Observed, Plan, make_plan
from .spec import ContainerSpec, InterfaceSpec, ProjectSpec, build
from .state import CommandState, ProjectState, port_key


class UpError(RuntimeError):
    """A failure during `up`; the message is one line and the changes were rolled back."""


@dataclass
class Journal:
    """Undo actions of the steps done so far, run in reverse on failure."""

    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self.undo.append((what, fn))

    def rollback(self) -> list[str]:
        errors = []
        for what, fn in reversed(self.undo):
            try:
                fn()
            except Exception as exc:  # keep undoing the rest
                errors.append(f"undo {what}: {exc}")
        self.undo.clear()
        return errors


@dataclass
class UpResult:
    project: str
    plan: Plan
    state: ProjectState


def empty_state(desired: ProjectSpec, source: str) -> ProjectState:
    spec = ProjectSpec(desired.name, desired.backend, desired.uplink, conntrack=desired.conntrack)
    return ProjectState(spec=spec, source=source)


class Project:
    """One project on one host, inside the agent's mount namespace."""

    def __init__(self, host: Host, st: ProjectState, backend: Backend, ipr: IPRoute):
        self.host, self.st, self.backend, self.ipr = host, st, backend, ipr

    def netns_path(self, c: ContainerSpec) -> Path:
        return self.host.netns_dir / c.netns

    # -- observe ----------------------------------------------------------------------------
    def observe(self) -> Observed:
        dead, missing, stopped = set(), set(), set()
        for c in self.st.spec.containers.values():
            if not sandbox.alive(self.netns_path(c)):
                dead.add(c.name)
                continue
            for i in c.interfaces:
                idx = self.ipr.link_lookup(ifname=i.host_ifname)
                if not idx or idx[0] != self.st.ports.get(port_key(c.name, i.network)):
                    missing.add(port_key(c.name, i.network))
            cmd = self.st.commands.get(c.name)
            if c.command and (cmd is None or not sandbox.linux.process_alive(cmd.pid, cmd.start_time)):
                stopped.add(c.name)
        return Observed(frozenset(dead), frozenset(missing), frozenset(stopped))

    # -- single-object operations ---------------------------------------------------------
    def add_network(self, net, journal: Journal) -> None:
        self.backend.add_network(self.ipr, net)
        self.st.spec.networks[net.name] = net
        journal.add(f"network {net.name}", lambda: self.remove_network(net))

    def remove_network(self, net) -> None:
        self.backend.remove_network(self.ipr, net)
        self.st.spec.networks.pop(net.name, None)

    def create_container(self, c: ContainerSpec, journal: Journal) -> None:
        sandbox.create(self.netns_path(c))
        self.st.spec.containers[c.name] = dataclasses.replace(c, interfaces=())
        journal.add(f"container {c.name}", lambda: self.remove_container(c.name))

    def attach_interface(self, cname: str, iface: InterfaceSpec, journal: Journal) -> None:
        c = self.st.spec.containers[cname]
        net = self.st.spec.networks[iface.network]
        ifindex = links.create_veth(self.ipr, iface, self.netns_path(c), self.backend.host_mac(net))
        journal.add(f"interface {cname}/{iface.network}", lambda: self.detach_interface(cname, iface))
        self.st.ports[port_key(cname, iface.network)] = ifindex
        self.st.spec.containers[cname] = dataclasses.replace(c, interfaces=c.interfaces + (iface,))
        links.configure_container_side(self.netns_path(c), iface)
        self.backend.attach_port(self.ipr, net, iface, ifindex)
        failpoints.check(f"attach_interface:{cname}/{iface.network}")

    def detach_interface(self, cname: str, iface: InterfaceSpec) -> None:
        links.delete_link(self.ipr, iface.host_ifname)
        self.st.ports.pop(port_key(cname, iface.network), None)
        c = self.st.spec.containers.get(cname)
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
        steps += [("namespace", lambda: sandbox.remove(self.netns_path(c)))]
        for what, fn in steps:
            try:
                fn()
            except Exception as exc:
                errors.append(f"container {cname}: {what}: {exc}")
        self.st.spec.containers.pop(cname, None)
        return errors

    def start_command(self, c: ContainerSpec, journal: Journal) -> None:
        assert c.command
        pid, start = sandbox.spawn(
            self.netns_path(c),
            c.command,
            self.host.dir / "logs" / f"{self.st.name}-{c.name}.log",
            f"{self.host.key}/{self.st.name}/{c.name}",
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
                raise UpError("; ".join(errors))
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
        self.st.spec = dataclasses.replace(self.st.spec, uplink=desired.uplink, conntrack=desired.conntrack)
        self.backend.sync(self.st)
        for cname in plan.start_commands:
            self.start_command(desired.containers[cname], journal)

    def _restore_records(self, containers: dict, networks: dict, spec: ProjectSpec) -> None:
        kept = {name: c for name, c in containers.items() if name in self.st.spec.containers}
        self.st.spec = dataclasses.replace(spec, containers={**self.st.spec.containers, **kept}, networks=networks)


def preflight(desired: ProjectSpec, current: ProjectState | None, others: list[ProjectState], ipr: IPRoute) -> None:
    """Everything that can be checked before the first change. `others`: the other projects
    on this host, which share its addresses, ports and datapath."""
    for other in others:
        if other.spec.backend == desired.backend and other.spec.conntrack != desired.conntrack:
            raise UpError(
                f"conntrack: settings differ from those of project {other.name} on this host "
                "(one datapath serves every project of a host)"
            )
    for c in desired.containers.values():
        for m in c.publish:
            for other in others:
                for oc in other.spec.containers.values():
                    clash = next((om for om in oc.publish if mappings_overlap(om, m)), None)
                    if clash is not None:
                        raise UpError(
                            f"containers.{c.name}.publish: {describe_mapping(m)} overlaps "
                            f"{describe_mapping(clash)} already published by {other.name}/{oc.name}"
                        )
    if desired.uplink and not ipr.link_lookup(ifname=desired.uplink):
        raise UpError(f"uplink: no interface named {desired.uplink!r} on this host")
    owned = {alias for _, _, alias in links.owned_links(ipr, desired.name)}
    for c in desired.containers.values():
        for i in c.interfaces:
            found = ipr.link_lookup(ifname=i.host_ifname)
            if found and i.alias not in owned:
                raise UpError(
                    f"containers.{c.name}: interface {i.host_ifname} (for network {i.network}) "
                    "already exists on this host and is not fastnet's"
                )
    ours = {n.subnet for n in current.spec.networks.values()} if current else set()
    for net in desired.networks.values():
        for route in ipr.get_routes(family=2, table=254):
            plen = route["dst_len"]
            dst = route.get_attr("RTA_DST")
            if plen == 0 or dst is None:
                continue
            other = ipaddress.IPv4Network(f"{dst}/{plen}", strict=False)
            if not other.overlaps(net.subnet):
                continue
            if route["proto"] == links.RTPROT_FASTNET and (
                other in ours or plen == 32 or route.get_attr("RTA_PRIORITY") == links.route_metric(desired.name)
            ):
                continue
            owner = "another fastnet project" if route["proto"] == links.RTPROT_FASTNET else "a route on this host"
            raise UpError(f"networks.{net.name}.subnet: {net.subnet} overlaps {other} ({owner})")
    for c in desired.containers.values():
        if c.command and sandbox.resolve_command(c.command) is None:
            raise UpError(f"containers.{c.name}.command: {c.command[0]!r} is not an executable on this host")


def default_uplink(ipr: IPRoute) -> str | None:
    """The interface holding the host's IPv4 default route, if any."""
    for route in ipr.get_routes(family=2, table=254):
        if route["dst_len"] == 0 and route.get_attr("RTA_OIF"):
            links_ = ipr.get_links(route.get_attr("RTA_OIF"))
            if links_:
                return links_[0].get_attr("IFLA_IFNAME")
    return None


def up(config: Config) -> UpResult:
    host = current_host()
    with locked(host):
        try:
            current = statestore.load(host, config.name)
        except statestore.StateError as exc:
            raise UpError(f"{exc}; run `fastnet down -p {config.name}` to remove what it owns") from exc
        if current is not None and current.spec.backend != config.backend:
            raise UpError(
                f"backend: project {config.name} runs on {current.spec.backend}; "
                f"run `fastnet down` before switching to {config.backend}"
            )
        others = [ost for name in statestore.projects(host) if name != config.name and (ost := _load_or_none(host, name))]
        foreign = frozenset(n.net_id for ost in others for n in ost.spec.networks.values())
        try:
            desired = build(config, current.spec if current else None, foreign)
        except Exception as exc:  # ipam exhaustion and the like
            raise UpError(str(exc)) from exc
        with IPRoute() as ipr:
            if desired.uplink is None:
                desired = dataclasses.replace(desired, uplink=default_uplink(ipr))
            preflight(desired, current, others, ipr)
        agent = host.live_agent() or start_agent(host)
        enter_agent_mounts(agent)
        st = current or empty_state(desired, config.source)
        st.source = config.source
        backend = backend_for(desired.backend, host, desired.name)
        journal = Journal()
        with IPRoute() as ipr:
            project = Project(host, st, backend, ipr)
            plan = make_plan(st.spec, desired, project.observe())
            try:
                backend.prepare(desired)
                project.apply(plan, desired, journal)
            except BaseException as exc:
                undo_errors = journal.rollback()
                _finish(host, st, backend)
                detail = f" (rollback: {'; '.join(undo_errors)})" if undo_errors else ""
                raise UpError(f"{_one_line(exc)}; rolled back{detail}") from exc
            statestore.save(host, st)
        return UpResult(desired.name, plan, st)


def _load_or_none(host: Host, name: str) -> ProjectState | None:
    """Another project's state, for checks; an unreadable one is skipped, not fatal."""
    try:
        return statestore.load(host, name)
    except statestore.StateError:
        return None


def _finish(host: Host, st: ProjectState, backend: Backend) -> None:
    """After a rollback: record what is left and bring the datapath in line with it, or forget
    a project that has nothing left."""
    if st.spec.containers or st.spec.networks:
        statestore.save(host, st)
        with contextlib.suppress(Exception):  # the rollback error is the one to report
            backend.prepare(st.spec)
            backend.sync(st)
        return
    statestore.remove(host, st.name)
    with contextlib.suppress(Exception):
        backend.teardown()
    _stop_agent_if_idle(host)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stop_agent_if_idle(host: Host) -> None:
    """With no project left, the host keeps no agent and no files but its lock (removing a
    lock file others may be waiting on would let two invocations in at once)."""
    if statestore.projects(host):
        return
    stop_agent(host)
    for child in host.dir.iterdir():
        if child.name == "lock":
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


@dataclass
class DownReport:
    errors: list[str] = field(default_factory=list)  # what could not be removed
    notes: list[str] = field(default_factory=list)  # what the user should know


def down(project_name: str, config: Config | None = None) -> DownReport:
    """Remove every trace of the project on this host, keeping going past errors."""
    host = current_host()
    report = DownReport()
    errors = report.errors
    with locked(host):
        try:
            st = statestore.load(host, project_name)
        except statestore.StateError as exc:
            report.notes.append(f"{exc}: removed what the project owns by its names and tags")
            st = None
        agent = host.live_agent()
        if agent is not None:
            enter_agent_mounts(agent)
        backend_name = st.spec.backend if st else (config.backend if config else "ebpf")
        backend = backend_for(backend_name, host, project_name)
        st = st or ProjectState(spec=ProjectSpec(project_name, backend_name, None))
        with IPRoute() as ipr:
            project = Project(host, st, backend, ipr)
            for cname in list(st.spec.containers):
                errors += project.remove_container(cname)
            # Whatever the state file does not know about, found by deterministic names and tags.
            for _, name, alias in links.owned_links(ipr, project_name):
                try:
                    links.delete_link(ipr, name)
                except Exception as exc:
                    errors.append(f"link {name} ({alias}): {exc}")
            if agent is not None and host.netns_dir.is_dir():
                for path in host.netns_dir.glob(f"{project_name}-*"):
                    try:
                        sandbox.remove(path)
                    except Exception as exc:
                        errors.append(f"namespace {path.name}: {exc}")
            nets = list(st.spec.networks.values())
            known = {n.subnet for n in nets}
            nets += [n for n in backend.owned_networks(ipr) if n.subnet not in known]
            for net in nets:
                try:
                    project.remove_network(net)
                except Exception as exc:
                    errors.append(f"network {net.name}: {exc}")
        statestore.remove(host, project_name)
        try:
            backend.teardown()
        except Exception as exc:
            errors.append(f"datapath: {exc}")
        _stop_agent_if_idle(host)
    return report

