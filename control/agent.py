"""The per-host agent: holds a private mount namespace with fastnet's tmpfs and bpffs, runs
the containers' DNS resolver and collects expired conntrack entries.

Run as `python -m fastnet.control.agent HOST_DIR READY_FD` by control.host.start_agent().
It writes agent.json, starts the resolver, then writes "ready" to READY_FD and serves one
asyncio loop until SIGTERM: DNS queries, SIGHUP (reload the resolver: projects changed),
SIGCHLD (reap), and conntrack garbage collection every GC_INTERVAL in a worker thread (a
big table must not stall DNS).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import linux

GC_INTERVAL = 5.0  # seconds between conntrack garbage collections


def prepare_mounts(host_dir: Path) -> None:
    linux.unshare(linux.CLONE_NEWNS)
    # See the machine's later mounts, but keep ours from propagating back out.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    runtime = host_dir / "rt"
    runtime.mkdir(parents=True, exist_ok=True)
    linux.mount("fastnet", str(runtime), "tmpfs", 0, "mode=0700,size=16m")
    (runtime / "netns").mkdir()
    (runtime / "bpf").mkdir()
    linux.mount("bpf", str(runtime / "bpf"), "bpf", 0, "mode=0700")
    # The socket hooks attach to the root cgroup; `ip netns exec` hides /sys/fs/cgroup.
    (runtime / "cgroup").mkdir()
    linux.mount("cgroup2", str(runtime / "cgroup"), "cgroup2")


def main() -> int:
    host_dir, ready_fd = Path(sys.argv[1]), int(sys.argv[2])
    prepare_mounts(host_dir)
    pid = os.getpid()
    record = {
        "pid": pid,
        "start_time": linux.proc_start_time(pid),
        "netns_inode": linux.ns_inode("/proc/self/ns/net"),
    }
    tmp = host_dir / f".agent.json.{pid}"
    tmp.write_text(json.dumps(record))
    tmp.rename(host_dir / "agent.json")
    return asyncio.run(serve(host_dir, ready_fd))


async def serve(host_dir: Path, ready_fd: int) -> int:
    from .dns.server import Resolver

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    resolver = Resolver(host_dir)
    # Handlers before "ready": `up` signals SIGHUP as soon as start_agent() returns.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGCHLD, _reap)
    loop.add_signal_handler(signal.SIGHUP, resolver.request_reload)
    await resolver.start()
    gc = asyncio.create_task(_gc_loop(host_dir / "rt" / "bpf"))
    os.write(ready_fd, b"ready")
    os.close(ready_fd)
    try:
        await stop.wait()
    finally:
        gc.cancel()
        resolver.close()
    return 0


async def _gc_loop(pin_root: Path) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(GC_INTERVAL)
        await loop.run_in_executor(None, collect_garbage, pin_root)


def collect_garbage(pin_root: Path) -> None:
    """Delete expired conntrack entries (LRU eviction alone would keep dead flows until the
    table fills). The pins are reopened each time: an upgrade may have replaced them."""
    from ..datapath import loader
    from ..datapath.maps import Maps

    dp = loader.open_pinned(pin_root)
    if dp is None:
        return
    try:
        Maps(dp).conntrack_expire(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
    except OSError as exc:
        print(f"fastnet agent: conntrack garbage collection failed: {exc}", file=sys.stderr, flush=True)
    finally:
        dp.close()


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


if __name__ == "__main__":
    sys.exit(main())
