"""Attach the socket hooks (fn_sock_*) to a cgroup through BPF links pinned beside the
programs: unpinning them (down, an upgrade removing old pins, or the keeper's bpffs going
away with the keeper) detaches them, so a dead host never leaves hooks behind."""
from __future__ import annotations

import os
from pathlib import Path

from . import declared, libbpf
from .loader import Datapath


def link_path(dp: Datapath, name: str) -> Path:
    assert dp.pin_dir is not None
    return dp.pin_dir / f"link_{name}"


def attach(dp: Datapath, cgroup_dir: Path) -> None:
    """Link every socket hook of dp to the cgroup (idempotent)."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in declared.SOCK_PROGRAMS:
            path = link_path(dp, name)
            if path.exists():
                continue
            link = libbpf.link_create(dp.progs[name], fd, declared.attach_type(name))
            try:
                libbpf.obj_pin(link, str(path))
            finally:
                os.close(link)
    finally:
        os.close(fd)
