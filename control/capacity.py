"""Limits a run would hit, found before it creates anything.

Without these checks a big `up` failed minutes in -- when the shared tables were written after
the last container, or when the keeper's tmpfs filled -- and then spent as long rolling back.
Each check compares what the host would hold after the run (every project on it, the run's
own as desired) with the limit, and names both. The datapath's table sizes are the backend's
to say (Backend.table_problems); this module checks what every backend shares: the keeper's
tmpfs, the state directory and the agent's file descriptors.
"""
from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from . import modes, reservations
from .host import Host
from .keeper import RUNTIME_BYTES
from .spec import ProjectSpec
from ..datapath.errors import FastnetError

PAGE = os.sysconf("SC_PAGE_SIZE")
# A container's footprint outside the kernel's own objects: its resolv.conf in the keeper's
# tmpfs (one page), about 1 KiB of state file per interface, and the agent's two sockets.
STATE_BYTES_PER_INTERFACE = 1024
AGENT_FDS_PER_CONTAINER = 2
AGENT_FDS_SPARE = 256  # the agent's own files, upstream queries, TCP clients
DISK_SPARE = 1 << 20


class CapacityError(FastnetError):
    """One line naming the limit and what would exceed it."""


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def namespaces(specs: list[ProjectSpec]) -> int:
    """Containers with a namespace of their own (each has a resolv.conf and resolver sockets)."""
    return sum(1 for spec in specs for c in spec.containers.values() if modes.owns_namespace(c))


def check(host: Host, desired: ProjectSpec, current: ProjectSpec | None, others: list[ProjectSpec]) -> None:
    """Raise CapacityError if the host cannot hold `desired` beside `others`."""
    keeper, agent = host.live_keeper(), host.live_agent()
    new = namespaces([desired]) - (namespaces([current]) if current else 0)
    if new > 0:
        # The keeper's tmpfs: what is free now, or all of it for a keeper not started yet.
        free = _free_bytes(Path(keeper.path_outside(host.runtime))) if keeper else RUNTIME_BYTES
        if new * PAGE > free:
            raise CapacityError(
                f"containers: {new} more containers need {new * PAGE // 1024} KiB in fastnet's runtime tmpfs "
                f"({host.runtime}), which has {free // 1024} KiB free"
            )
    interfaces = sum(len(c.interfaces) for c in desired.containers.values())
    need = interfaces * STATE_BYTES_PER_INTERFACE + DISK_SPARE
    state_dir = host.dir if host.dir.exists() else host.dir.parent
    while not state_dir.exists():
        state_dir = state_dir.parent
    if need > (free := _free_bytes(state_dir)):
        raise CapacityError(f"containers: the state file needs about {need // 1024} KiB, and {state_dir} has "
                            f"{free // 1024} KiB free")
    total = namespaces([desired, *others])
    held = len(reservations.wanted([desired, *others]))  # the iptables backend's published ports
    fds = total * AGENT_FDS_PER_CONTAINER + held + AGENT_FDS_SPARE
    limit = agent_fd_limit(agent.pid if agent else None)
    if fds > limit:
        what = f"{total} containers" + (f" and {held} reserved ports" if held else "")
        raise CapacityError(
            f"containers: {what} on this host need about {fds} open files in fastnet's agent "
            f"(a UDP and a TCP socket per container for DNS, one per port it reserves), above its limit of "
            f"{limit} (RLIMIT_NOFILE; raise the hard limit of the shell that starts fastnet, or `fastnet down` "
            "every project first)"
        )


def agent_fd_limit(agent_pid: int | None) -> int:
    """The hard RLIMIT_NOFILE of the running agent, or the one a new keeper would inherit from
    this process (the agent raises its soft limit to the hard one)."""
    if agent_pid is not None:
        try:
            for line in Path(f"/proc/{agent_pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    hard = line.split()[4]
                    return sys.maxsize if hard == "unlimited" else int(hard)
        except (OSError, IndexError, ValueError):
            pass
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return sys.maxsize if hard == resource.RLIM_INFINITY else hard
