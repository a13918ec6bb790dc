"""Sockets that hold ports on the host: listening TCP and bound UDP sockets of the network
namespace this process runs in (the one fastnet serves as the host), read with inet_diag
(pyroute2's DiagSocket), and the process that owns one (by socket inode, through /proc/*/fd).

`up`'s preflight (control/engine.py) refuses to publish a port such a socket holds, as Docker
does when its own bind fails: publishing would silently take the port over."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Iterable

from pyroute2 import DiagSocket
from pyroute2.netlink.diag import SS_ALL, SS_LISTEN

from .model import PortMapping

ANY = IPv4Address(0)
PROTOCOLS = {"tcp": (socket.IPPROTO_TCP, 1 << SS_LISTEN), "udp": (socket.IPPROTO_UDP, SS_ALL)}


@dataclass(frozen=True)
class Listener:
    """A socket of the host holding (address, port): TCP listening, UDP in any state (bound
    or connected, it keeps its port)."""

    proto: str  # "tcp" | "udp"
    address: str  # as the kernel has it: "0.0.0.0", "127.0.0.1", "::", "::ffff:192.0.2.1", ...
    port: int
    v6only: bool  # an IPv6 socket with IPV6_V6ONLY (never holds IPv4)
    inode: int

    @property
    def ipv4(self) -> IPv4Address | None:
        """The IPv4 address the socket holds the port on (0.0.0.0: every one), or None when
        it holds no IPv4 address: IPv4 binds never conflict with it."""
        addr = ip_address(self.address)
        if isinstance(addr, IPv4Address):
            return addr
        if addr == IPv6Address("::"):
            return None if self.v6only else ANY  # dual-stack: also every IPv4 address
        return addr.ipv4_mapped

    def where(self) -> str:
        """"listening on 0.0.0.0:22", "bound to [::]:53"."""
        addr = f"[{self.address}]" if ":" in self.address else self.address
        return f"{'listening on' if self.proto == 'tcp' else 'bound to'} {addr}:{self.port}"


def host_listeners() -> list[Listener]:
    """Every listening TCP and every UDP socket of this network namespace."""
    found = []
    with DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for proto, (number, states) in PROTOCOLS.items():
                for msg in ds.get_sock_stats(family=family, protocol=number, states=states):
                    found.append(Listener(
                        proto=proto,
                        address=msg["idiag_src"],
                        port=msg["idiag_sport"],
                        v6only=bool(msg.get_attr("INET_DIAG_SKV6ONLY")),
                        inode=msg["idiag_inode"],
                    ))
    return found


def conflicts(m: PortMapping, s: Listener) -> bool:
    """Would Linux refuse to bind one of m's (address, port, protocol)s because of s? A
    wildcard address on either side overlaps every address; two specific ones only when equal."""
    if s.proto != m.proto or not m.host_port_first <= s.port <= m.host_port_last:
        return False
    held = s.ipv4
    return held is not None and (m.host_ip is None or held == ANY or held == m.host_ip)


def published_index(mappings: Iterable[PortMapping]) -> set[tuple[str, int, IPv4Address | None]]:
    """(protocol, port, address or None for every address) of each port of `mappings`."""
    return {(m.proto, port, m.host_ip) for m in mappings for port in range(m.host_port_first, m.host_port_last + 1)}


def covered(s: Listener, index: set[tuple[str, int, IPv4Address | None]]) -> bool:
    """Is s bound where a port of the index is published (that port's wildcard, or its very
    address)? Such a socket is fastnet's own (the iptables backend's reservations) or was
    bound next to a port published on one address (which the bind hooks allow)."""
    held = s.ipv4
    return held is not None and ((s.proto, s.port, None) in index or (s.proto, s.port, held) in index)


def owner(inode: int) -> tuple[int, str] | None:
    """(pid, command name) of the process with the lowest pid holding socket `inode` (one that
    forked keeps sharing it with its children), or None when no process visible here has it."""
    target = f"socket:[{inode}]"
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") == target:
                    with open(f"/proc/{pid}/comm") as f:
                        return pid, f.read().strip()
            except OSError:
                continue
    return None


def holder(s: Listener) -> str:
    """Who holds s and how, for an error message: "by sshd (pid 123, listening on
    0.0.0.0:22)", or, when no process visible here holds it, says so."""
    found = owner(s.inode)
    if found is None:
        return f"({s.where()}; no process fastnet can see holds the socket)"
    pid, name = found
    return f"by {name} (pid {pid}, {s.where()})"
