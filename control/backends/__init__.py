"""Backends build the host side of fastnet's networks; everything else is shared."""
from __future__ import annotations

from .base import Backend
from .ebpf import EbpfBackend
from .iptables import IptablesBackend


BACKENDS = {"ebpf": EbpfBackend, "iptables": IptablesBackend}


def backend_for(name: str, host, project: str) -> Backend:
    return BACKENDS[name](host, project)
