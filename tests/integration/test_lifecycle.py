"""`up` converges and `down` removes everything, on a fresh test host per test.

   BASE (project demo)                              EDITED (test 8)
   front 10.90.1.0/24     back 10.90.2.0/24         front 10.90.1.0/24      back 10.90.2.0/24
     a .10 [sleep]          d                         a .10 [sleep]           d
     b                      e/eth1                    b/eth0  ............... b/eth1   (b: +back)
     c                                                -  (c removed)          g        (g: new)
     e/eth0                                           e/eth0                  e/eth1
   bridge 172.17.0.0/16: f                          bridge 172.17.0.0/16: f

   Two hosts (test 13): HOST1 and HOST2 both run `demo` with the same subnets.
      HOST1 --up0-- WORLD1          HOST2 --up0-- WORLD2
"""
from __future__ import annotations

import os
import signal

import pytest
from harness import (
    TWO_NETWORKS,
    TWO_NETWORKS_WITH_COMMAND,
    EchoServer,
    assert_no_leftovers,
    assert_project_works,
    containers,
    edit,
    pid_alive,
    ping_from_host,
    udp_echo,
    wait_until,
)

BASE = TWO_NETWORKS_WITH_COMMAND
EDITED = edit(
    edit(edit(BASE, "  c:\n    networks: [front]\n", ""), "  b:\n    networks: [front]\n", "  b:\n    networks: [front, back]\n"),
    "  f: {}\n",
    "  f: {}\n  g:\n    networks: [back]\n",
)


# -- 7 -----------------------------------------------------------------------------------
def test_up_twice_changes_nothing(host):
    first = host.up(BASE)
    assert "is up: 6 containers" in first.stdout
    before = host.snapshot("demo")
    second = host.up(first.path)
    assert "up to date" in second.stdout, second.stdout
    assert host.snapshot("demo") == before
    assert pid_alive(before["a"]["pid"])
    assert_project_works(host)


# -- 8 -----------------------------------------------------------------------------------
def test_edited_file_changes_only_what_changed(host):
    host.up(BASE)
    before = host.snapshot("demo")
    edited = host.up(EDITED)
    out = edited.stdout
    for line in ("- container c", "+ container g", "+ interface b/back", "+ interface g/back"):
        assert line in out, f"{line!r} missing from:\n{out}"
    for name in ("a", "d", "e", "f"):
        assert f"container {name}" not in out and f"interface {name}/" not in out, out
    after = host.snapshot("demo")

    assert set(after) == {"a", "b", "d", "e", "f", "g"}
    for name in ("a", "d", "e", "f"):
        assert after[name] == before[name], f"{name} was touched"
    assert after["b"]["netns"] == before["b"]["netns"]
    assert after["b"]["networks"]["front"] == before["b"]["networks"]["front"]
    assert after["b"]["networks"]["back"][0] == "eth1"
    gone_port = before["c"]["networks"]["front"][3]
    assert gone_port not in {l["ifname"] for l in host.links()}, "c's host port is still there"
    assert not host.routes(before["c"]["networks"]["front"][1]), "c's /32 route is still there"
    assert_project_works(host)
    assert "up to date" in host.up(edited.path).stdout


# -- 9 -----------------------------------------------------------------------------------
def test_down_removes_everything_and_can_run_again(host):
    cp = host.up(BASE)
    assert_project_works(host)
    assert host.prog_ids and host.map_ids and len(host.container_netns) == 6
    assert "project demo is down" in host.down(cp.path).stdout
    assert_no_leftovers(host)
    assert sorted(p.name for p in host.dir.iterdir()) == ["lock"]
    host.down(cp.path)
    host.down("demo")
    assert_no_leftovers(host)


@pytest.mark.parametrize("how", ["file", "project"])
def test_down_without_the_state_file(host, how):
    cp = host.up(BASE)
    (host.dir / "projects" / "demo.json").unlink()
    host.down(cp.path if how == "file" else "demo")
    assert_no_leftovers(host)


def test_down_after_the_agent_was_killed(host):
    cp = host.up(BASE)
    pid = host.agent_record()["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), what="the agent to die")
    host.down(cp.path)
    assert_no_leftovers(host)


# -- 13 ----------------------------------------------------------------------------------
def test_two_hosts_run_the_same_project_side_by_side(make_host):
    h1, h2 = make_host(), make_host()
    h1.up(TWO_NETWORKS)
    h2.up(TWO_NETWORKS)
    assert h1.dir != h2.dir and h1.agent_record()["pid"] != h2.agent_record()["pid"]
    c1, c2 = containers(h1, "demo"), containers(h2, "demo")
    assert {n: x.nets["front"]["ipv4"] for n, x in c1.items() if "front" in x.nets} == {
        n: x.nets["front"]["ipv4"] for n, x in c2.items() if "front" in x.nets
    }
    for h in (h1, h2):
        assert_project_works(h)
        assert ping_from_host(h, "10.90.1.10")

    # The same address on both hosts is a different container: a server only on HOST2's `a`.
    with EchoServer(c2["a"].netns, "udp") as srv:
        assert udp_echo(c2["b"].netns, "10.90.1.10", srv.port) == "ok"
        assert udp_echo(c1["b"].netns, "10.90.1.10", srv.port, timeout=0.5, tries=1) != "ok"

    h1.down("demo")
    assert_no_leftovers(h1)
    assert_project_works(h2)
    assert h2.projects() == ["demo"]
