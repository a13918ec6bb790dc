"""What `fastnet down` removes of the NAT datapath: the program on the uplink (and the clsact
qdisc, only if fastnet added it), the socket hooks on the root cgroup, the conntrack maps.
Each test has its own host.

   project gone
   front 10.91.1.0/24: a  publish 8080:80, 8053:53/udp
                                                    root cgroup (shared by every host on the
   HOST  up0 198.51.100.1/24 ==== veth ==== WORLD   machine): fn_sock_connect4, _sendmsg4,
         clsact: ingress fn_from_uplink             _recvmsg4, _getpeername4, _connect6,
                                                    _recvmsg6, _getpeername6, _bind4, _bind6
                                                    of each host, told apart by the maps they
                                                    share with that host's fn_from_uplink
"""
from __future__ import annotations

import json

import pytest
from harness import (
    UPLINK,
    WORLD_UPLINK_IP,
    EchoServer,
    assert_no_leftovers,
    cgroup_tree_ids,
    containers,
    flows,
    prog_map_ids,
    run,
    sock_hook_ids,
    udp_echo,
    uplink_program,
    wait_until,
)

DOWN = """\
name: gone
networks:
  front:
    subnet: 10.91.1.0/24
containers:
  a:
    networks: [front]
    publish: ["8080:80", "8053:53/udp"]
"""


def qdiscs(host) -> list[str]:
    return [q["kind"] for q in json.loads(host.sh("tc", "-j", "qdisc", "show", "dev", UPLINK).stdout or "[]")]


@pytest.mark.parametrize("clsact", ["made-by-fastnet", "already-there"])
def test_down_removes_the_uplink_program_socket_hooks_and_conntrack(host, clsact):
    if clsact == "already-there":
        host.sh("tc", "qdisc", "add", "dev", UPLINK, "clsact")
    host.up(DOWN)
    c = containers(host, "gone")
    uplink = uplink_program(host)
    assert uplink, "no program on up0 ingress"
    assert "clsact" in qdiscs(host)
    hooks = sock_hook_ids(host)
    assert sorted(hooks.values()) == sorted(
        ["fn_sock_connect4", "fn_sock_sendmsg4", "fn_sock_recvmsg4", "fn_sock_getpeername4",
         "fn_sock_connect6", "fn_sock_recvmsg6", "fn_sock_getpeername6", "fn_sock_bind4", "fn_sock_bind6"]
    ), hooks
    assert set(hooks) <= cgroup_tree_ids(), "bpftool cgroup tree does not show the hooks"
    maps = {}
    for m in prog_map_ids(uplink):
        info = json.loads(run("bpftool", "-j", "map", "show", "id", str(m)).stdout)
        maps[m] = info.get("name", "")
    ct_maps = {m for m, name in maps.items() if name in ("fn_ct", "fn_ct_budget")}
    assert len(ct_maps) == 2, maps
    with EchoServer(host.world_path, "udp") as srv:
        assert udp_echo(c["a"].netns, WORLD_UPLINK_IP, srv.port) == "ok"
    assert flows(host, "udp", kind="snat"), "no flow tracked before down"

    host.down("gone")
    assert host.tc_filters(UPLINK) == [], host.sh("tc", "filter", "show", "dev", UPLINK, "ingress").stdout
    if clsact == "made-by-fastnet":
        assert "clsact" not in qdiscs(host), "fastnet left the clsact qdisc it added"
    else:
        assert "clsact" in qdiscs(host), "fastnet removed a clsact qdisc it did not add"
        host.sh("tc", "qdisc", "del", "dev", UPLINK, "clsact")
    assert not set(hooks) & cgroup_tree_ids(), f"socket hooks still attached: {set(hooks) & cgroup_tree_ids()}"

    def gone(kind, ids):
        return all(run("bpftool", kind, "show", "id", str(i), check=False).returncode != 0 for i in ids)

    wait_until(lambda: gone("prog", [uplink, *hooks]), timeout=5, what="fastnet's programs to be freed")
    wait_until(lambda: gone("map", ct_maps), timeout=5, what="the conntrack maps to be freed")
    assert json.loads(host.fastnet("conntrack", "--json").stdout) == []
    assert_no_leftovers(host)
