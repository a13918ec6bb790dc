"""Overlay networks across hosts: three test hosts on one underlay segment, etcd running as a
plain process (started here, its data in the test's tmp; underlay.py, the `underlay`
fixture), each host running `fastnet up` with its own file naming the same overlay network.

    +--- fnh-..-ovl1 ---+   +--- fnh-..-ovl2 ---+   +--- fnh-..-ovl3 ---+
    | web1   (mesh)     |   | web2   (mesh)     |   | web3   (mesh)     |
    | fastnet-vxlan     |   | fastnet-vxlan     |   | fastnet-vxlan     |
    | up0 10.99.0.1     |   | up0 10.99.0.2     |   | up0 10.99.0.3     |
    +--------+----------+   +--------+----------+   +--------+----------+
             |                       |                       |
    =========+======= br0 in the underlay namespace =========+===========
                      10.99.0.254: etcd (client port 2379)

mesh is 10.60.0.0/24, one VNI for all hosts; each host's containers get addresses no other
host holds (claimed in etcd). Every container reaches every other by address (ICMP, UDP, TCP
payload compared) and by name; a host that dies without `down` (its processes killed, its
namespace deleted) vanishes from the others' tables within the lease's TTL; a store that
cannot be reached at `up` is a one-line error with nothing made.
"""
from __future__ import annotations

import json
import time

from harness import EchoServer, containers, leftovers, one_line_error, ping, run, tcp_echo, udp_echo, wait_until
from underlay import STORE, TTL, remotes, resolve


def overlay_config(n: int, store: str = STORE, extra: str = "") -> str:
    return f"""\
name: shop
uplink: up0
store: {store}
networks:
  mesh: {{driver: overlay, subnet: 10.60.0.0/24}}
containers:
  web{n}: {{networks: [mesh]}}
{extra}"""


def test_three_hosts_reach_each_other_by_address_and_name(underlay):
    underlay.start_etcd()
    hosts = [underlay.add_host(n) for n in (1, 2, 3)]
    for n, h in enumerate(hosts, 1):
        h.up(overlay_config(n))
        if n > 1:  # the new container reaches the tables of the hosts already there within 1 s
            ip = containers(h, "shop")[f"web{n}"].ip("mesh")
            started = time.monotonic()
            for other in hosts[:n - 1]:
                wait_until(lambda other=other: ip in remotes(other), timeout=3, interval=0.02, what=f"{ip} on {other.name}")
            assert time.monotonic() - started < 1.0
    ctrs = {f"web{n}": containers(h, "shop")[f"web{n}"] for n, h in enumerate(hosts, 1)}
    addresses = {name: c.ip("mesh") for name, c in ctrs.items()}
    assert len(set(addresses.values())) == 3, f"two hosts gave one address: {addresses}"
    for n, h in enumerate(hosts, 1):
        others = {a for name, a in addresses.items() if name != f"web{n}"}
        wait_until(lambda h=h, others=others: remotes(h) == others, timeout=3, what=f"{h.name}'s remotes")
        # the MTU leaves room for VXLAN's 50 bytes
        link = json.loads(run("nsenter", f"--net={ctrs[f'web{n}'].netns}", "ip", "-j", "link", "show", "eth0").stdout)
        assert link[0]["mtu"] == 1450

    servers = {name: (EchoServer(c.netns, "tcp", port=7000), EchoServer(c.netns, "udp", port=7001))
               for name, c in ctrs.items()}
    try:
        for n, h in enumerate(hosts, 1):
            src = ctrs[f"web{n}"]
            for name, ip in addresses.items():
                if name == src.name:
                    continue
                assert ping(h, src.name, ip), f"{src.name} cannot ping {name} at {ip}"
                assert tcp_echo(src.netns, ip, 7000, size=256 * 1024) == "ok", f"{src.name} -> {name} TCP"
                assert udp_echo(src.netns, ip, 7001, size=1400) == "ok", f"{src.name} -> {name} UDP"
                assert resolve(h, src.name, name) == ip, f"{src.name} resolving {name}"
    finally:
        for tcp, udp in servers.values():
            tcp.close()
            udp.close()
    # nothing flooded across hosts: ARP for remote containers was answered locally
    assert hosts[0].counters("web1")["fwd_overlay_out"] > 0
    assert hosts[0].counters("web1", "fn_from_vxlan")["fwd_overlay_in"] > 0

    # host 3 dies without `down`: its processes killed, its namespaces deleted
    dead = addresses["web3"]
    hosts[2].force_cleanup()
    underlay.hosts.remove(hosts[2])
    started = time.monotonic()
    for h in hosts[:2]:
        wait_until(lambda h=h: dead not in remotes(h), timeout=TTL + 3, interval=0.2, what=f"{dead} to leave {h.name}")
    assert time.monotonic() - started <= TTL + 3
    # the others keep working
    assert ping(hosts[0], "web1", addresses["web2"])
    assert resolve(hosts[0], "web1", "web3") != dead


def test_unreachable_store_at_up_is_one_line_and_makes_nothing(underlay):
    h = underlay.add_host(1)  # no etcd running
    cp = h.up(overlay_config(1), check=False)
    assert cp.returncode != 0
    line = one_line_error(cp)
    assert STORE in line and "cannot be reached" in line, line
    assert h.projects() == []
    assert leftovers(h) == []


def test_store_lost_forwarding_goes_on_and_the_host_reconnects(underlay):
    underlay.start_etcd()
    h1, h2 = underlay.add_host(1), underlay.add_host(2)
    h1.up(overlay_config(1))
    h2.up(overlay_config(2))
    web1 = containers(h1, "shop")["web1"]
    web2 = containers(h2, "shop")["web2"]
    wait_until(lambda: remotes(h1) == {web2.ip("mesh")}, timeout=3, what="web2 on host 1")
    underlay.stop_etcd()
    time.sleep(1)
    assert ping(h1, "web1", web2.ip("mesh")), "forwarding stopped with the store"
    underlay.start_etcd()  # the same data directory: a restart
    # a container added on host 2 meanwhile is seen by host 1 once both are back in touch
    h2.up(overlay_config(2, extra="  api: {networks: [mesh]}\n"))
    api = containers(h2, "shop")["api"]
    wait_until(lambda: remotes(h1) == {web2.ip("mesh"), api.ip("mesh")}, timeout=TTL, interval=0.2,
               what="host 1 to learn api after the restart")
    assert ping(h1, "web1", api.ip("mesh"))
    assert resolve(h1, "web1", "api") == api.ip("mesh")
    assert web1.ip("mesh") != api.ip("mesh")
