"""Network modes: host, none and container:NAME, with real namespaces and real traffic.

   MODES (project modes)
   HOST fnh-*                                                     WORLD fnw-*
     up0 198.51.100.1/24 ================ veth ================== up0 198.51.100.2/24
     hostsrv  network_mode: host        [echo server 198.51.100.1:HOST_PORT, in HOST itself]
     front 10.91.1.0/24 (bridge driver)
       db    .10 eth0                    [sleep]
       web   network_mode: container:db  [echo server 127.0.0.1:LOCAL_PORT, in db's namespace]
       peer  .20 eth0
     box   network_mode: none            own namespace, only lo (up)

The echo server is `python3 ECHO_SERVER ADDRESS PORT` started by `command:`; clients send
random bytes and compare the echo byte for byte (harness.tcp_echo).
"""
from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest
from harness import (
    BLOCKED,
    HOST_UPLINK_IP,
    UPLINK,
    WORLD_UPLINK_IP,
    EchoServer,
    assert_no_leftovers,
    edit,
    netns_references,
    ns_cookie,
    ns_inode,
    one_line_error,
    pid_alive,
    ping,
    tcp_echo,
    wait_until,
)

HOST_PORT, LOCAL_PORT = 18081, 18082
ECHO_SERVER = textwrap.dedent(
    """\
    import socketserver, sys

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(65536):
                self.request.sendall(data)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
    """
)


@pytest.fixture
def echo_script(tmp_path):
    path = tmp_path / "echo_server.py"
    path.write_text(ECHO_SERVER)
    return str(path)


def modes_config(echo: str) -> str:
    return textwrap.dedent(
        f"""\
        name: modes
        networks:
          front:
            subnet: 10.91.1.0/24
        containers:
          web:
            network_mode: "container:db"   # before db in the file: fastnet orders creation
            command: [python3, {echo}, 127.0.0.1, "{LOCAL_PORT}"]
          db:
            networks:
              front: {{ipv4_address: 10.91.1.10}}
            command: [sleep, infinity]
          peer:
            networks:
              front: {{ipv4_address: 10.91.1.20}}
          hostsrv:
            network_mode: host
            command: [python3, {echo}, {HOST_UPLINK_IP}, "{HOST_PORT}"]
          box:
            network_mode: none
        """
    )


def command_pid(host, name: str) -> int:
    cmd = host.inspect(name)["command"]
    assert cmd and cmd["running"], f"{name}'s command is not running: {cmd}"
    return cmd["pid"]


def netns_inode_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def wait_for_echo(ns_path: str, ip: str, port: int) -> None:
    """The command's server may need a moment to bind."""
    wait_until(lambda: tcp_echo(ns_path, ip, port, size=4096, timeout=1) == "ok", timeout=10,
               what=f"echo server on {ip}:{port}")


def ip_json(host, container: str, *args: str):
    cp = host.exec(container, "ip", "-j", *args)
    assert cp.returncode == 0, cp.stderr
    return json.loads(cp.stdout or "[]")


@pytest.fixture
def modes_up(host, echo_script):
    cp = host.up(modes_config(echo_script))
    return host, cp


# -- host ---------------------------------------------------------------------------------
def test_host_mode_server_is_reachable_from_world_on_the_host_address(modes_up):
    host, _ = modes_up
    pid = command_pid(host, "hostsrv")
    assert netns_inode_of(pid) == host.inode, "the host-mode command is not in HOST's namespace"
    wait_for_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT)
    # No namespace and no link of its own.
    view = host.inspect("hostsrv")
    assert view["netns"] is None and view["networks"] == {} and view["mode"] == "host"
    aliases = [l.get("ifalias", "") for l in host.links()]
    assert not any("/hostsrv/" in a for a in aliases), aliases


def test_host_mode_exec_sees_the_host_interfaces(modes_up):
    host, _ = modes_up
    inside = {(l["ifname"], l["ifindex"], l.get("address")) for l in ip_json(host, "hostsrv", "link")}
    assert inside == {(l["ifname"], l["ifindex"], l.get("address")) for l in host.links()}
    addrs = {a["local"] for i in ip_json(host, "hostsrv", "addr") if i["ifname"] == UPLINK for a in i["addr_info"]}
    assert HOST_UPLINK_IP in addrs
    # and reaches WORLD the way the host does
    assert ping(host, "hostsrv", WORLD_UPLINK_IP)


