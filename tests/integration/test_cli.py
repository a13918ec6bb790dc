"""`command:`, `exec`, `inspect`, `ps`, and running fastnet through `ip netns exec` or `nsenter`.

   project cli (module host)                   project web (test 10)
   front 10.90.1.0/24    back 10.90.2.0/24     front 10.90.1.0/24
     a .10 [sleep]         d                     web .10  [python3 -m http.server 8000]
       aliases: www        e/eth1                client   --- GET http://10.90.1.10:8000/ -->
     b                                                                          (from its netns)
     c
     e/eth0
   bridge 172.17.0.0/16: f

   HOST --up0-- WORLD; every command runs in HOST via `ip netns exec HOST` or
   `nsenter --net=/run/netns/HOST` (test 12 mixes them).
"""
from __future__ import annotations

import json
import os
import socket

import pytest
from harness import (
    HOST_PORT_RE,
    TWO_NETWORKS,
    assert_no_leftovers,
    containers,
    edit,
    make_socket,
    mac_for,
    ns_inode,
    pid_alive,
    ping,
    wait_until,
)

CLI = edit(
    edit(TWO_NETWORKS, "name: demo", "name: cli"),
    "        ipv4_address: 10.90.1.10\n",
    "        ipv4_address: 10.90.1.10\n        aliases: [www]\n    command: [sleep, infinity]\n",
)

WEB = """\
name: web
networks:
  front:
    subnet: 10.90.1.0/24
containers:
  web:
    networks:
      front:
        ipv4_address: 10.90.1.10
    command: [python3, -m, http.server, "8000"]
  client:
    networks: [front]
"""


@pytest.fixture(scope="module")
def cli(module_host):
    module_host.up(CLI)
    return module_host


