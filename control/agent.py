"""The per-host agent: the containers' DNS resolver, conntrack garbage collection, the watch
of the host's links and addresses (control/hostwatch.py), the overlay networks' store
(control/overlaysync.py), log caps and the iptables backend's port reservations, in the
keeper's namespaces (control/keeper.py).

Run as `python -I -m fastnet.control.agent HOST_DIR` by the keeper, which restarts it whenever
it exits: nothing the containers or the datapath need to keep working lives in this process
alone. A new agent adopts what runs: the resolver reopens each container's sockets and rewrites
fn_resolvers, garbage collection resumes on the pinned tables, the iptables projects'
published ports are bound again (control/reservations.py).

It writes agent.json once it serves (what `fastnet` commands wait for and send SIGHUP to),
then serves one asyncio loop until SIGTERM: DNS queries, SIGHUP (reload the resolver: projects
changed), SIGCHLD (reap), and every GC_INTERVAL, in a worker thread (a big table must not stall
DNS), conntrack garbage collection and the log size caps (control/logs.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sys
import time
from pathlib import Path

from . import logs
from .keeper import AGENT_FILE, write_record

GC_INTERVAL = 5.0  # seconds between conntrack garbage collections


def main() -> int:
    host_dir = Path(sys.argv[1])
    # Two sockets per container: take every descriptor the hard limit allows (capacity.py
    # checks the count against that limit before `up` creates anything).
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(serve(host_dir))


async def serve(host_dir: Path) -> int:
    from .dns.server import Resolver
    from .reservations import Reservations

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reservations = Reservations()
    resolver = Resolver(host_dir, on_reload=reservations.sync)  # every reload re-reads the projects
    # Handlers before agent.json: `up` signals SIGHUP as soon as it sees the file.
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGCHLD, _reap)
    await resolver.start()
    from .overlaysync import OverlaySync

    # overlay networks: the other hosts' containers into the datapath and the resolver
    overlay = OverlaySync(host_dir, lambda remotes: loop.call_soon_threadsafe(resolver.set_remotes, remotes))
    loop.add_signal_handler(signal.SIGHUP, lambda: (resolver.request_reload(), overlay.request()))
    overlay.start()
    from .hostwatch import HostWatch  # after DNS serves: its import (pyroute2) is the slow part of a restart

    watch = HostWatch()
    watch.start()
    gc = asyncio.create_task(_periodic(host_dir))
    write_record(host_dir / AGENT_FILE, os.getpid())
    try:
        await stop.wait()
    finally:
        gc.cancel()
        watch.close()
        overlay.close()
        resolver.close()
        reservations.close()
    return 0


async def _periodic(host_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    jobs = (("conntrack garbage collection", collect_garbage, host_dir / "rt" / "bpf"),
            ("log caps", logs.cap_all, host_dir))
    while True:
        await asyncio.sleep(GC_INTERVAL)
        for what, job, arg in jobs:
            try:
                await loop.run_in_executor(None, job, arg)
            except Exception as exc:  # the next round tries again; a failure must not end the loop
                print(f"fastnet agent: {what} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def collect_garbage(pin_root: Path) -> None:
    """Remove expired flows (nothing else frees conntrack: its table never evicts), and those
    of container ports that are gone, then the SNAT mappings no flow uses any more. The pins
    are reopened each time: an upgrade may have replaced them."""
    from ..datapath import abi, loader
    from ..datapath.maps import Maps

    try:
        dp = loader.open_pinned(pin_root)
    except loader.NewerDatapath:
        if abi.installed_version() > abi.ABI_VERSION:
            # fastnet was upgraded under this agent: the keeper restarts it with the new code
            print("fastnet agent: the datapath is newer than this agent; restarting", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
        raise
    if dp is None:
        return
    try:
        maps = Maps(dp)
        maps.conntrack_expire(time.clock_gettime_ns(time.CLOCK_MONOTONIC), forget_gone_ports=True)
        maps.nat_maps_expire(time.clock_gettime_ns(time.CLOCK_MONOTONIC))
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
