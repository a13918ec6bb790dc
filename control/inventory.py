"""Read-only views of what runs on this host, for `ps`, `inspect` and `exec`."""
from __future__ import annotations

from pyroute2 import IPRoute

from . import linux, modes, netdrivers, observe, sandbox
from .model import describe_mapping
from . import state as statestore
from .backends import backend_for
from .dns import notify as dns_notify
from .dns import resolvconf
from .host import current_host, enter_host_mounts, poke_agent
from ..datapath.errors import FastnetError


class NotFound(FastnetError):
    pass


def _interface_mac(st, iface) -> str:
    net = st.spec.networks.get(iface.network)
    return netdrivers.of(net).interface_mac(net, iface) if net is not None else iface.mac


def _project_view(host, keeper, st) -> dict:
    containers = {}
    for c in st.spec.containers.values():
        netns_path = None if modes.in_host_namespace(c) else host.netns_dir / c.netns
        cmd = st.commands.get(c.name)
        containers[c.name] = {
            "name": c.name,
            "project": st.name,
            "origin": c.origin,  # "file" (`fastnet up`) or "cni" (a container engine)
            "backend": st.spec.backend,
            "mode": modes.mode_of(c),
            # None in host mode: the host's own namespace is not the container's to report
            "netns": keeper.path_outside(netns_path) if keeper and netns_path else None,
            "running": bool(keeper) and (netns_path is None or sandbox.alive(netns_path)),
            "networks": {
                i.network: {
                    "driver": st.spec.networks[i.network].driver if i.network in st.spec.networks else None,
                    "ifname": i.ifname,
                    "ipv4": str(i.ipv4),
                    "prefixlen": i.prefixlen,
                    "mac": _interface_mac(st, i),
                    "gateway": str(i.gateway),
                    "aliases": list(i.aliases),
                    "host_ifname": i.host_ifname,
                    "host_ifindex": st.ports.get(f"{c.name}/{i.network}"),
                }
                for i in c.interfaces
            },
            "publish": [describe_mapping(m) + f"->{m.container_port_first}"
                        + (f"-{m.container_port_last}" if m.container_port_last != m.container_port_first else "")
                        for m in c.publish],
            "command": None
            if not c.command
            else {
                "argv": list(c.command),
                "pid": cmd.pid if cmd else None,
                "running": bool(cmd) and linux.process_alive(cmd.pid, cmd.start_time),
            },
        }
    return {
        "name": st.name,
        "backend": st.spec.backend,
        "uplink": st.spec.uplink,
        "source": st.source,
        "networks": {
            n.name: {"subnet": str(n.subnet), "gateway": str(n.gateway), "internal": n.internal, "driver": n.driver,
                     "parent": n.parent, "mode": n.mode}
            for n in st.spec.networks.values()
        },
        "containers": containers,
    }


def _datapath_counters(host, keeper, backend: str) -> dict:
    """The host's datapath counters (one datapath per host and backend)."""
    if keeper is None:
        return {}
    try:
        counters = backend_for(backend, host, "").counters()
    except Exception as exc:  # a view must not fail because the datapath is unreadable
        return {"error": str(exc)}
    return {prog: {k: {"packets": p, "bytes": b} for k, (p, b) in c.items()} for prog, c in counters.items()}


def host_inventory() -> dict:
    host = current_host()
    if not host.is_current():  # nothing, or what a dead namespace left
        return {"host": host.key, "keeper_pid": None, "agent_pid": None, "projects": {}, "uplinks": {}, "counters": {}}
    keeper = host.live_keeper()
    if keeper is not None:
        enter_host_mounts(keeper)
        poke_agent(host, keeper)
    projects = {}
    for name in statestore.projects(host):
        try:
            st = statestore.load(host, name)
        except statestore.StateError as exc:
            projects[name] = {"name": name, "error": str(exc), "backend": "?", "containers": {}, "networks": {}}
            continue
        if st is not None:
            projects[name] = _project_view(host, keeper, st)
    backends = sorted({p["backend"] for p in projects.values() if "error" not in p})
    uplinks = sorted({p["uplink"] for p in projects.values() if p.get("uplink")})
    with IPRoute() as ipr:
        uplink_view = {name: observe.uplink_status(ipr, name) for name in uplinks}
    return {
        "uplinks": uplink_view,
        "host": host.key,
        "keeper_pid": keeper.pid if keeper else None,
        "agent_pid": agent.pid if (agent := host.live_agent()) else None,
        "projects": projects,
        "counters": {b: _datapath_counters(host, keeper, b) for b in backends},
    }


