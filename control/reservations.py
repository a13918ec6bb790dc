"""The iptables backend's published ports, held with bound sockets as dockerd holds Docker's.

Docker binds every published host port itself (even with the userland proxy off, when no
packet ever reaches those sockets: DNAT sends them to the container first), so that a host
process's bind() to a published port fails with EADDRINUSE instead of silently sharing it.
The iptables backend, which builds Docker's layout, does the same; the agent (the per-host
process that outlives every command) holds the sockets and re-syncs them whenever it reloads
the projects (control/dns/server.py: `up` and `down` wait for that reload). The eBPF backend
needs no sockets: its bind hooks refuse such a bind (bpf/lib/sock.h).

As in Docker 28: TCP sockets are bound with SO_REUSEADDR and listening (so that no other
socket can bind the port, SO_REUSEADDR or not), UDP ones are bound without it; one socket per
port (a range costs one per port), on the published address or 0.0.0.0, IPv4 only (Docker
binds [::] too only where the container can be reached over IPv6, which fastnet's cannot).
"""
from __future__ import annotations

import socket
import sys
from typing import Iterable

BACKEND = "iptables"
Key = tuple[str, str, int]  # (protocol, address, port)


def wanted(specs: Iterable) -> set[Key]:
    """Every (protocol, address, port) the iptables projects among `specs` publish."""
    keys = set()
    for spec in specs:
        if spec.backend != BACKEND:
            continue
        for c in spec.containers.values():
            for m in c.publish:
                addr = str(m.host_ip) if m.host_ip is not None else "0.0.0.0"
                keys.update((m.proto, addr, port) for port in range(m.host_port_first, m.host_port_last + 1))
    return keys


def bind(key: Key) -> socket.socket:
    proto, addr, port = key
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        if proto == "tcp":
            s.listen()
    except BaseException:
        s.close()
        raise
    return s


class Reservations:
    """The sockets held, by (protocol, address, port)."""

    def __init__(self) -> None:
        self.held: dict[Key, socket.socket] = {}
        self.errors: dict[Key, str] = {}  # why a wanted port is not held (the agent raised its fd limit)

    def sync(self, specs: Iterable) -> None:
        """Hold exactly the ports the iptables projects of `specs` publish: release the others
        first (a port moved from 0.0.0.0 to one address must be free to bind again)."""
        want = wanted(specs)
        for key in sorted(self.held.keys() - want):
            self.held.pop(key).close()
        self.errors = {}
        for key in sorted(want - self.held.keys()):
            try:
                self.held[key] = bind(key)
            except OSError as exc:
                self.errors[key] = exc.strerror or str(exc)
        if self.errors:
            shown = ", ".join(f"{a}:{p}/{proto} ({why})" for (proto, a, p), why in list(self.errors.items())[:5])
            more = f" and {len(self.errors) - 5} more" if len(self.errors) > 5 else ""
            print(f"fastnet agent: cannot hold published ports {shown}{more}", file=sys.stderr, flush=True)

    def close(self) -> None:
        for s in self.held.values():
            s.close()
        self.held.clear()
