"""127.0.0.11:53 -> the resolver's real port, inside one container's namespace.

Why not bind 127.0.0.11:53 itself: a container's own programs may listen on port 53 of every
address (a DNS server in a container, the echo servers of fastnet's tests), and Linux refuses a
wildcard bind that overlaps an address already bound on that port unless both sockets set
SO_REUSEADDR. So, like Docker, the resolver listens on a random port of 127.0.0.11, and
something maps port 53 to it. How depends on the project's backend:

- ebpf: fastnet's own socket hooks (bpf/lib/sock.h, attached to the root cgroup with the
  published-port hooks) look the asking socket's network namespace up in fn_resolvers and
  rewrite connect()/sendmsg() to 127.0.0.11:53 to the resolver's port; recvfrom() and
  getpeername() show 127.0.0.11:53 again. No packet is rewritten, nothing is loaded into the
  container's namespace, and no netfilter is involved: `sync_socket_hooks` writes one map entry
  per container (keyed by its namespace cookie), a map update instead of an `nft` process.
- iptables (the reference backend, Docker's way): one *stateless* nftables chain in the
  container's namespace rewrites the port: queries to 127.0.0.11:53 go to the resolver's port,
  and its replies leave from port 53. Both directions are locally generated packets on lo, so
  one output-hook chain sees them; there is no NAT table and no conntrack (nothing else in the
  namespace gets tracked), and packets not on lo leave the chain at its first rule. The table
  goes with the namespace.
"""
from __future__ import annotations

import socket
import sys
from ipaddress import IPv4Address
from pathlib import Path

from .. import procs
from . import RESOLVER_ADDRESS, RESOLVER_PORT

TABLE = "fastnet_dns"
SO_NETNS_COOKIE = 71  # asm-generic/socket.h (Linux 5.14): u64, the socket's network namespace


def netns_cookie(sock: socket.socket) -> int:
    """The cookie of the network namespace `sock` was made in (what bpf_get_netns_cookie()
    returns for that namespace's sockets)."""
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), sys.byteorder)


def sync_socket_hooks(pin_root: Path, resolvers: dict[int, tuple[int, int]]) -> None:
    """Make the pinned datapath's fn_resolvers hold exactly `resolvers` ({netns cookie: (udp
    port, tcp port)}). The pins are reopened each time: an upgrade may have replaced them, and
    a new build starts with an empty table. While `up` moves to a new build both are pinned
    and both builds' hooks are attached: both get the table. No datapath pinned: nothing can
    use the table."""
    from ...datapath import loader
    from ...datapath.maps import Maps

    pinned = loader.open_all_pinned(pin_root)
    if not pinned and resolvers:
        raise OSError(f"no eBPF datapath is loaded: {RESOLVER_ADDRESS}:{RESOLVER_PORT} is not redirected")
    try:
        for dp in pinned:
            Maps(dp).sync_resolvers(resolvers, IPv4Address(RESOLVER_ADDRESS))
    finally:
        for dp in pinned:
            dp.close()


def ruleset(udp_port: int, tcp_port: int) -> str:
    a, p = RESOLVER_ADDRESS, RESOLVER_PORT
    # add+delete first: replaces a table left by an earlier resolver in one transaction
    return f"""add table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
  chain resolver_port {{
    type filter hook output priority raw; policy accept;
    oif != "lo" accept
    ip daddr {a} udp dport {p} udp dport set {udp_port}
    ip daddr {a} tcp dport {p} tcp dport set {tcp_port}
    ip saddr {a} udp sport {udp_port} udp sport set {p}
    ip saddr {a} tcp sport {tcp_port} tcp sport set {p}
  }}
}}
"""


def install_nft(udp_port: int, tcp_port: int) -> None:
    """Load the chain (iptables backend) into the network namespace of the *calling thread* (a
    child process starts in the namespace of the thread that forks it)."""
    nft = procs.which("nft") or "/usr/sbin/nft"
    cp = procs.run([nft, "-f", "-"], input=ruleset(udp_port, tcp_port), text=True, capture_output=True,
                        timeout=10)
    if cp.returncode != 0:
        err = cp.stderr.strip().splitlines()
        raise OSError(f"nft (port redirect for {RESOLVER_ADDRESS}:{RESOLVER_PORT}) failed: {err[0] if err else cp.returncode}")
