"""tools.pinned: every thread of a process on one CPU for a while, then back where it was (the
bench pins the agent's resolver to dnsperf's CPU for the DNS latency figures)."""
from __future__ import annotations

import os
import threading

import pytest

from fastnet.control.bench import tools
from fastnet.control.bench.variants import BenchError


def affinities(pid: int) -> dict[int, set[int]]:
    return {int(t): os.sched_getaffinity(int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_every_thread_is_pinned_and_put_back():
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        before = affinities(os.getpid())
        assert len(before) >= 2
        with tools.pinned(os.getpid(), 0):
            assert set(map(frozenset, affinities(os.getpid()).values())) == {frozenset({0})}
        assert affinities(os.getpid()) == before
    finally:
        stop.set()
        worker.join()


def test_no_process_no_pinning_and_a_gone_one_is_an_error():
    with tools.pinned(None, 0):
        pass
    with pytest.raises(BenchError, match="is gone"):
        with tools.pinned(2**22 + 12345, 0):
            pass
