"""The resolver inside the agent: one UDP and one TCP socket per container, served by one
asyncio loop.

Each container's sockets are made *inside its network namespace* (this thread enters it for
the socket() calls only; a socket stays in the namespace it was made in) and bound to
127.0.0.11 there, so the socket a query arrives on names the asking container. Nothing is
shared between containers but the loop.

Why not port 53 itself: a container's own programs may listen on port 53 of every address (a
DNS server in a container, the echo servers of fastnet's tests), and Linux refuses a wildcard
bind that overlaps an address already bound on that port unless both sockets set SO_REUSEADDR.
So, like Docker, the resolver listens on a random port of 127.0.0.11, and the project's backend
maps port 53 to it -- the backend owns that mechanism and its kernel objects, this module only
asks: `redirect_resolver` inside the namespace once the sockets are bound (the iptables backend
loads a stateless nftables chain there), then `publish_resolvers` with every container's ports
(the eBPF backend writes its socket hooks' table fn_resolvers).

Reload (SIGHUP from `up`/`down`, and a poll of the projects directory as a safety net):
re-read every project state of the host, rebuild the zone, open sockets for new containers
(or containers whose namespace was replaced), close those of removed ones, have each backend
publish the whole table of its containers' ports (it may be a new build with an empty table;
removed containers' entries go), and re-read the host's resolv.conf; then hand the specs read
to the agent's other consumers (`on_reload`: the iptables backend's port reservations). The
outcome goes to rt/dns.json with the counters (see notify.py).

Bounds (a flood costs at most these, the rest is dropped and counted):
MAX_FORWARDS in-flight upstream queries in all, MAX_FORWARDS_PER_CONTAINER each;
MAX_TCP_PER_CONTAINER connections, each closed after TCP_IDLE_TIMEOUT without a whole query;
one query per connection at a time (pipelined queries wait in the kernel's buffer).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.message
import dns.rcode

from ...datapath.errors import FastnetError
from .. import linux
from ..state import from_json
from ..observe import socket_netns_cookie
from . import RESOLVER_ADDRESS, STATUS_FILE
from .responder import Outcome, render, respond
from .upstream import Upstreams
from .zone import Zone

MAX_FORWARDS = 512
MAX_FORWARDS_PER_CONTAINER = 64
MAX_TCP_PER_CONTAINER = 16
TCP_IDLE_TIMEOUT = 5.0
POLL_INTERVAL = 2.0
STATUS_INTERVAL = 1.0
IP_FREEBIND = 15  # linux/in.h: bind 127.0.0.11 even before the container's lo is up
TCP_LENGTH = struct.Struct("!H")  # RFC 1035 4.2.2: each message over TCP is preceded by its length

COUNTERS = ("queries", "local", "nxdomain", "forwarded", "upstream_failed", "refused", "malformed", "dropped")


def _counters() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)


@dataclass(eq=False)
class Endpoint:
    """The sockets of one container."""

    netns: str
    inode: int
    backend: str  # of the container's project: how 127.0.0.11:53 reaches the sockets
    netns_cookie: int = 0
    udp_port: int = 0
    tcp_port: int = 0
    udp: asyncio.DatagramTransport | None = None
    tcp: asyncio.base_events.Server | None = None
    counters: dict[str, int] = field(default_factory=_counters)
    tasks: set[asyncio.Task] = field(default_factory=set)  # forwards and TCP connections
    forwards: int = 0
    tcp_connections: int = 0
    udp_paused: bool = False

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
        for task in self.tasks:
            task.cancel()


def open_sockets(netns_path: Path, redirect: Callable[[int, int], None]) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on 127.0.0.11 inside the namespace at netns_path;
    redirect(udp port, tcp port) runs inside it too (the backend's per-namespace part)."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    made: list[socket.socket] = []
    try:
        linux.setns_path(str(netns_path), linux.CLONE_NEWNET)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(socket.AF_INET, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
                made.append(s)
                s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((RESOLVER_ADDRESS, 0))
            made[1].listen(64)
            redirect(made[0].getsockname()[1], made[1].getsockname()[1])
        finally:
            linux.setns(saved, linux.CLONE_NEWNET)
    except BaseException:
        for s in made:
            s.close()
        raise
    finally:
        os.close(saved)
    return made[0], made[1]


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolver: "Resolver", ep: Endpoint):
        self.resolver, self.ep = resolver, ep

    def datagram_received(self, data: bytes, addr) -> None:
        self.resolver.on_datagram(self.ep, data, addr)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP unreachable from a gone client
        pass

    def pause_writing(self) -> None:
        self.ep.udp_paused = True

    def resume_writing(self) -> None:
        self.ep.udp_paused = False


class Resolver:
    def __init__(self, host_dir: Path, on_reload: Callable[[list], None] | None = None):
        self.on_reload = on_reload  # called with every project's spec at each reload
        self.runtime = host_dir / "rt"
        self.netns_dir = self.runtime / "netns"
        self.projects_dir = host_dir / "projects"
        self.status_path = self.runtime / STATUS_FILE
        self.zone = Zone([])
        self.remotes: list = []  # containers of other hosts on overlay networks (control/overlaysync.py)
        self.upstreams = Upstreams([])
        self.endpoints: dict[str, Endpoint] = {}
        self.errors: dict[str, str] = {}  # netns -> why it has no sockets
        self.loaded: dict[str, int] = {}  # project -> mtime_ns of the state it was built from
        self.last_read_dir = self.runtime / "last-read"
        self._copied: dict[str, int] = {}  # state file -> mtime_ns of the copy in last_read_dir
        self._backends: dict[str, object] = {}  # backend name -> the backend, made when first needed
        self.totals = _counters()
        self.forwards = 0
        self.generation = 0
        self._signature: object = None
        self._reload_wanted = asyncio.Event()
        self._dirty = True
        self._tasks: list[asyncio.Task] = []

    # -- life cycle ------------------------------------------------------------------------
    async def start(self) -> None:
        await self.reload()
        self._tasks = [asyncio.create_task(self._reloader()), asyncio.create_task(self._poller()),
                       asyncio.create_task(self._status_writer())]

    def request_reload(self) -> None:
        self._reload_wanted.set()

    def set_remotes(self, remotes: list) -> None:
        """The containers of other hosts on this host's overlay networks changed: their names
        are answered from the next zone on (rebuilt now)."""
        self.remotes = remotes
        self.request_reload()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for ep in self.endpoints.values():
            ep.close()
        self.endpoints.clear()

    async def _reloader(self) -> None:
        while True:
            await self._reload_wanted.wait()
            self._reload_wanted.clear()
            await self._guarded_reload()

    async def _poller(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            if self._state_signature() != self._signature:
                self.request_reload()

    async def _status_writer(self) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            if self._dirty:
                self.write_status()

    async def _guarded_reload(self) -> None:
        try:
            await self.reload()
        except Exception as exc:  # keep serving what we had
            print(f"fastnet agent: dns reload failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    # -- reload ----------------------------------------------------------------------------
    def _state_signature(self) -> object:
        try:
            files = sorted((p.name, p.stat().st_mtime_ns) for p in self.projects_dir.glob("*.json"))
        except OSError:
            files = []
        return tuple(files)

    def _read_projects(self) -> tuple[list, dict[str, int]]:
        """The spec of every project with a state file. A file that cannot be read (damaged, or
        from a newer fastnet) is served as it was when last read, by this agent or an earlier
        one (a copy in the keeper's tmpfs, `rt/last-read/`): its containers keep their names
        and sockets (`up` and `down` refuse to act on the file and say so)."""
        specs, loaded = {}, {}
        self.last_read_dir.mkdir(exist_ok=True)
        for path in sorted(self.projects_dir.glob("*.json")) if self.projects_dir.is_dir() else []:
            copy = self.last_read_dir / path.name
            try:
                mtime = path.stat().st_mtime_ns
                text = path.read_text()
                st = from_json(text)
            except FileNotFoundError:
                continue  # removed under us
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                try:
                    specs[path.stem] = from_json(copy.read_text()).spec
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    pass
                continue
            if self._copied.get(path.name) != mtime:
                tmp = copy.with_name(f".{copy.name}.tmp")
                tmp.write_text(text)
                tmp.rename(copy)
                self._copied[path.name] = mtime
            specs[st.name] = st.spec
            loaded[st.name] = mtime
        for stale in self.last_read_dir.glob("*.json"):
            if not (self.projects_dir / stale.name).exists():
                stale.unlink(missing_ok=True)
                self._copied.pop(stale.name, None)
        return list(specs.values()), loaded

    async def reload(self) -> None:
        self._signature = self._state_signature()
        specs, loaded = self._read_projects()
        self.zone = Zone(specs, self.remotes)
        self.upstreams = Upstreams.from_file()
        backends = {spec.name: spec.backend for spec in specs}
        wanted: dict[str, tuple[int, str]] = {}
        self.errors = {}
        for netns, view in self.zone.views.items():
            path = self.netns_dir / netns
            if linux.is_nsfs_mount(str(path)):
                wanted[netns] = (linux.ns_inode(str(path)), backends[view.project])
        for netns, ep in list(self.endpoints.items()):
            # removed, a new namespace under the old name, or another backend's redirect
            if wanted.get(netns) != (ep.inode, ep.backend):
                ep.close()
                del self.endpoints[netns]
        for netns, (inode, backend) in wanted.items():
            if netns not in self.endpoints:
                try:
                    self.endpoints[netns] = await self._open(netns, inode, backend)
                except OSError as exc:
                    self.errors[netns] = str(exc)
        self._publish(set(backends.values()))
        if self.on_reload is not None:
            self.on_reload(specs)
        self.loaded = loaded
        self.generation += 1
        self.write_status()

    def _backend(self, name: str):
        """The backend that redirects 127.0.0.11:53 for a project of backend `name`."""
        if name not in self._backends:
            from ..backends import backend_for
            from ..host import current_host

            self._backends[name] = backend_for(name, current_host(), "")  # the agent runs in the host's namespace
        return self._backends[name]

    def _publish(self, backends: set[str]) -> None:
        """Each backend's whole table of its containers' resolver ports (`backends`: those of
        the projects; a backend used before gets its table emptied when it serves none)."""
        by_backend: dict[str, list[Endpoint]] = {}
        for ep in self.endpoints.values():
            by_backend.setdefault(ep.backend, []).append(ep)
        for name in {*backends, *by_backend, *self._backends}:
            eps = by_backend.get(name, [])
            try:
                self._backend(name).publish_resolvers({ep.netns_cookie: (ep.udp_port, ep.tcp_port) for ep in eps})
            except (OSError, FastnetError) as exc:
                for ep in eps:
                    self.errors[ep.netns] = str(exc)

    async def _open(self, netns: str, inode: int, backend: str) -> Endpoint:
        loop = asyncio.get_running_loop()
        udp, tcp = open_sockets(self.netns_dir / netns, self._backend(backend).redirect_resolver)
        ep = Endpoint(netns, inode, backend, udp_port=udp.getsockname()[1], tcp_port=tcp.getsockname()[1])
        try:
            ep.netns_cookie = socket_netns_cookie(udp)
            ep.udp, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self, ep), sock=udp)
            ep.tcp = await asyncio.start_server(functools.partial(self._serve_tcp, ep), sock=tcp)
        except BaseException:
            ep.close()
            udp.close()
            tcp.close()
            raise
        return ep

    # -- queries ---------------------------------------------------------------------------
    def _count(self, ep: Endpoint, key: str) -> None:
        ep.counters[key] += 1
        self.totals[key] += 1
        self._dirty = True

    def _decide(self, ep: Endpoint, wire: bytes) -> Outcome | None:
        self._count(ep, "queries")
        view = self.zone.views.get(ep.netns)
        if view is None:  # the container is being removed
            self._count(ep, "dropped")
            return None
        outcome = respond(self.zone, view, wire)
        self._count(ep, {"formerr": "malformed", "forward": "forwarded"}.get(outcome.kind, outcome.kind))
        if outcome.kind == "malformed":
            self._count(ep, "dropped")
        return outcome

    @staticmethod
    def _wire(outcome: Outcome, tcp: bool) -> bytes | None:
        if outcome.wire is not None:
            return outcome.wire
        if outcome.response is not None:
            return render(outcome.response, outcome.query, tcp)
        return None

    def on_datagram(self, ep: Endpoint, data: bytes, addr) -> None:
        outcome = self._decide(ep, data)
        if outcome is None:
            return
        if outcome.kind != "forward":
            self._send_udp(ep, self._wire(outcome, tcp=False), addr)
            return
        if self.forwards >= MAX_FORWARDS or ep.forwards >= MAX_FORWARDS_PER_CONTAINER:
            self._count(ep, "dropped")  # the client retries; the flood does not grow memory
            return
        task = asyncio.get_running_loop().create_task(self._forward_udp(ep, outcome.query, addr))
        ep.tasks.add(task)
        task.add_done_callback(ep.tasks.discard)

    def _send_udp(self, ep: Endpoint, wire: bytes | None, addr) -> None:
        if wire is None or ep.udp is None or ep.udp.is_closing():
            return
        if ep.udp_paused:
            self._count(ep, "dropped")
            return
        ep.udp.sendto(wire, addr)

    async def _forward(self, ep: Endpoint, query: dns.message.Message, tcp: bool) -> bytes:
        self.forwards += 1
        ep.forwards += 1
        try:
            answer = await self.upstreams.query(query, tcp)
        finally:
            self.forwards -= 1
            ep.forwards -= 1
        if answer is None:
            self._count(ep, "upstream_failed")
            answer = dns.message.make_response(query, recursion_available=True)
            answer.set_rcode(dns.rcode.SERVFAIL)
        return render(answer, query, tcp)

    async def _forward_udp(self, ep: Endpoint, query: dns.message.Message, addr) -> None:
        self._send_udp(ep, await self._forward(ep, query, tcp=False), addr)

    async def _serve_tcp(self, ep: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if ep.tcp_connections >= MAX_TCP_PER_CONTAINER:
            self._count(ep, "dropped")
            writer.close()
            return
        task = asyncio.current_task()
        ep.tasks.add(task)
        ep.tcp_connections += 1
        try:
            while True:
                # A query may arrive in any number of segments: readexactly waits for all of it.
                (length,) = TCP_LENGTH.unpack(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT))
                wire = await asyncio.wait_for(reader.readexactly(length), TCP_IDLE_TIMEOUT)
                outcome = self._decide(ep, wire)
                if outcome is None:
                    break
                reply = await self._forward(ep, outcome.query, tcp=True) if outcome.kind == "forward" else self._wire(outcome, tcp=True)
                if reply is None:
                    break  # nothing sensible to say: hang up
                writer.write(TCP_LENGTH.pack(len(reply)) + reply)
                await asyncio.wait_for(writer.drain(), TCP_IDLE_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            ep.tcp_connections -= 1
            ep.tasks.discard(task)
            writer.close()

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict:
        containers = {}
        for netns, view in self.zone.views.items():
            ep = self.endpoints.get(netns)
            containers[netns] = {
                "project": view.project,
                "container": view.container,
                "serving": ep is not None and netns not in self.errors,
                "forward": view.forward,
                "error": self.errors.get(netns),
                "counters": dict(ep.counters) if ep else _counters(),
            }
        return {
            "generation": self.generation,
            "pid": os.getpid(),
            "states": self.loaded,
            "upstreams": self.upstreams.servers,
            "totals": self.totals,
            "containers": containers,
        }

    def write_status(self) -> None:
        self._dirty = False
        tmp = self.status_path.with_name(f".{STATUS_FILE}.tmp")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self.status(), indent=1, sort_keys=True))
            tmp.rename(self.status_path)
