"""Docker's network modes besides attaching to networks: `host`, `none` and `container:NAME`.

What each mode owns, and so what `up` creates and `down` removes:

    mode            namespace its processes run in         kernel objects fastnet makes
    (none given)    its own                                 the namespace, one veth per network
    none            its own, with only lo (up)              the namespace
    host            the host's (the one fastnet serves)     nothing but its command process
    container:NAME  NAME's                                  nothing but its command process

`ContainerSpec.netns` names the namespace the container's processes run in ("" = the host's),
so `exec` and `command:` need no mode logic. Docker lets a container:-moded container break
when NAME is removed or recreated; fastnet instead keeps the pair consistent: NAME is created
before the containers sharing its namespace and removed after them, and whenever NAME's
namespace is recreated (its mode changed, it died) those containers are recreated with it, so
their commands run in the new namespace. config.py refuses what this cannot order: NAME
unknown, itself, or itself container:-moded (chains).
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Iterable

from .model import CONTAINER_MODE_PREFIX
from .spec import ContainerSpec

HOST_NAMESPACE = ""  # ContainerSpec.netns of a container running in the host's namespace
DEFAULT_MODE = "bridge"  # what `ps` and `inspect` show for a container attached to networks
TAG_VARIABLE = "FASTNET_CONTAINER"  # set by sandbox.spawn on every command it starts
STOP_GRACE = 2.0


def mode_of(c: ContainerSpec) -> str:
    """The mode as `ps` and `inspect` show it: "bridge", "host", "none" or "container:NAME"."""
    return c.network_mode or DEFAULT_MODE


def shared_with(c: ContainerSpec) -> str | None:
    """NAME for a container:NAME container, else None."""
    mode = c.network_mode or ""
    return mode[len(CONTAINER_MODE_PREFIX):] if mode.startswith(CONTAINER_MODE_PREFIX) else None


def owns_namespace(c: ContainerSpec) -> bool:
    """Whether fastnet creates (and removes) a namespace for this container."""
    return c.network_mode in (None, "none")


def in_host_namespace(c: ContainerSpec) -> bool:
    return c.netns == HOST_NAMESPACE


def creation_order(containers: Iterable[ContainerSpec]) -> list[ContainerSpec]:
    """Namespace owners first, then the containers sharing one (stable otherwise)."""
    return sorted(containers, key=lambda c: shared_with(c) is not None)


def removal_order(containers: Iterable[ContainerSpec]) -> list[ContainerSpec]:
    """The containers sharing a namespace first, then the owners (stable otherwise)."""
    return sorted(containers, key=lambda c: shared_with(c) is None)


def sharing(containers: Iterable[ContainerSpec], owners: set[str]) -> set[str]:
    """The containers that run in the namespace of one of `owners`."""
    return {c.name for c in containers if shared_with(c) in owners}


def loopback_up(netns: Path) -> None:
    """A `none` container still has a working lo (as in Docker); networked ones get it up
    with their first interface."""
    from . import links, sandbox  # they import pyroute2; keep this module light for config users

    with sandbox.netlink(netns) as ipr:
        ipr.link("set", index=links.LOOPBACK_IFINDEX, state="up")


def tag(host_key: str, project: str, container: str) -> str:
    """The value of TAG_VARIABLE for a container's command: exact owner, no prefix shared
    between projects (names cannot contain '/')."""
    return f"{host_key}/{project}/{container}"


def project_tag_prefix(host_key: str, project: str) -> str:
    return f"{host_key}/{project}/"


def tagged_processes(tag_prefix: str) -> dict[int, str]:
    """pid -> container of the processes whose FASTNET_CONTAINER starts with tag_prefix:
    commands fastnet started and whatever they started in turn (the variable is inherited)."""
    want = f"{TAG_VARIABLE}={tag_prefix}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        for item in env.split(b"\0"):
            if item.startswith(want):
                found[int(entry)] = item[len(want):].decode(errors="replace")
                break
    return found


def stop_tagged(tag_prefix: str, keep: frozenset[str] | set[str] = frozenset()) -> list[int]:
    """Stop every process tagged with tag_prefix but those of the containers in `keep` (SIGTERM,
    then SIGKILL after a grace period); returns the pids that were found. This is how `down`
    finds a host-mode command when the state file is gone (such a process is in no namespace
    fastnet could remove), and how `up` stops the commands a killed run started."""
    def doomed() -> list[int]:
        return [pid for pid, container in tagged_processes(tag_prefix).items() if container not in keep]

    pids = doomed()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = doomed()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids
