"""Run-time statistics of loaded BPF programs: how many times they ran and for how long, as
the kernel counts them while statistics are enabled."""
from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator

from . import libbpf


@contextlib.contextmanager
def collecting() -> Iterator[None]:
    """Statistics on for the body (they cost two clock reads per program run)."""
    fd = libbpf.enable_stats()
    try:
        yield
    finally:
        os.close(fd)


def totals(prog_ids: Iterable[int]) -> tuple[int, int]:
    """(run time in ns, runs) summed over the programs; one that is gone counts nothing."""
    run_time = runs = 0
    for prog_id in prog_ids:
        try:
            fd = libbpf.prog_fd_by_id(prog_id)
        except OSError:
            continue
        try:
            info = libbpf.prog_info(fd)
        finally:
            os.close(fd)
        run_time, runs = run_time + info.run_time_ns, runs + info.run_cnt
    return run_time, runs
