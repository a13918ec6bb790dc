"""Addresses, routes and sizes on the NAT paths: martian sources from the uplink, ICMP errors
from the wrong side, frames the parser must not trust, SNAT by the host's routing, IP
fragments and path MTU.

   project paths (module host)
   front 10.93.1.0/24 (gateway 10.93.1.1)        back 10.93.2.0/24 (gateway 10.93.2.1)
     a   b  publish 8053:53/udp, 8080:80            c
      \\  |                                           |
       +-+------- HOST: fn_from_container on every port ------+
                                                              |
   HOST  up0 198.51.100.1/24 (fn_from_uplink) ==== veth ==== WORLD up0 198.51.100.2/24
                                                             (clients, servers, scapy)

   Tests that change the host's routing or MTUs build their own host (drawn where they are).
"""
from __future__ import annotations

import json
import socket
import time
from contextlib import closing

import pytest
from harness import (
    HOST_UPLINK_IP,
    UPLINK,
    WORLD_UPLINK_IP,
    Capture,
    EchoServer,
    containers,
    l2socket,
    marker,
    moved,
    sysctl,
    udp_echo,
    uplink_mac,
    wait_until,
)
from scapy.all import IP, UDP, Ether, Raw

FRONT_GW, BACK_GW = "10.93.1.1", "10.93.2.1"

PATHS = """\
name: paths
networks:
  front:
    subnet: 10.93.1.0/24
  back:
    subnet: 10.93.2.0/24
containers:
  a:
    networks: [front]
  b:
    networks: [front]
    publish:
      - "8053:53/udp"
      - "8080:80"
  c:
    networks: [back]
"""


@pytest.fixture(scope="module")
def paths(module_host):
    # WORLD and HOST answer every probe: no ICMP rate limit to make a retry flaky.
    for ns in (module_host.world_path, module_host.netns_path):
        sysctl(ns, "net.ipv4.icmp_ratelimit", 0)
    module_host.up(PATHS)
    return module_host, containers(module_host, "paths")


def from_world(host, *frames) -> None:
    """Send Ethernet frames from WORLD's up0 to HOST's."""
    with closing(l2socket(host.world_path, UPLINK)) as sk:
        for f in frames:
            sk.send(f)


def world_frame(host, ip: IP, l4) -> Ether:
    return Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host)) / ip / l4


# -- martian sources from the uplink ----------------------------------------------------------
MARTIANS = {
    "host address": HOST_UPLINK_IP,
    "gateway": FRONT_GW,
    "unassigned fastnet address": "10.93.2.77",
    "loopback": "127.0.0.1",
    "zero net": "0.1.2.3",
    "multicast": "224.0.0.5",
    "limited broadcast": "255.255.255.255",
    "uplink subnet broadcast": "198.51.100.255",
}


def test_martian_sources_never_reach_a_published_port(paths):
    """Each martian source sends a datagram to b's published port: none reaches b, each is
    counted; a datagram from an ordinary client sent after them arrives."""
    host, c = paths
    before = host.counters("b", "fn_from_uplink")
    marks = {name: marker("martian") for name in MARTIANS}
    ok_mark = marker("client")
    with EchoServer(c["b"].netns, "udp", port=53), Capture({"b": (c["b"].netns, "eth0")}) as cap:
        frames = [world_frame(host, IP(src=src, dst=HOST_UPLINK_IP), UDP(sport=41000, dport=8053) / Raw(marks[name]))
                  for name, src in MARTIANS.items()]
        from_world(host, *frames, world_frame(host, IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP),
                                              UDP(sport=41000, dport=8053) / Raw(ok_mark)))
        cap.wait_for("b", ok_mark)
        reached = [name for name, m in marks.items() if cap.seen("b", m)]
    assert reached == [], f"martian sources reached the container: {reached}"
    assert moved(before, host.counters("b", "fn_from_uplink"))["drop_martian_src"] == len(MARTIANS)


def test_the_fib_device_keeps_forwarding_when_ip_forward_is_written(paths):
    """Writing net.ipv4.ip_forward resets every device's forwarding; the agent sets the FIB
    device's again, and the routing checks go on working (an unassigned fastnet address is
    known as martian only through the FIB)."""
    host, c = paths
    link = next(l for l in host.links() if l["ifname"] == "fastnet-fib")
    assert (link["ifalias"], link["operstate"]) == ("fastnet:-host/fib", "DOWN")
    assert json.loads(host.sh("ip", "-j", "addr", "show", "dev", "fastnet-fib").stdout)[0]["addr_info"] == []
    forwarding = "/proc/sys/net/ipv4/conf/fastnet-fib/forwarding"
    assert host.sh("cat", forwarding).stdout.strip() == "1"
    old = sysctl(host.netns_path, "net.ipv4.ip_forward", 1)
    try:
        sysctl(host.netns_path, "net.ipv4.ip_forward", 0)
    finally:
        sysctl(host.netns_path, "net.ipv4.ip_forward", old)
    wait_until(lambda: host.sh("cat", forwarding).stdout.strip() == "1", timeout=5, what="forwarding=1 again")
    before = host.counters("b", "fn_from_uplink")
    from_world(host, world_frame(host, IP(src="10.93.2.78", dst=HOST_UPLINK_IP), UDP(sport=41001, dport=8053)))
    wait_until(lambda: moved(before, host.counters("b", "fn_from_uplink"))["drop_martian_src"] == 1,
               timeout=3, what="drop_martian_src")
