"""The agent follows the host's links and addresses: what the datapath knows of the host (the
uplink's ifindex and address that SNAT writes into packets, the host's addresses that ports
published "on every address" answer on, the uplink program) is rewritten within a moment of
a change -- a DHCP renewal, an address added by hand, the uplink re-created -- instead of at
the next `up`. Netconf events count too: writing net.ipv4.ip_forward resets the forwarding
of every device, the FIB device's included (control/routing.py), which a refresh sets again.

rtnetlink's link and IPv4 address events wake a refresh, which waits SETTLE seconds for the
rest of a burst (a renewal deletes one address and adds another) and then, under the host's
lock like any `up`, has the backend of each running datapath write its host facts again. The
agent also refreshes once when it starts: the host may have changed while no agent ran.
"""
from __future__ import annotations

import asyncio
import sys

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK, RTNLGRP_IPV4_NETCONF

SETTLE = 0.05
EVENTS = {"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR", "RTM_NEWNETCONF"}
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | 1 << (RTNLGRP_IPV4_NETCONF - 1)


def refresh() -> None:
    """Have every backend that copies host facts into its tables, and serves projects here,
    write them again (the eBPF backend; the iptables backend's MASQUERADE follows addresses
    in the kernel already)."""
    from . import state as statestore
    from .backends import BACKENDS
    from .host import current_host, locked

    host = current_host()  # the agent runs in the host's network namespace
    with locked(host):
        states = statestore.load_all(host)
        for name, backend_class in BACKENDS.items():
            specs = [st.spec for st in states if st.spec.backend == name]
            if specs and backend_class.copies_host_facts:
                backend = backend_class(host, "")
                backend.prepare(specs[0])
                backend.sync(None)


class HostWatch:
    def __init__(self) -> None:
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._wanted.set()  # the first refresh: whatever changed while no agent ran
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._refresher())]

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                async with AsyncIPRoute() as ipr:
                    await ipr.bind(groups=GROUPS)
                    while True:
                        async for msg in ipr.get():
                            if msg.get("event") in EVENTS:
                                self._wanted.set()
            except Exception as exc:  # e.g. ENOBUFS after a burst: events were lost, so refresh
                print(f"fastnet agent: netlink watch failed: {type(exc).__name__}: {exc}; reopening",
                      file=sys.stderr, flush=True)
                self._wanted.set()
                await asyncio.sleep(1)

    async def _refresher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            await asyncio.sleep(SETTLE)
            self._wanted.clear()
            try:
                await loop.run_in_executor(None, refresh)
            except Exception as exc:  # keep watching; the next event or `up` tries again
                print(f"fastnet agent: host refresh failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
