"""`up` and `down` of a whole project: validate, plan, apply with rollback (control/project.py
holds the single-object steps), and tear down collecting errors."""
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import shutil
from dataclasses import dataclass, field

from pyroute2 import IPRoute

from . import capacity, interrupt, links, listeners, logs, modes, netdrivers, observe, sandbox
from . import state as statestore
from .backends import BACKENDS, backend_for
from .backends.base import Backend
from .config import Config
from .model import ORIGIN_FILE, SOURCE_CNI, PortMapping, describe_mapping, mappings_overlap
from .dns import notify as dns_notify
from .host import Host, HostError, current_host, enter_host_mounts, ensure_running, locked, stop_keeper, wait_for_agent
from .plan import Plan, make_plan
from .project import ApplyError, Journal, Project, empty_state
from .spec import ProjectSpec, build, link_alias
from .state import ProjectState
from ..datapath.errors import FastnetError


class UpError(FastnetError):
    """A failure during `up`; the message is one line and the changes were rolled back.
    exit_status: 1, or 128 + the signal that interrupted the run."""

    def __init__(self, message: str, exit_status: int = 1):
        super().__init__(message)
        self.exit_status = exit_status


@dataclass
class UpResult:
    project: str
    plan: Plan
    state: ProjectState


def preflight(host: Host, desired: ProjectSpec, current: ProjectState | None, others: list[ProjectState],
              ipr: IPRoute, publish_ephemeral_ports: bool = False) -> None:
    """Everything that can be checked before the first change. `others`: the other projects
    on this host, which share its addresses, ports and datapath. `publish_ephemeral_ports`:
    the file's key of that name (see _preflight_ephemeral_ports)."""
    problem = BACKENDS[desired.backend].table_problems(
        [desired, *(o.spec for o in others if o.spec.backend == desired.backend)])
    if problem:
        raise UpError(problem)
    try:
        capacity.check(host, desired, current.spec if current else None, [o.spec for o in others])
    except capacity.CapacityError as exc:
        raise UpError(str(exc)) from exc
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
    _preflight_host_ports(desired, current, others)
    if not publish_ephemeral_ports:
        _preflight_ephemeral_ports(desired)
    if desired.uplink and not ipr.link_lookup(ifname=desired.uplink):
        raise UpError(f"uplink: no interface named {desired.uplink!r} on this host")
    aliases = links.link_aliases(ipr)  # one dump, not a lookup per port
    owned = {alias for alias in aliases.values() if alias.startswith(link_alias(desired.name) + "/")}
    for c in desired.containers.values():
        for i in c.interfaces:
            if i.host_ifname in aliases and i.alias not in owned:
                raise UpError(
                    f"containers.{c.name}: interface {i.host_ifname} (for network {i.network}) "
                    "already exists on this host and is not fastnet's"
                )
    ours = {n.subnet for n in current.spec.networks.values()} if current else set()
    _preflight_drivers(desired, others, ipr)
    for net in desired.networks.values():
        # A macvlan/ipvlan subnet lives on its parent's segment: the parent's own routes are
        # expected to cover it.
        on_parent = set(ipr.link_lookup(ifname=net.parent)) if net.parent else set()
        for route in ipr.get_routes(family=2, table=254):
            if route.get_attr("RTA_OIF") in on_parent:
                continue
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


def _preflight_host_ports(desired: ProjectSpec, current: ProjectState | None, others: list[ProjectState]) -> None:
    """A port the run would publish must not be held by a socket of the host (a listening TCP
    or a bound UDP socket on an overlapping address), as Docker's own bind would fail: else
    publishing would silently take it over. Sockets on ports this project or another one
    already publishes are not host processes' (the iptables backend's reservations, or binds
    the bind hooks allowed next to a port published on one address)."""
    wanted: dict[tuple[str, int], list[tuple[str, PortMapping]]] = {}  # (protocol, port) -> its entries
    for c in desired.containers.values():
        for m in c.publish:
            for port in range(m.host_port_first, m.host_port_last + 1):
                wanted.setdefault((m.proto, port), []).append((c.name, m))
    if not wanted:
        return
    published = listeners.published_index(
        m for st in ([current] if current else []) + others for c in st.spec.containers.values() for m in c.publish
    )
    for s in listeners.host_listeners():
        if (s.proto, s.port) not in wanted or listeners.covered(s, published):
            continue
        for name, m in wanted[(s.proto, s.port)]:
            if listeners.conflicts(m, s):
                raise UpError(
                    f"containers.{name}.publish: {describe_mapping(m)}: port {s.port} is in use on this host "
                    f"{listeners.holder(s)}"
                )


