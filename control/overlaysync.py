"""The agent's part of overlay networks (control/netdrivers/overlay.py): this host's containers
registered in the store under a lease, and the other hosts' containers watched into the
datapath (fn_ovl_remotes) and the resolver.

One thread, blocking on the store's JSON gateway (control/store.py), and one more for the
watch stream:

- it registers each container interface on an overlay network at
  `<PREFIX>/net/<network>/ep/<address>` under a lease of TTL seconds it keeps alive (every
  TTL/3); a host that dies stops renewing it, and the store deletes its endpoints within TTL;
- it reads every endpoint once, then follows the changes from that revision: each change is
  written to fn_ovl_remotes of every pinned build and handed to the resolver within a moment;
- when the store cannot be reached nothing is removed: the datapath forwards with what it
  knows, and every RETRY seconds the thread tries again. Back in touch, it renews its lease or
  takes a new one (the old one expired: its endpoints are gone) and registers again, reads
  everything again and watches from there.

What to register is read from the project states at each wake-up (`request()`: the agent's
reload after `up`/`down`) and every TTL/3.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Callable

from .store import PREFIX, Store, StoreError

TTL = 10  # seconds: a dead host's containers are gone from the others' tables within this
RETRY = 1.0  # seconds between attempts while the store is out of reach
NET_PREFIX = PREFIX + "/net/"


@dataclass(frozen=True)
class Remote:
    """A container of another host on an overlay network (an `ep` of the store)."""

    network: str
    ipv4: IPv4Address
    host: IPv4Address
    mac: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass
class Desired:
    store: str | None = None
    host: IPv4Address | None = None
    vnis: dict[str, int] = field(default_factory=dict)  # overlay network -> VNI, on this host
    endpoints: dict[str, str] = field(default_factory=dict)  # store key -> value


def desired(host_dir: Path) -> Desired:
    """What this host registers, from its project states."""
    from pyroute2 import IPRoute

    from . import observe
    from .state import from_json

    want = Desired()
    for path in sorted((host_dir / "projects").glob("*.json")):
        try:
            st = from_json(path.read_text())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        spec = st.spec
        overlays = {n.name: n for n in spec.networks.values() if n.vni is not None}
        if not overlays or not spec.store:
            continue
        if want.store is None:
            want.store = spec.store
            with IPRoute() as ipr:
                want.host = observe.uplink(ipr, spec.uplink)[1]
        want.vnis.update({name: n.vni for name, n in overlays.items()})
        for c in spec.containers.values():
            for i in c.interfaces:
                if i.network in overlays and f"{c.name}/{i.network}" in st.ports and want.host is not None:
                    key = f"{NET_PREFIX}{i.network}/ep/{i.ipv4}"
                    want.endpoints[key] = json.dumps({"aliases": list(i.aliases), "host": str(want.host), "mac": i.mac,
                                                      "name": c.name, "project": spec.name}, sort_keys=True)
    return want


def parse_endpoint(key: str, value: str) -> Remote | None:
    parts = key[len(NET_PREFIX):].split("/")
    if len(parts) != 3 or parts[1] != "ep":
        return None
    try:
        ep = json.loads(value)
        return Remote(parts[0], IPv4Address(parts[2]), IPv4Address(ep["host"]), ep["mac"], ep["name"],
                      tuple(ep.get("aliases", ())))
    except (ValueError, KeyError, TypeError):
        return None


def say(message: str) -> None:
    print(f"fastnet agent: overlay: {message}", file=sys.stderr, flush=True)


class OverlaySync:
    """`on_remotes(list[Remote])` is called (from this class's threads) with every container
    of another host on this host's overlay networks, whenever that changes."""

    def __init__(self, host_dir: Path, on_remotes: Callable[[list[Remote]], None]):
        self.host_dir = host_dir
        self.pin_root = host_dir / "rt" / "bpf"
        self.on_remotes = on_remotes
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="overlay", daemon=True)
        self.store: Store | None = None
        self.lease: int | None = None
        self.registered: dict[str, str] = {}  # what this host put under its lease
        self.kvs: dict[str, str] = {}  # every endpoint of the store, as last read and watched
        self.want = Desired()
        self._watch_gen = 0
        self._watch_ok = False
        self._applied: list | None = None
        self._offline_since: float | None = None

    def start(self) -> None:
        self._thread.start()

    def request(self) -> None:
        """Read the project states again (they changed), and write the tables again (a new
        build of the datapath may have replaced the pinned one)."""
        self._applied = None
        self._wake.set()

    def close(self) -> None:
        """Stop; the lease is revoked only when no overlay network is left on the host (an
        agent restarted keeps it: the next one renews it)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=3)
        try:
            if self.lease and self.store and not desired(self.host_dir).endpoints:
                self.store.revoke(self.lease)
        except (StoreError, OSError):
            pass

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            self.want = desired(self.host_dir)
            delay = TTL / 3
            try:
                self._round()
                if self._offline_since is not None:
                    say(f"store {self.want.store} reached again after {time.monotonic() - self._offline_since:.1f} s")
                    self._offline_since = None
            except StoreError as exc:
                if self._offline_since is None:
                    self._offline_since = time.monotonic()
                    say(f"{exc}; forwarding with what is known, retrying every {RETRY:g} s")
                self._watch_ok = False
                delay = RETRY
            except Exception as exc:  # a bug must not end the thread: the next round tries again
                say(f"{type(exc).__name__}: {exc}")
                delay = RETRY
            self._wake.wait(delay)
            self._wake.clear()

    def _round(self) -> None:
        want = self.want
        if want.store is None:
            self._leave()
            return
        if self.store is None or self.store.url != want.store.rstrip("/"):
            self._leave()
            self.store = Store(want.store)
        store = self.store
        if self.lease is not None and store.keepalive(self.lease) <= 0:
            say("the lease expired while the store was out of reach: registering again")
            self.lease, self.registered = None, {}
        if self.lease is None:
            self.lease, self.registered = store.grant(TTL), {}
        for key, value in want.endpoints.items():
            if self.registered.get(key) != value:
                store.put(key, value, self.lease)
                self.registered[key] = value
        for key in set(self.registered) - set(want.endpoints):
            store.delete_if(key, self.registered.pop(key))
        if not self._watch_ok:
            kvs, revision = store.get_prefix(NET_PREFIX)
            with self._lock:
                self.kvs = {k: v for k, v in kvs.items() if "/ep/" in k}
                self._watch_gen += 1
                gen = self._watch_gen
            self._watch_ok = True
            threading.Thread(target=self._watch, args=(gen, revision + 1), name="overlay-watch", daemon=True).start()
        self._apply()

    def _leave(self) -> None:
        """No overlay network left here: our endpoints go, and so does what we knew."""
        if self.lease is not None and self.store is not None:
            try:
                self.store.revoke(self.lease)
            except StoreError:
                pass
        self.lease, self.registered, self.store = None, {}, None
        with self._lock:
            self.kvs = {}
            self._watch_gen += 1  # a running watch stops applying
        self._watch_ok = False
        self._apply()

    def _watch(self, gen: int, revision: int) -> None:
        store = self.store
        try:
            for events in store.watch(NET_PREFIX, revision):
                with self._lock:
                    if gen != self._watch_gen:
                        return
                    for e in events:
                        if "/ep/" not in e.key:
                            continue
                        if e.value is None:
                            self.kvs.pop(e.key, None)
                        else:
                            self.kvs[e.key] = e.value
                if events:
                    self._apply()
        except StoreError:
            pass
        with self._lock:
            if gen == self._watch_gen:
                self._watch_ok = False
                self._wake.set()  # read everything again and watch from there

    # -- into the datapath and the resolver ---------------------------------------------------------
    def _apply(self) -> None:
        from ..datapath import loader
        from ..datapath.maps import Maps, RemoteRecord

        with self._lock:
            want = self.want
            remotes = sorted((r for k, v in self.kvs.items() if (r := parse_endpoint(k, v)) is not None
                              and r.network in want.vnis and r.host != want.host),
                             key=lambda r: (r.network, r.ipv4))
            records = [RemoteRecord(want.vnis[r.network], r.ipv4, r.mac, r.host) for r in remotes]
            if records == self._applied:
                return
            try:
                pinned = loader.open_all_pinned(self.pin_root)
            except loader.DatapathError as exc:
                say(f"datapath: {exc}")
                return
            try:
                for dp in pinned:
                    Maps(dp).sync_remotes(records)
            finally:
                for dp in pinned:
                    dp.close()
            self._applied = records
        self.on_remotes(remotes)
