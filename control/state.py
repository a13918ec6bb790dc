"""The ownership record of a project on a host: what fastnet made, as it exists now.

One JSON file per project under the host's state directory, replaced atomically. It records
the applied spec plus the facts the kernel assigned (ifindexes, command pids), and is
rewritten after every run, including a failed one that rolled back.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from .model import ORIGIN_FILE, Conntrack, PortMapping
from .host import Host
from .spec import ContainerSpec, InterfaceSpec, NetworkSpec, ProjectSpec
from ..datapath.errors import FastnetError

FORMAT = 7


class StateError(FastnetError):
    """A state file that cannot be read (damaged, or written by a newer fastnet)."""


def _v1_to_v2(d: dict) -> dict:
    """Format 2 added network modes and published ports; absent means none."""
    for c in d["spec"]["containers"].values():
        c.setdefault("publish", [])
        c.setdefault("network_mode", None)
    return d


def _v2_to_v3(d: dict) -> dict:
    """Format 3 binds a container's namespace at `<project>/<container>` instead of
    `<project>-<container>` (a prefix another project's names could share)."""
    project = d["spec"]["name"]
    names = set(d["spec"]["containers"])
    for c in d["spec"]["containers"].values():
        prefix = f"{project}-"
        if c["netns"].startswith(prefix) and c["netns"][len(prefix):] in names:
            c["netns"] = f"{project}/{c['netns'][len(prefix):]}"
    return d


def _v3_to_v4(d: dict) -> dict:
    """Format 4 added the conntrack budget settings; absent means the defaults."""
    d["spec"]["conntrack"].setdefault("inbound_percent", Conntrack.inbound_percent)
    d["spec"]["conntrack"].setdefault("owner_percent", Conntrack.owner_percent)
    return d


def _v4_to_v5(d: dict) -> dict:
    """Format 5 added the half-closed TCP timeout; absent means the default."""
    d["spec"]["conntrack"].setdefault("tcp_half_closed", Conntrack.tcp_half_closed)
    return d


# format N -> the function that turns it into format N + 1; a file is read by applying them in turn
def _v5_to_v6(d: dict) -> dict:
    """Format 6 added where each container came from (a file, or an engine through CNI: an
    older fastnet, blind to it, would remove an engine's containers and kill their processes),
    the CNI attachments, and interface MTUs; absent: from a file, none, the kernel's."""
    for c in d["spec"]["containers"].values():
        c.setdefault("origin", ORIGIN_FILE)
        for i in c["interfaces"]:
            i.setdefault("mtu", None)
    for n in d["spec"]["networks"].values():
        n.setdefault("mtu", None)
    d.setdefault("cni", {})
    return d


def _v6_to_v7(d: dict) -> dict:
    """Format 7 added overlay networks: a network's VNI, the project's store and VXLAN port;
    absent: none, none, the default."""
    for n in d["spec"]["networks"].values():
        n.setdefault("vni", None)
    d["spec"].setdefault("store", None)
    d["spec"].setdefault("vxlan_port", 4789)
    return d


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7}


@dataclass
class CommandState:
    pid: int
    start_time: int
    argv: tuple[str, ...]


@dataclass
class ProjectState:
    """What exists. `spec` holds only containers/interfaces/networks that were made."""

    spec: ProjectSpec
    source: str = ""
    ports: dict[str, int] = field(default_factory=dict)  # "container/network" -> host ifindex
    commands: dict[str, CommandState] = field(default_factory=dict)
    # container -> what the CNI runtime gave and got for it (control/cni/attach.py's record)
    cni: dict[str, dict] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


def port_key(container: str, network: str) -> str:
    return f"{container}/{network}"


def _encode(obj):
    if isinstance(obj, (IPv4Address, IPv4Network)):
        return str(obj)
    if dataclasses.is_dataclass(obj):
        return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def to_json(st: ProjectState) -> str:
    return json.dumps({"format": FORMAT, **_encode(st)}, indent=1, sort_keys=True)