def _preflight_ephemeral_ports(desired: ProjectSpec) -> None:
    """ebpf: no published port in the host's ip_local_port_range. The host's kernel picks its
    own connections' source ports there, and a datagram answering one of them looks like a new
    flow to the published port (a TCP reply does not: a new inbound TCP flow starts only with a
    SYN, but the port is still the host's as much as the container's). The iptables backend
    holds every published port with a bound socket, as dockerd does, so the kernel never picks
    one. `publish_ephemeral_ports: true` in the file accepts it."""
    if desired.backend != "ebpf":
        return
    lo, hi = observe.local_port_range()
    for c in desired.containers.values():
        for m in c.publish:
            if m.host_port_first <= hi and lo <= m.host_port_last:
                raise UpError(
                    f"containers.{c.name}.publish: {describe_mapping(m)} is in the host's ephemeral port range "
                    f"{lo}-{hi} (net.ipv4.ip_local_port_range), where its own connections take their source "
                    "ports, and answers to those would go to the container; publish outside that range, or set "
                    "publish_ephemeral_ports: true to accept it"
                )


def _preflight_drivers(desired: ProjectSpec, others: list[ProjectState], ipr: IPRoute) -> None:
    """What each network's driver needs of the host (macvlan/ipvlan: the parent, the backend)."""
    for net in desired.networks.values():
        problem = netdrivers.of(net).preflight(ipr, net, desired, [o.spec for o in others])
        if problem:
            raise UpError(problem)


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
        try:
            # What an unreadable file describes must never be lost: one datapath and one set of
            # tables serve every project of the host, and a rebuild without it would drop it.
            others = statestore.load_all(host, besides=config.name)
        except statestore.StateError as exc:
            raise UpError(f"{exc}: fastnet will not rebuild the host's shared tables without it; "
                          "repair or remove that file (or take its project down)") from exc
        foreign = frozenset(n.net_id for ost in others for n in ost.spec.networks.values())
        with IPRoute() as ipr:
            uplink = config.uplink or default_uplink(ipr)
            found = ipr.link_lookup(ifname=uplink) if uplink else []
            mtu = observe.link_mtu(ipr, found[0]) or None if found else None

            def rebuild(taken=None, claimed=None) -> ProjectSpec:
                spec = build(config, current.spec if current else None, foreign, mtu, taken, claimed)
                return spec if spec.uplink is not None else dataclasses.replace(spec, uplink=uplink)

            try:
                desired = rebuild()
                # Networks shared beyond this host (overlay: the store) agree on names and
                # addresses before anything is made.
                for driver in sorted({netdrivers.of(n) for n in desired.networks.values()}, key=lambda d: d.name):
                    desired = driver.settle(desired, rebuild, current.spec if current else None)
            except Exception as exc:  # ipam exhaustion, an unreachable store and the like
                raise UpError(one_line(exc)) from exc
            preflight(host, desired, current, others, ipr, config.publish_ephemeral_ports)
        try:
            keeper = ensure_running(host)
        except HostError as exc:
            raise UpError(str(exc)) from exc
        enter_host_mounts(keeper)
        st = current or empty_state(desired, config.source)
        st.source = config.source
        backend = backend_for(desired.backend, host, desired.name)
        journal = Journal(interruptible=True)
        with IPRoute() as ipr, interrupt.deferred():
            project = Project(host, st, backend, ipr)
            project.before_commands = lambda: _publish_names(host, st)
            try:
                backend.prepare(desired)  # refuses a newer fastnet's datapath before any change
                # A run killed before its last record left objects no state knows of: they go
                # first (they may hold the very names and addresses this run assigns).
                swept = project.sweep_unrecorded(frozenset(n.subnet for o in others for n in o.spec.networks.values()))
                if swept:
                    raise ApplyError("; ".join(swept))
                plan = make_plan(st.spec, desired, project.observe())
                interrupt.checkpoint()
                project.apply(plan, desired, journal)
                interrupt.checkpoint()  # a signal after the last step still undoes the run
            except BaseException as exc:
                undo_errors = journal.rollback()
                settle_after_rollback(host, st, backend)
                detail = f" (rollback: {'; '.join(undo_errors)})" if undo_errors else ""
                status = exc.exit_status if isinstance(exc, interrupt.Interrupted) else 1
                raise UpError(f"{one_line(exc)}; rolled back{detail}", status) from exc
            statestore.save(host, st)
        dns_notify.reload(host, st.name)
        return UpResult(desired.name, plan, st)


def _publish_names(host: Host, st: ProjectState) -> None:
    """Record what exists so far and have the resolver serve it."""
    statestore.save(host, st)
    dns_notify.reload(host, st.name)


def settle_after_rollback(host: Host, st: ProjectState, backend: Backend) -> None:
    """After a rollback: record what is left and bring the datapath in line with it, or forget
    a project that has nothing left."""
    if st.spec.containers or st.spec.networks:
        statestore.save(host, st)
        with contextlib.suppress(Exception):  # the rollback error is the one to report
            backend.prepare(st.spec)
            backend.sync(st)
        dns_notify.reload(host, st.name)
        return
    statestore.remove(host, st.name)
    with contextlib.suppress(Exception):
        backend.teardown()
    if statestore.projects(host):
        dns_notify.reload(host, st.name)
    _stop_keeper_if_idle(host)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _stop_keeper_if_idle(host: Host) -> None:
    """With no project left, the host keeps no keeper and no files but its lock (removing a
    lock file others may be waiting on would let two invocations in at once)."""
    if statestore.projects(host):
        return
    stop_keeper(host)
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


