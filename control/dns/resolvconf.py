"""The resolv.conf a container's processes see: it names the resolver in their own namespace.

It lives beside the container's netns bind mount in the keeper's tmpfs (`rt/resolv/NETNS`,
NETNS being `<project>/<container>` as under `rt/netns/`), so it exists exactly while the
container does and vanishes with the keeper. `sandbox.enter`
bind-mounts it over /etc/resolv.conf in the private mount namespace every container process
gets (the same thing `ip netns exec` does with /etc/netns/NAME/resolv.conf).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from . import RESOLVER_ADDRESS

HOST_RESOLV_CONF = Path("/etc/resolv.conf")


def path_for(runtime: Path, netns: str) -> Path:
    return runtime / "resolv" / netns


def content(host_resolv_conf: str) -> str:
    """Docker's shape: our nameserver only, the host's search domains, ndots:0 (a name with no
    dot is tried as is first, so container names never go through the search list)."""
    search = [line.strip() for line in host_resolv_conf.splitlines() if line.strip().startswith(("search ", "domain "))]
    lines = ["# written by fastnet: the container's embedded resolver", f"nameserver {RESOLVER_ADDRESS}"]
    lines += search[-1:]
    lines.append("options ndots:0")
    return "\n".join(lines) + "\n"


def write(runtime: Path, netns: str) -> None:
    try:
        host_text = HOST_RESOLV_CONF.read_text()
    except OSError:
        host_text = ""
    path = path_for(runtime, netns)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(content(host_text))
    os.chmod(tmp, 0o644)
    tmp.rename(path)


def remove(runtime: Path, netns: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path_for(runtime, netns).unlink()
