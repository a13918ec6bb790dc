"""The Docker-style reference backend (`backend: iptables`): a bridge per network and Docker
28's iptables layout (userland proxy off), on the same kind of test host as the eBPF suites.

   project ipt (module host)
   front 10.94.1.0/24 (bridge, gw .1)               back 10.94.2.0/24      vault 10.94.9.0/24 (internal)
     web   publish 8080:80  8053:53/udp               other                  v1   v2
           7000-7002:8000-8002  127.0.0.1:9443:443
     peer

   HOST  up0 198.51.100.1/24 ==== veth ==== WORLD up0 198.51.100.2/24 (clients, echo servers)
         FORWARD -> FASTNET-USER, FASTNET-FORWARD; nat FASTNET (DNAT), FASTNET-POSTROUTING
         (MASQUERADE); raw FASTNET-PREROUTING (direct access drops)

   The lifecycle tests (down restores the firewall, two projects, backend switch) have their
   own hosts.
"""
from __future__ import annotations

import json

import pytest
from harness import (
    BLOCKED,
    HOST_UPLINK_IP,
    WORLD_UPLINK_IP,
    EchoServer,
    assert_no_leftovers,
    bridges,
    containers,
    firewall,
    mac_for,
    one_line_error,
    ping,
    run,
    tcp_echo,
    udp_echo,
    udp_stream,
)

FRONT_GW = "10.94.1.1"

IPT = """\
name: ipt
backend: iptables
networks:
  front:
    subnet: 10.94.1.0/24
  back:
    subnet: 10.94.2.0/24
  vault:
    subnet: 10.94.9.0/24
    internal: true
containers:
  web:
    networks: [front]
    publish:
      - "8080:80"
      - "8053:53/udp"
      - "7000-7002:8000-8002"
      - "127.0.0.1:9443:443"
  peer:
    networks: [front]
  other:
    networks: [back]
  v1:
    networks: [vault]
  v2:
    networks: [vault]
"""


@pytest.fixture(scope="module")
def ipt(module_host):
    cp = module_host.up(IPT)
    return module_host, containers(module_host, "ipt"), cp.path


@pytest.fixture
def web(ipt):
    """TCP and UDP echo servers in web on its published container ports 80 and 53."""
    _, c, _ = ipt
    tcp, udp = EchoServer(c["web"].netns, "tcp", port=80), EchoServer(c["web"].netns, "udp", port=53)
    with tcp, udp:
        yield tcp, udp


def counters(host) -> dict[str, int]:
    """The backend's packet counters (`<table>/<chain>:<verdict>`) from `fastnet ps --json`."""
    data = host.ps()["counters"]["iptables"]
    return {f"{table}/{k}": v["packets"] for table, c in data.items() for k, v in c.items()}


# -- the objects ---------------------------------------------------------------------------------
def test_ps_shows_the_backend_and_its_counters(ipt):
    host, _, _ = ipt
    view = host.ps()
    project = view["projects"]["ipt"]
    assert project["backend"] == "iptables"
    assert {c["backend"] for c in project["containers"].values()} == {"iptables"}
    assert "nat/FASTNET:DNAT" in counters(host) and "raw/FASTNET-PREROUTING:DROP" in counters(host)


def test_each_network_is_a_bridge_holding_its_gateway(ipt):
    host, c, _ = ipt
    found = {b["ifalias"]: b for b in bridges(host).values()}
    assert set(found) == {"fastnet:ipt/front", "fastnet:ipt/back", "fastnet:ipt/vault"}
    front = found["fastnet:ipt/front"]
    assert front["address"] == mac_for(FRONT_GW) and front["linkinfo"]["info_data"]["stp_state"] == 0
    addrs = json.loads(host.sh("ip", "-j", "addr", "show", "dev", front["ifname"]).stdout)[0]["addr_info"]
    assert [(a["local"], a["prefixlen"]) for a in addrs if a["family"] == "inet"] == [(FRONT_GW, 24)]
    assert host.sh("sysctl", "-n", f"net.ipv4.conf.{front['ifname']}.route_localnet").stdout.strip() == "1"
    assert host.routes("10.94.1.0/24")[0]["dev"] == front["ifname"]
    # every port is on its network's bridge, in hairpin mode
    ports = {l["ifname"]: l for l in host.links() if l.get("master") == front["ifname"]}
    web_port = c["web"].nets["front"]["host_ifname"]
    assert set(ports) == {web_port, c["peer"].nets["front"]["host_ifname"]}
    assert ports[web_port]["linkinfo"]["info_slave_data"]["hairpin"] is True


