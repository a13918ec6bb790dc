"""Backends build the host side of fastnet's networks; everything else is shared."""
from __future__ import annotations

from .base import Backend
from .ebpf import EbpfBackend


def backend_for(name: str, host, project: str) -> Backend:
    if name == "ebpf":
        return EbpfBackend(host, project)
    raise ValueError(f"backend {name!r} is not available yet")