def _foreign_subnets(host: Host, project: str) -> frozenset:
    """The subnets other projects' readable state files record (what `down` must not touch)."""
    subnets = set()
    for name in statestore.projects(host):
        with contextlib.suppress(statestore.StateError):
            if name != project and (st := statestore.load(host, name)) is not None:
                subnets |= {n.subnet for n in st.spec.networks.values()}
    return frozenset(subnets)


def _down_keeping_adopted(host: Host, st: ProjectState, backend: Backend, report: DownReport) -> None:
    """`down` of a project a container engine also attached containers to (through CNI): what
    the file made goes; those containers stay, with the networks they are on, until their
    runtime's DEL (the last one takes the project with it)."""
    adopted = [c for c in st.spec.containers.values() if c.origin != ORIGIN_FILE]
    used = {i.network for c in adopted for i in c.interfaces}
    with IPRoute() as ipr:
        project = Project(host, st, backend, ipr)
        for c in modes.removal_order([c for c in st.spec.containers.values() if c.origin == ORIGIN_FILE]):
            report.errors += project.remove_container(c.name)
        for net in [n for n in st.spec.networks.values() if n.name not in used]:
            try:
                project.remove_network(net)
            except Exception as exc:
                report.errors.append(f"network {net.name}: {exc}")
    st.source = SOURCE_CNI
    statestore.save(host, st)
    try:
        backend.prepare(st.spec)
        backend.sync(st)
    except Exception as exc:
        report.errors.append(f"{backend.name} datapath: {exc}")
    dns_notify.reload(host, st.name)
    names = ", ".join(sorted(c.name for c in adopted))
    report.notes.append(f"kept the containers attached through CNI ({names}) and their networks "
                        f"({', '.join(sorted(used))}): their runtime detaches them")


def down(project_name: str, config: Config | None = None) -> DownReport:
    """Remove every trace of the project on this host, keeping going past errors. SIGINT,
    SIGTERM and SIGHUP wait until it is done: an interrupted teardown would only leave more
    for the next one."""
    host = current_host()
    report = DownReport()
    errors = report.errors
    with locked(host), interrupt.deferred():
        try:
            st = statestore.load(host, project_name)
        except statestore.StateError as exc:
            report.notes.append(f"{exc}: removed what the project owns by its names and tags")
            st = None
        keeper = host.live_keeper()
        if keeper is not None:
            enter_host_mounts(keeper)
            with contextlib.suppress(HostError):  # the DNS reload below wants it; down goes on without
                wait_for_agent(host, keeper)
        known_backend = st is not None or config is not None
        backend_name = st.spec.backend if st else (config.backend if config else "ebpf")
        backend = backend_for(backend_name, host, project_name)
        st = st or ProjectState(spec=ProjectSpec(project_name, backend_name, None))
        if any(c.origin != ORIGIN_FILE for c in st.spec.containers.values()):
            _down_keeping_adopted(host, st, backend, report)
            return report
        with IPRoute() as ipr:
            project = Project(host, st, backend, ipr)
            for c in modes.removal_order(list(st.spec.containers.values())):
                errors += project.remove_container(c.name)
            nets = list(st.spec.networks.values())
            for net in nets:
                try:
                    project.remove_network(net)
                except Exception as exc:
                    errors.append(f"network {net.name}: {exc}")
            # Whatever the state file does not know about, found by its tags: with the recorded
            # containers and networks gone, that is everything else the project owns.
            errors += project.sweep_unrecorded(_foreign_subnets(host, project_name))
            for tree in (host.netns_dir / project_name, host.runtime / "resolv" / project_name):
                with contextlib.suppress(OSError):
                    tree.rmdir()
            # 802.1Q sub-interfaces no other project uses, also when the state file is gone
            try:
                errors += netdrivers.vlan.prune(ipr, host, project_name)
            except statestore.StateError as exc:
                errors.append(f"802.1Q sub-interfaces kept: {exc}")
        logs.remove_project(host.dir, project_name)
        statestore.remove(host, project_name)
        if statestore.projects(host):  # else the keeper is about to stop
            dns_notify.reload(host, project_name)
        # Without a state file the backend is unknown: every backend lets go of the project
        # (a backend's teardown is harmless when it owns nothing of it).
        backends = [backend] if known_backend else [backend_for(b, host, project_name) for b in BACKENDS]
        for b in backends:
            try:
                b.teardown()
            except statestore.StateError as exc:
                errors.append(f"{b.name} datapath: its shared tables were left as they are: {exc}")
            except Exception as exc:
                errors.append(f"{b.name} datapath: {exc}")
        _stop_keeper_if_idle(host)
    return report
