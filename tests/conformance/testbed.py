"""The conformance topology, built once per backend, and scapy helpers.

   HOST (fastnet, backend ebpf or iptables)                                 WORLD
   front 10.90.1.0/24 gw .1: a .10, b .11 (publishes 8080:80, 8053:53/udp,   up0 198.51.100.2/24
                             7000-7002:7000-7002, 127.0.0.1:9443:443,
                             198.51.100.1:9000:9000)            198.51.100.3/24 (a 2nd server)
   back  10.90.2.0/24 gw .1: c .10 (publishes 127.0.0.1:8054:53/udp)
   vault 10.90.3.0/24 gw .1 (internal): d .10
   up0 198.51.100.1/24 ======================================================== up0
"""
from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

from harness import (
    Host,
    containers,
    l2socket,
    mac_for,
    run,
    uplink_mac,
    wait_until,
)

PROJECT = "conf"
WORLD2_IP = "198.51.100.3"
GW = {"front": "10.90.1.1", "back": "10.90.2.1", "vault": "10.90.3.1"}
IP = {"a": "10.90.1.10", "b": "10.90.1.11", "c": "10.90.2.10", "d": "10.90.3.10"}
NET = {"a": "front", "b": "front", "c": "back", "d": "vault"}

CONFIG = """\
name: conf
backend: {backend}
networks:
  front: {{subnet: 10.90.1.0/24}}
  back: {{subnet: 10.90.2.0/24}}
  vault: {{subnet: 10.90.3.0/24, internal: true}}
containers:
  a:
    networks: {{front: {{ipv4_address: 10.90.1.10}}}}
  b:
    networks: {{front: {{ipv4_address: 10.90.1.11}}}}
    publish:
      - "8080:80"
      - "8053:53/udp"
      - "7000-7002:7000-7002"
      - "127.0.0.1:9443:443"
      - "198.51.100.1:9000:9000"
  c:
    networks: {{back: {{ipv4_address: 10.90.2.10}}}}
    publish: ["127.0.0.1:8054:53/udp"]
  d:
    networks: {{vault: {{ipv4_address: 10.90.3.10}}}}
"""


@dataclass
class Env:
    backend: str
    host: Host
    c: dict

    def ns(self, name: str) -> str:
        if name == "world":
            return self.host.world_path
        if name == "host":
            return self.host.netns_path
        return self.c[name].netns

    def mac(self, name: str) -> str:
        if name == "world":
            return uplink_mac(self.host, self.host.world)
        if name == "host":
            return uplink_mac(self.host)
        return mac_for(IP[name])

    def gw_mac(self, name: str) -> str:
        return mac_for(GW[NET[name]])

    def iface(self, name: str) -> str:
        return "up0" if name in ("world", "host") else "eth0"


HOST_IP2 = "198.51.100.4"  # a second address of HOST: ports bound to 198.51.100.1 must not answer on it


def build(host: Host, backend: str) -> Env:
    run("ip", "-n", host.name, "addr", "add", f"{HOST_IP2}/24", "dev", "up0")
    host.up(CONFIG.format(backend=backend))
    run("ip", "-n", host.world, "addr", "add", f"{WORLD2_IP}/24", "dev", "up0")
    # no ICMP rate limiting in WORLD or HOST: the suite counts on every ICMP error
    for ns in (host.world, host.name):
        run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
    # every container's netns as `fastnet ps` reports it (polled: a missing one would surface
    # later as a TypeError deep in scapy)
    found = wait_until(lambda: (c := containers(host, PROJECT)) and all(x.netns for x in c.values()) and c,
                       timeout=10, what="fastnet ps to report every container's netns")
    env = Env(backend, host, found)
    assert {k: env.c[k].ip(NET[k]) for k in IP} == IP
    return env


# -- scapy ---------------------------------------------------------------------------------------
class Tap:
    """Every frame received (not sent) on (netns, iface) while open; queried by predicate."""

    def __init__(self, ns_path: str, iface: str):
        from scapy.all import AsyncSniffer

        self.frames: list = []
        self._lock = threading.Lock()
        self.sock = l2socket(ns_path, iface)
        self.sniffer = AsyncSniffer(opened_socket=self.sock, store=False, prn=self._add)
        self.sniffer.start()
        time.sleep(0.05)

    def _add(self, pkt):
        with self._lock:
            self.frames.append(pkt)

    def match(self, pred) -> list:
        with self._lock:
            frames = list(self.frames)
        out = []
        for p in frames:
            try:
                if pred(p):
                    out.append(p)
            except Exception:
                pass
        return out

    def wait(self, pred, timeout: float = 2.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            got = self.match(pred)
            if got or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def close(self):
        with contextlib.suppress(Exception):
            self.sniffer.stop()
        with contextlib.suppress(Exception):
            self.sock.close()


@contextlib.contextmanager
def taps(env: Env, *names: str):
    opened = {}
    try:
        for n in names:
            opened[n] = Tap(env.ns(n), env.iface(n))
        yield opened
    finally:
        for t in opened.values():
            t.close()


def send(env: Env, name: str, *frames) -> None:
    """Send Ethernet frames (scapy packets or raw bytes) out of name's interface."""
    s = l2socket(env.ns(name), env.iface(name))
    try:
        for f in frames:
            if isinstance(f, (bytes, bytearray)):
                s.outs.send(bytes(f))
            else:
                s.send(f)
    finally:
        s.close()


def has(mark: bytes):
    return lambda p: mark in bytes(p)


def quiet(seconds: float = 0.6) -> None:
    """How long a negative observation waits for a frame that must not come."""
    time.sleep(seconds)