# -- none ---------------------------------------------------------------------------------
def test_none_mode_has_only_loopback_and_no_way_out(modes_up):
    host, _ = modes_up
    links = ip_json(host, "box", "link")
    assert [l["ifname"] for l in links] == ["lo"], links
    assert "UP" in links[0]["flags"]
    addrs = [a["local"] for i in ip_json(host, "box", "addr") for a in i["addr_info"] if a["family"] == "inet"]
    assert addrs == ["127.0.0.1"], addrs
    assert ip_json(host, "box", "route") == []
    assert not ping(host, "box", WORLD_UPLINK_IP, expect=False)
    assert not ping(host, "box", "10.91.1.20", expect=False)
    box = host.inspect("box")
    assert box["mode"] == "none" and box["networks"] == {}
    # its own loopback works
    with EchoServer(box["netns"], "tcp", "127.0.0.1") as srv:
        assert tcp_echo(box["netns"], "127.0.0.1", srv.port) == "ok"


def test_none_mode_is_isolated_from_the_other_containers(modes_up):
    host, _ = modes_up
    box, peer, db = (host.inspect(n) for n in ("box", "peer", "db"))
    assert ns_inode(box["netns"]) not in {ns_inode(peer["netns"]), ns_inode(db["netns"]), host.inode}
    with EchoServer(peer["netns"], "tcp") as srv:
        assert tcp_echo(peer["netns"], "10.91.1.20", srv.port) == "ok"  # the server works
        assert tcp_echo(box["netns"], "10.91.1.20", srv.port, timeout=1) == "ENETUNREACH"
    # A server in box on every address is reachable from nowhere but box: no address but lo.
    with EchoServer(box["netns"], "tcp") as srv:
        for ns in (peer["netns"], db["netns"], host.netns_path, host.world_path):
            assert tcp_echo(ns, "127.0.0.1", srv.port, timeout=1) == "ECONNREFUSED"


# -- container: ---------------------------------------------------------------------------
def test_container_mode_shares_the_namespace(modes_up):
    host, _ = modes_up
    web, db = host.inspect("web"), host.inspect("db")
    assert web["mode"] == "container:db" and db["mode"] == "bridge"
    assert ns_inode(web["netns"]) == ns_inode(db["netns"])
    assert netns_inode_of(command_pid(host, "web")) == ns_inode(db["netns"])
    assert ip_json(host, "web", "addr") == ip_json(host, "db", "addr")
    eth0 = [a["local"] for i in ip_json(host, "web", "addr") if i["ifname"] == "eth0" for a in i["addr_info"]]
    assert eth0 == ["10.91.1.10"]
    # web's server on 127.0.0.1 is reachable from db (a socket in db's namespace)...
    wait_for_echo(db["netns"], "127.0.0.1", LOCAL_PORT)
    # ... and from db's processes started by `fastnet exec`
    probe = f"import socket; s = socket.create_connection(('127.0.0.1', {LOCAL_PORT}), 2); s.sendall(b'xyz'); print(s.recv(3).decode())"
    cp = host.exec("db", "python3", "-c", probe)
    assert cp.returncode == 0 and cp.stdout.strip() == "xyz", cp
    # but not from its network peer
    assert tcp_echo(host.inspect("peer")["netns"], "10.91.1.10", LOCAL_PORT, timeout=1) == "ECONNREFUSED"


def test_container_mode_still_reaches_the_network_peers(modes_up):
    host, _ = modes_up
    assert ping(host, "web", "10.91.1.20")
    assert ping(host, "db", "10.91.1.20")
    peer = host.inspect("peer")["netns"]
    with EchoServer(peer, "tcp") as srv:
        probe = f"import socket; s = socket.create_connection(('10.91.1.20', {srv.port}), 2); s.sendall(b'abc'); print(s.recv(3).decode())"
        cp = host.exec("web", "python3", "-c", probe)
        assert cp.returncode == 0 and cp.stdout.strip() == "abc", cp
        assert srv.peers and srv.peers[-1][0] == "10.91.1.10"  # web speaks with db's address


# -- ps and inspect -----------------------------------------------------------------------
def test_ps_and_inspect_show_mode_and_driver(modes_up):
    host, _ = modes_up
    ctrs = host.ps()["projects"]["modes"]["containers"]
    assert {n: c["mode"] for n, c in ctrs.items()} == {
        "web": "container:db", "db": "bridge", "peer": "bridge", "hostsrv": "host", "box": "none",
    }
    assert ctrs["db"]["networks"]["front"]["driver"] == "bridge"
    table = host.fastnet("ps").stdout
    header = table.splitlines()[0].split()
    assert header[:7] == ["PROJECT", "CONTAINER", "ORIGIN", "BACKEND", "MODE", "NETWORKS", "DRIVER"], header
    rows = {w[1]: w for w in (line.split() for line in table.splitlines()[1:]) if w and w[0] == "modes"}
    assert all(r[2] == "file" for r in rows.values()), rows  # from `fastnet up`, not an engine's CNI call
    assert rows["web"][4] == "container:db" and rows["hostsrv"][4] == "host" and rows["box"][4] == "none"
    assert rows["db"][4:7] == ["bridge", "front=10.91.1.10/24", "front=bridge"], rows["db"]


# -- lifecycle ----------------------------------------------------------------------------
def test_down_stops_every_command_and_leaves_nothing(modes_up):
    host, cp = modes_up
    pids = [command_pid(host, n) for n in ("hostsrv", "web", "db")]
    host.down(cp.path)
    assert not any(pid_alive(p) for p in pids)
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT, timeout=1) in ("ECONNREFUSED", *BLOCKED)
    assert_no_leftovers(host)


def test_down_without_state_stops_the_host_mode_command(modes_up):
    host, _ = modes_up
    pid = command_pid(host, "hostsrv")
    (host.dir / "projects" / "modes.json").unlink()
    host.down("modes")
    assert not pid_alive(pid)
    assert_no_leftovers(host)


def test_changed_mode_recreates_the_container(modes_up, echo_script):
    host, cp = modes_up
    old_box = ns_inode(host.inspect("box")["netns"])
    old_host_pid = command_pid(host, "hostsrv")
    text = cp.path.read_text()
    text = edit(text, "  box:\n    network_mode: none\n", "  box:\n    networks: [front]\n")
    text = edit(text, "  hostsrv:\n    network_mode: host\n", "  hostsrv:\n    network_mode: none\n")
    out = host.up(text).stdout
    for line in ("- container box", "+ container box", "- container hostsrv", "+ container hostsrv"):
        assert line in out, out
    box = host.inspect("box")
    assert box["mode"] == "bridge" and ns_inode(box["netns"]) != old_box
    assert ping(host, "box", "10.91.1.20")
    # hostsrv now runs in a namespace of its own: the host's address is not its to serve
    assert not pid_alive(old_host_pid)
    hostsrv = host.inspect("hostsrv")
    assert hostsrv["mode"] == "none"
    wait_until(lambda: not host.inspect("hostsrv")["command"]["running"], timeout=10,
               what="hostsrv's server to fail: 198.51.100.1 is not an address of its namespace")
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT, timeout=1) in ("ECONNREFUSED", *BLOCKED)
    # and back to host mode
    out = host.up(modes_config(echo_script)).stdout
    assert "+ container hostsrv" in out and "+ container box" in out, out
    assert netns_inode_of(command_pid(host, "hostsrv")) == host.inode
    wait_for_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT)


def test_running_commands_keep_no_removed_namespace_alive(modes_up):
    """Commands (the host-mode one included) start in a copy of the agent's mounts, which
    bind every container namespace of that moment: removing a container while they run must
    still free its namespace (checked in every mount namespace on the machine)."""
    host, cp = modes_up
    box = host.inspect("box")["netns"]
    gone = {ns_inode(box): ns_cookie(box)}
    pids = [command_pid(host, n) for n in ("hostsrv", "web", "db")]
    out = host.up(edit(cp.path.read_text(), "  box:\n    network_mode: none\n", "")).stdout
    assert "- container box" in out and "~ command" not in out, out
    assert [command_pid(host, n) for n in ("hostsrv", "web", "db")] == pids
    wait_until(lambda: not netns_references(gone), what=f"box's namespace to go: {netns_references(gone)}")