def _resolve(name: str):
    host = current_host()
    if not host.is_current():
        raise NotFound(f"no container named {name!r} on this host")
    project, _, cname = name.rpartition("/")
    matches = []
    for pname in statestore.projects(host):
        if project and pname != project:
            continue
        try:
            st = statestore.load(host, pname)
        except statestore.StateError:
            continue
        if st is not None and cname in st.spec.containers:
            matches.append(st)
    if not matches:
        raise NotFound(f"no container named {name!r} on this host")
    if len(matches) > 1:
        options = ", ".join(f"{st.name}/{cname}" for st in matches)
        raise NotFound(f"container name {cname!r} is ambiguous: use one of {options}")
    return host, matches[0], cname


def find_container(name: str) -> dict:
    host, st, cname = _resolve(name)
    keeper = host.live_keeper()
    if keeper is not None:
        enter_host_mounts(keeper)
        poke_agent(host, keeper)
    view = _project_view(host, keeper, st)
    result = view["containers"][cname]
    result["counters"] = _datapath_counters(host, keeper, st.spec.backend)
    result["dns"] = dns_notify.container_counters(host, st.spec.containers[cname].netns) if keeper else None
    return result


def enter_container(name: str) -> None:
    host, st, cname = _resolve(name)
    keeper = host.live_keeper()
    c = st.spec.containers[cname]
    path = None if modes.in_host_namespace(c) else host.netns_dir / c.netns
    if keeper is None:
        raise NotFound(f"container {name!r} is not running (no fastnet keeper on this host)")
    enter_host_mounts(keeper)
    poke_agent(host, keeper)
    if path is not None and not sandbox.alive(path):
        raise NotFound(f"container {name!r} is not running (its namespace is gone)")
    sandbox.enter(path, resolvconf.path_for(host.runtime, c.netns) if path else None, host.runtime)


def conntrack(flush: bool = False) -> list[dict] | int:
    """The host's tracked connections as flows (the original direction with its reply
    tuple), from every backend in use, or, with flush, the number of entries removed."""
    import time

    host = current_host()
    keeper = host.live_keeper() if host.is_current() else None
    if keeper is None:
        return 0 if flush else []
    enter_host_mounts(keeper)
    poke_agent(host, keeper)
    backends = []
    for name in statestore.projects(host):
        try:
            st = statestore.load(host, name)
        except statestore.StateError:
            continue
        if st is not None and st.spec.backend not in backends:
            backends.append(st.spec.backend)
    if flush:
        return sum(backend_for(b, host, "").conntrack_flush() for b in backends)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    flows = []
    records = [r for b in backends for r in backend_for(b, host, "").conntrack()]
    # a flow lives until both its entries expired: its reply entry's deadline may be the later
    deadlines = {(r.proto, r.orig): r.expires_ns for r in records if r.reply}
    for r in records:
        if r.reply:
            continue
        ts, tsp, td, tdp = r.translated
        expires = max(r.expires_ns, deadlines.get((r.proto, (td, tdp, ts, tsp)), 0))
        flows.append(
            {
                "proto": r.proto,
                "kind": r.kind,
                "state": r.state,
                "confirmed": r.confirmed,
                "original": {"src": str(r.orig[0]), "sport": r.orig[1], "dst": str(r.orig[2]), "dport": r.orig[3]},
                "reply": {"src": str(td), "sport": tdp, "dst": str(ts), "dport": tsp},
                "age_s": round((now - r.created_ns) / 1e9, 1),
                "expires_in_s": round((expires - now) / 1e9, 1),
            }
        )
    return sorted(flows, key=lambda f: f["age_s"])