# -- within and between networks -------------------------------------------------------------------
def test_containers_on_one_network_reach_each_other(ipt, web):
    host, c, _ = ipt
    assert ping(host, "peer", c["web"].ip("front"))
    assert ping(host, "v1", c["v2"].ip("vault"))
    assert tcp_echo(c["peer"].netns, c["web"].ip("front"), 80, size=1 << 20) == "ok"
    assert udp_echo(c["peer"].netns, c["web"].ip("front"), 53) == "ok"
    tcp, udp = web
    assert {a for a, _ in tcp.peers + udp.peers} == {c["peer"].ip("front")}


def test_networks_are_isolated(ipt, web):
    host, c, _ = ipt
    assert not ping(host, "other", c["web"].ip("front"), expect=False)
    assert tcp_echo(c["other"].netns, c["web"].ip("front"), 80, timeout=1) in BLOCKED
    assert tcp_echo(c["v1"].netns, c["web"].ip("front"), 80, timeout=1) in BLOCKED
    tcp, _ = web
    assert tcp.peers == []


def test_snat_to_the_world(ipt):
    host, c, _ = ipt
    with EchoServer(host.world_path, "tcp") as tcp, EchoServer(host.world_path, "udp") as udp:
        assert tcp_echo(c["web"].netns, WORLD_UPLINK_IP, tcp.port, size=1 << 20) == "ok"
        assert udp_echo(c["other"].netns, WORLD_UPLINK_IP, udp.port) == "ok"
        assert {a for a, _ in tcp.peers + udp.peers} == {HOST_UPLINK_IP}
        # an internal network has no way out
        assert tcp_echo(c["v1"].netns, WORLD_UPLINK_IP, tcp.port, timeout=1) in BLOCKED
        assert len(tcp.peers) == 1


# -- published ports -------------------------------------------------------------------------------
def test_world_reaches_published_ports_and_the_container_sees_the_client(ipt, web):
    host, _, _ = ipt
    tcp, udp = web
    before = counters(host)
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8080, size=1 << 20) == "ok"
    assert udp_stream(host.world_path, HOST_UPLINK_IP, 8053, count=100) == "ok"
    assert {a for a, _ in tcp.peers + udp.peers} == {WORLD_UPLINK_IP}
    assert counters(host)["nat/FASTNET:DNAT"] >= before["nat/FASTNET:DNAT"] + 2


def test_a_published_range_maps_each_port(ipt):
    host, c, _ = ipt
    servers = [EchoServer(c["web"].netns, "tcp", port=8000 + i) for i in range(3)]
    try:
        for i in range(3):
            assert tcp_echo(host.world_path, HOST_UPLINK_IP, 7000 + i) == "ok", f"port {7000 + i}"
        assert [len(s.peers) for s in servers] == [1, 1, 1]
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 7003, timeout=1) != "ok"
    finally:
        for s in servers:
            s.close()


@pytest.mark.parametrize("client", ["web", "peer"], ids=["itself", "same-network"])
def test_hairpin_through_the_host_address(ipt, web, client):
    host, c, _ = ipt
    tcp, udp = web
    assert tcp_echo(c[client].netns, HOST_UPLINK_IP, 8080, size=256 * 1024) == "ok"
    assert udp_echo(c[client].netns, HOST_UPLINK_IP, 8053) == "ok"
    # Docker's hairpin MASQUERADE covers a container reaching itself; a peer keeps its address
    expected = FRONT_GW if client == "web" else c["peer"].ip("front")
    assert {a for a, _ in tcp.peers + udp.peers} == {expected}


def test_hairpin_from_another_network_is_isolated(ipt, web):
    """Documented difference: as in Docker without the userland proxy, the DNAT'd flow then
    crosses from one bridge to another and the isolation rules drop it (eBPF: allowed)."""
    host, c, _ = ipt
    tcp, _ = web
    assert tcp_echo(c["other"].netns, HOST_UPLINK_IP, 8080, timeout=1) in BLOCKED
    assert tcp.peers == []


@pytest.mark.parametrize("ip", ["127.0.0.1", HOST_UPLINK_IP])
def test_host_process_reaches_published_ports(ipt, web, ip):
    host, _, _ = ipt
    tcp, udp = web
    assert tcp_echo(host.netns_path, ip, 8080, size=256 * 1024) == "ok"
    assert udp_stream(host.netns_path, ip, 8053, count=20) == "ok"
    # masqueraded to the bridge's address (route_localnet + MASQUERADE --src-type LOCAL)
    assert {a for a, _ in tcp.peers + udp.peers} == {FRONT_GW}