def test_recreated_namespace_takes_its_sharers_along(modes_up):
    host, cp = modes_up
    old_ns = ns_inode(host.inspect("db")["netns"])
    old_web = command_pid(host, "web")
    text = edit(cp.path.read_text(), "    networks:\n      front: {ipv4_address: 10.91.1.10}\n", "    network_mode: none\n")
    out = host.up(text).stdout
    assert "- container web" in out and "+ container web" in out, out
    assert out.index("- container web") < out.index("- container db"), "sharer removed after its owner"
    new_ns = ns_inode(host.inspect("db")["netns"])
    assert new_ns != old_ns and not pid_alive(old_web)
    assert netns_inode_of(command_pid(host, "web")) == new_ns
    wait_for_echo(host.inspect("db")["netns"], "127.0.0.1", LOCAL_PORT)
    assert "up to date" in host.up(text).stdout


def test_dead_command_of_host_mode_is_restarted(modes_up):
    host, cp = modes_up
    pid = command_pid(host, "hostsrv")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), what="the command to die")
    out = host.up(cp.path).stdout
    assert "~ command of hostsrv restarted" in out, out
    new = command_pid(host, "hostsrv")
    assert new != pid and netns_inode_of(new) == host.inode
    wait_for_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT)


@pytest.mark.parametrize("failpoint", ["start_command:hostsrv", "start_command:web"])
def test_failure_half_way_rolls_back(host, echo_script, failpoint):
    cp = host.up(modes_config(echo_script), check=False, env={"FASTNET_FAILPOINT": failpoint})
    assert cp.returncode == 1, cp
    err = one_line_error(cp)
    assert "rolled back" in err and failpoint in err, err
    assert_no_leftovers(host)
    assert tcp_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT, timeout=1) in ("ECONNREFUSED", *BLOCKED)


@pytest.mark.parametrize(
    "snippet, problem",
    [
        ("    network_mode: host\n    publish: [\"8080:80\"]\n", "cannot be combined with 'publish'"),
        ("    network_mode: none\n    networks: [front]\n", "cannot be combined with 'networks'"),
        ("    network_mode: container:solo\n", "names the container itself"),
        ("    network_mode: container:ghost\n", "no container 'ghost'"),
        ("    network_mode: bogus\n", "unknown network mode 'bogus'"),
    ],
)
def test_bad_mode_is_a_one_line_error_and_creates_nothing(host, snippet, problem):
    text = "name: bad\nnetworks:\n  front: {subnet: 10.91.1.0/24}\ncontainers:\n  solo:\n" + snippet
    cp = host.up(text, check=False)
    assert cp.returncode == 2, cp
    err = one_line_error(cp)
    assert ".yaml:6:" in err and "containers.solo.network_mode: " in err and problem in err, err
    assert_no_leftovers(host)


def test_modes_on_the_iptables_backend(host, echo_script):
    """The modes own no datapath object: the Docker-style backend serves them the same way."""
    cp = host.up(edit(modes_config(echo_script), "name: modes\n", "name: modes\nbackend: iptables\n"))
    assert host.inspect("db")["backend"] == "iptables"
    wait_for_echo(host.world_path, HOST_UPLINK_IP, HOST_PORT)
    db = host.inspect("db")["netns"]
    assert ns_inode(host.inspect("web")["netns"]) == ns_inode(db)
    wait_for_echo(db, "127.0.0.1", LOCAL_PORT)
    assert ping(host, "web", "10.91.1.20")
    assert [l["ifname"] for l in ip_json(host, "box", "link")] == ["lo"]
    assert not ping(host, "box", WORLD_UPLINK_IP, expect=False)
    host.down(cp.path)
    assert_no_leftovers(host)
