"""127.0.0.11:53 -> the resolver's real port, inside one container's namespace.

Why not bind 127.0.0.11:53 itself: a container's own programs may listen on port 53 of every
address (a DNS server in a container, the echo servers of fastnet's tests), and Linux refuses a
wildcard bind that overlaps an address already bound on that port unless both sockets set
SO_REUSEADDR. So, like Docker, the resolver listens on a random port of 127.0.0.11, and one
*stateless* nftables chain in the container's namespace rewrites the port: queries to
127.0.0.11:53 go to the resolver's port, and its replies leave from port 53. Both directions
are locally generated packets on lo, so one output-hook chain sees them; there is no NAT table
and no conntrack (nothing else in the namespace gets tracked), and packets not on lo leave the
chain at its first rule. The table goes with the namespace.
"""
from __future__ import annotations

import shutil
import subprocess

from . import RESOLVER_ADDRESS, RESOLVER_PORT

TABLE = "fastnet_dns"


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


def install(udp_port: int, tcp_port: int) -> None:
    """Load the chain into the network namespace of the *calling thread* (a child process
    starts in the namespace of the thread that forks it)."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    cp = subprocess.run([nft, "-f", "-"], input=ruleset(udp_port, tcp_port), text=True, capture_output=True,
                        timeout=10)
    if cp.returncode != 0:
        err = cp.stderr.strip().splitlines()
        raise OSError(f"nft (port redirect for {RESOLVER_ADDRESS}:{RESOLVER_PORT}) failed: {err[0] if err else cp.returncode}")