def test_loopback_publish_is_for_host_processes_only(ipt):
    host, c, _ = ipt
    with EchoServer(c["web"].netns, "tcp", port=443) as srv:
        assert tcp_echo(host.netns_path, "127.0.0.1", 9443) == "ok"
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 9443, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        assert tcp_echo(host.netns_path, HOST_UPLINK_IP, 9443, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        assert len(srv.peers) == 1


def test_unpublished_ports_and_container_addresses_are_unreachable(ipt, web):
    host, c, _ = ipt
    tcp, udp = web
    web_ip = c["web"].ip("front")
    with EchoServer(c["web"].netns, "tcp", port=81) as unpublished:
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 81, timeout=1) in ("ECONNREFUSED", *BLOCKED)
        before = counters(host)
        run("ip", "-n", host.world, "route", "add", "10.94.0.0/16", "via", HOST_UPLINK_IP)
        try:
            for port in (80, 81):
                assert tcp_echo(host.world_path, web_ip, port, timeout=1) in BLOCKED
            assert udp_echo(host.world_path, web_ip, 53, timeout=0.5, tries=1) in BLOCKED
            assert tcp_echo(host.world_path, c["v1"].ip("vault"), 80, timeout=1) in BLOCKED
        finally:
            run("ip", "-n", host.world, "route", "del", "10.94.0.0/16", check=False)
        assert counters(host)["raw/FASTNET-PREROUTING:DROP"] >= before["raw/FASTNET-PREROUTING:DROP"] + 3
        assert unpublished.peers == [] and tcp.peers == [] and udp.peers == []


def test_up_twice_converges(ipt, web):
    host, _, path = ipt
    before = firewall(host.name)
    again = host.up(path)
    assert "up to date" in again.stdout, again.stdout
    assert firewall(host.name) == before
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, 8080) == "ok"


# -- lifecycle (own hosts) -----------------------------------------------------------------------------
OTHER = """\
name: ipt2
backend: iptables
networks:
  net: {subnet: 10.95.1.0/24}
containers:
  box:
    networks: [net]
    publish: ["9090:90"]
"""


def test_down_puts_the_host_back_as_it_was(host):
    pristine = firewall(host.name)
    first = host.up(IPT)
    second = host.up(OTHER)
    changed = firewall(host.name)
    assert changed["sysctls"] == {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
    assert ":FORWARD DROP [0:0]" in changed["iptables-save"]  # Docker's policy when it enables forwarding
    assert len(bridges(host)) == 4
    # Both projects' rules are in the one ruleset; taking one down keeps the other's.
    host.down(first.path)
    left = "\n".join(firewall(host.name)["iptables-save"])
    assert "10.94." not in left and "--dport 9090 -j DNAT --to-destination 10.95.1.2:90" in left
    c = containers(host, "ipt2")
    with EchoServer(c["box"].netns, "tcp", port=90) as srv:
        assert tcp_echo(host.world_path, HOST_UPLINK_IP, 9090) == "ok" and len(srv.peers) == 1
    host.down(second.path)
    assert firewall(host.name) == pristine
    assert bridges(host) == {}
    assert_no_leftovers(host)


def test_up_with_the_backend_flag_and_no_switching_while_up(host):
    path = host.write(IPT.replace("backend: iptables\n", ""))  # the file says ebpf (the default)
    host.fastnet("up", "--backend", "iptables", "-f", str(path))
    assert host.ps()["projects"]["ipt"]["backend"] == "iptables"
    cp = host.fastnet("up", "-f", str(path), check=False)
    assert cp.returncode == 1
    assert "runs on iptables; run `fastnet down` before switching to ebpf" in one_line_error(cp)
    assert host.ps()["projects"]["ipt"]["backend"] == "iptables"
    assert len(bridges(host)) == 3


def test_a_failed_first_up_rolls_the_host_back(host):
    pristine = firewall(host.name)
    with_command = OTHER.replace("    publish:", "    command: [sleep, infinity]\n    publish:")
    cp = host.up(with_command, check=False, env={"FASTNET_FAILPOINT": "start_command:box"})
    assert cp.returncode == 1 and "rolled back" in one_line_error(cp)
    assert firewall(host.name) == pristine
    assert bridges(host) == {}
    assert_no_leftovers(host)


def test_down_without_the_state_file(host):
    pristine = firewall(host.name)
    first = host.up(IPT)
    (host.dir / "projects" / "ipt.json").unlink()
    host.down(first.path)  # the file names the backend
    assert firewall(host.name) == pristine
    assert bridges(host) == {}
    assert_no_leftovers(host)