def http_get(ns_path: str, ip: str, port: int, timeout: float = 1.0) -> bytes:
    s = make_socket(ns_path, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def try_http_get(ns_path, ip, port):
    try:
        return http_get(ns_path, ip, port)
    except OSError:
        return None


# -- 10 ----------------------------------------------------------------------------------
def test_command_runs_in_the_container_and_stops_with_down(host):
    cp = host.up(WEB)
    web = host.inspect("web")
    cmd = web["command"]
    assert cmd["argv"] == ["python3", "-m", "http.server", "8000"] and cmd["running"], cmd
    pid = cmd["pid"]
    assert os.readlink(f"/proc/{pid}/ns/net") == f"net:[{ns_inode(web['netns'])}]", "command is not in web's netns"
    assert [p for p, _ in host.container_processes()] == [pid]

    client = containers(host, "web")["client"]
    reply = wait_until(lambda: try_http_get(client.netns, "10.90.1.10", 8000), timeout=10, what="http.server in web")
    assert reply.startswith(b"HTTP/1.0 200"), reply[:100]
    # It listens in web's namespace only: nothing answers on port 8000 in the client's or HOST's own.
    assert try_http_get(client.netns, "127.0.0.1", 8000) is None
    assert try_http_get(host.netns_path, "127.0.0.1", 8000) is None

    host.down(cp.path)
    assert not pid_alive(pid)
    assert_no_leftovers(host)


# -- 11 ----------------------------------------------------------------------------------
def test_exec_passes_the_exit_status_through(cli):
    assert cli.exec("b", "sh", "-c", "exit 7").returncode == 7
    assert cli.exec("b", "true").returncode == 0
    missing = cli.exec("b", "no-such-command-fastnet")
    assert missing.returncode == 127
    assert missing.stderr.count("\n") == 1 and "no-such-command-fastnet" in missing.stderr, missing.stderr
    assert cli.exec("no-such-container", "true").returncode == 1


def test_exec_runs_inside_the_container(cli):
    e = cli.inspect("e")
    out = cli.exec("e", "readlink", "/proc/self/ns/net")
    assert out.stdout.strip() == f"net:[{ns_inode(e['netns'])}]"
    addrs = json.loads(cli.exec("e", "ip", "-j", "-4", "addr", "show").stdout)
    assert {(a["ifname"], i["local"]) for a in addrs for i in a["addr_info"]} == {
        ("lo", "127.0.0.1"),
        (e["networks"]["front"]["ifname"], e["networks"]["front"]["ipv4"]),
        (e["networks"]["back"]["ifname"], e["networks"]["back"]["ipv4"]),
    }
    # the exec'd process sees its own devices in /sys too
    assert cli.exec("e", "test", "-e", "/sys/class/net/eth1").returncode == 0
    assert ping(cli, "e", "10.90.2.1")


def test_inspect_describes_the_container(cli):
    keeper = cli.keeper_record()["pid"]
    links = {l["ifname"]: l for l in cli.links()}
    a = cli.inspect("a")
    assert set(a) >= {"name", "project", "backend", "netns", "running", "networks", "command", "counters"}
    assert (a["name"], a["project"], a["backend"], a["running"]) == ("a", "cli", "ebpf", True)
    assert a["netns"].startswith(f"/proc/{keeper}/root/") and a["netns"].endswith("/cli/a"), a["netns"]
    assert ns_inode(a["netns"]) not in (cli.inode, ns_inode("/proc/self/ns/net"))
    front = a["networks"]["front"]
    assert {k: front[k] for k in ("ifname", "ipv4", "prefixlen", "mac", "gateway", "aliases")} == {
        "ifname": "eth0",
        "ipv4": "10.90.1.10",
        "prefixlen": 24,
        "mac": "02:fa:0a:5a:01:0a",
        "gateway": "10.90.1.1",
        "aliases": ["www"],
    }
    assert HOST_PORT_RE.match(front["host_ifname"]) and front["host_ifname"].startswith("cli-")
    assert links[front["host_ifname"]]["ifindex"] == front["host_ifindex"]
    assert a["command"]["argv"] == ["sleep", "infinity"] and a["command"]["running"]
    assert pid_alive(a["command"]["pid"])
    assert isinstance(a["counters"].get("fn_from_container"), dict), a["counters"]

    e = cli.inspect("cli/e")  # PROJECT/NAME works too
    assert list(e["networks"]) == ["front", "back"]
    assert [e["networks"][n]["ifname"] for n in ("front", "back")] == ["eth0", "eth1"]
    for net in e["networks"].values():
        assert net["mac"] == mac_for(net["ipv4"]) and net["aliases"] == []
    assert e["command"] is None
    f = cli.inspect("f")
    assert list(f["networks"]) == ["bridge"] and f["networks"]["bridge"]["gateway"] == "172.17.0.1"
    assert f["networks"]["bridge"]["prefixlen"] == 16

    missing = cli.fastnet("inspect", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("fastnet: error: ")


def test_ps_lists_the_project(cli):
    ps = cli.ps()
    assert ps["host"] == cli.key
    assert ps["agent_pid"] == cli.agent_record()["pid"]
    assert ps["keeper_pid"] == cli.keeper_record()["pid"]
    project = ps["projects"]["cli"]
    assert set(project["containers"]) == set("abcdef")
    assert {n: v["subnet"] for n, v in project["networks"].items()} == {
        "front": "10.90.1.0/24",
        "back": "10.90.2.0/24",
        "bridge": "172.17.0.0/16",
    }
    text = cli.fastnet("ps").stdout
    assert "cli" in text and "sleep infinity" in text


# -- 12 ----------------------------------------------------------------------------------
@pytest.mark.parametrize("first,other", [("ip", "nsenter"), ("nsenter", "ip")])
def test_ip_netns_exec_and_nsenter_act_on_the_same_host(host, first, other):
    cp = host.up(TWO_NETWORKS, via=first)
    ps = host.ps(via=other)
    assert ps["host"] == host.key and set(ps["projects"]) == {"demo"}
    b = host.inspect("b", via=other)
    assert host.exec("a", "ping", "-c1", "-W2", b["networks"]["front"]["ipv4"], via=other).returncode == 0
    assert host.exec("a", "sh", "-c", "exit 3", via=other).returncode == 3
    assert "up to date" in host.fastnet("up", "-f", str(cp.path), via=other).stdout
    host.down(cp.path, via=first)
    assert host.ps(via=other)["projects"] == {}
    assert_no_leftovers(host)