class NewerFormat(ValueError):
    pass


def from_json(text: str) -> ProjectState:
    d = json.loads(text)
    version = d.get("format")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"unknown state format {version!r}")
    if version > FORMAT:
        raise NewerFormat(f"written by a newer fastnet (state format {version}; this one reads up to {FORMAT})")
    while version < FORMAT:
        d = MIGRATIONS[version](d)
        version += 1
    s = d["spec"]
    networks = {
        k: NetworkSpec(v["name"], v["net_id"], IPv4Network(v["subnet"]), IPv4Address(v["gateway"]), v["internal"], v["driver"],
                       v.get("parent"), v.get("mode"), v["mtu"], v["vni"])
        for k, v in s["networks"].items()
    }
    containers = {}
    for k, v in s["containers"].items():
        ifaces = tuple(
            InterfaceSpec(
                network=i["network"],
                ifname=i["ifname"],
                host_ifname=i["host_ifname"],
                alias=i["alias"],
                ipv4=IPv4Address(i["ipv4"]),
                prefixlen=i["prefixlen"],
                gateway=IPv4Address(i["gateway"]),
                default_route=i["default_route"],
                aliases=tuple(i["aliases"]),
                mtu=i["mtu"],
            )
            for i in v["interfaces"]
        )
        publish = tuple(
            PortMapping(
                IPv4Address(m["host_ip"]) if m["host_ip"] else None,
                m["host_port_first"],
                m["host_port_last"],
                m["container_port_first"],
                m["container_port_last"],
                m["proto"],
            )
            for m in v.get("publish", ())
        )
        containers[k] = ContainerSpec(
            v["name"], v["netns"], ifaces, tuple(v["command"]) if v["command"] else None, publish,
            v.get("network_mode"),  # absent in files written before network modes
            v["origin"],
        )
    spec = ProjectSpec(s["name"], s["backend"], s["uplink"], networks, containers, Conntrack(**s["conntrack"]),
                       s["store"], s["vxlan_port"])
    commands = {k: CommandState(v["pid"], v["start_time"], tuple(v["argv"])) for k, v in d["commands"].items()}
    return ProjectState(spec=spec, source=d["source"], ports=dict(d["ports"]), commands=commands, cni=d["cni"])


def path_of(host: Host, project: str) -> Path:
    return host.projects_dir / f"{project}.json"


def load(host: Host, project: str) -> ProjectState | None:
    path = path_of(host, project)
    try:
        return from_json(path.read_text())
    except FileNotFoundError:
        return None
    except NewerFormat as exc:
        raise StateError(f"state file {path} was {exc}") from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"state file {path} is unreadable ({type(exc).__name__}: {exc})") from exc


def save(host: Host, st: ProjectState) -> None:
    host.projects_dir.mkdir(parents=True, exist_ok=True)
    path = path_of(host, st.name)
    tmp = path.with_suffix(f".tmp.{os.getpid()}")
    tmp.write_text(to_json(st))
    os.replace(tmp, path)


def remove(host: Host, project: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path_of(host, project).unlink()


def projects(host: Host) -> list[str]:
    if not host.projects_dir.is_dir():
        return []
    return sorted(p.stem for p in host.projects_dir.glob("*.json"))


def load_all(host: Host, besides: str | None = None) -> list[ProjectState]:
    """Every project's state on the host but `besides`. Raises StateError for the first file
    that cannot be read: callers that compute something for the whole host (its shared tables,
    the sub-interfaces in use) must not compute it without what that file describes."""
    states = []
    for name in projects(host):
        if name != besides and (st := load(host, name)) is not None:
            states.append(st)
    return states


def backend_states(host: Host, backend: str, current: ProjectState | None) -> list[ProjectState]:
    """Every project of `backend` on the host, with `current` as it is in memory (one backend's
    tables serve all of them). Raises StateError as load_all does."""
    others = load_all(host, besides=current.name if current is not None else None)
    return ([current] if current is not None else []) + [st for st in others if st.spec.backend == backend]
