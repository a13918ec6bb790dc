"""Faults of the control plane: a planted module in the caller's directory, projects whose
names share a prefix, `up` killed or interrupted at any moment, the agent killed under traffic,
state files fastnet cannot read, and logs that would grow without bound.

   BASE (project demo, harness.TWO_NETWORKS_WITH_COMMAND)
   front 10.90.1.0/24: a .10 [sleep], b, c, e/eth0      back 10.90.2.0/24: d, e/eth1
   bridge 172.17.0.0/16: f

   HOST                                                 WORLD
     keeper (holds rt/: namespaces, bpffs)                 echo servers (TCP, UDP)
       agent (DNS, GC)  <- SIGKILLed by the tests
     up0 198.51.100.1/24 ===========veth============ up0 198.51.100.2/24

`up` is paused at a failpoint with FASTNET_FAILPOINT=<name> FASTNET_FAILPOINT_ACTION=stop
(the process SIGSTOPs itself right after that step), then sent a signal:
     attach_interface:<container>/<network>    start_command:<container>
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import dns.rcode
import pytest
from harness import (
    FASTNET,
    TWO_NETWORKS,
    TWO_NETWORKS_WITH_COMMAND,
    WORLD_UPLINK_IP,
    EchoServer,
    assert_no_leftovers,
    assert_project_works,
    cgroup_tree_ids,
    cmdline,
    conntrack,
    containers,
    environ,
    in_netns,
    netns,
    netns_references,
    ns_cookie,
    ns_inode,
    one_line_error,
    open_tcp,
    pid_alive,
    ping,
    sock_hook_ids,
    run,
    tcp_echo,
    udp_echo,
    udp_stream,
    wait_until,
)
from test_dns import ask

BASE = TWO_NETWORKS_WITH_COMMAND
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT, "HUP": signal.SIGHUP}


def fastnet_process(host, *args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    """fastnet started in HOST and left running: nsenter execs it, so the pid is fastnet's own."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FASTNET_FAILPOINT")}
    full_env.update(env or {})
    return subprocess.Popen(["nsenter", f"--net={host.netns_path}", str(FASTNET), *args], env=full_env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] == "T"


def agent_pid(host) -> int:
    return wait_until(lambda: (r := host.agent_record()) and pid_alive(r["pid"]) and r["pid"], what="a live agent")


def kill_agent(host) -> int:
    """SIGKILL the agent and wait until the keeper has started the next one; returns its pid."""
    old = agent_pid(host)
    os.kill(old, signal.SIGKILL)
    return wait_until(lambda: (r := host.agent_record()) and r["pid"] != old and pid_alive(r["pid"]) and r["pid"],
                      timeout=5, interval=0.005, what="the keeper to restart the agent")


# -- 1: nothing from the caller's directory or environment ------------------------------------
PLANTED = """\
import os, sys
with open({marker!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{os.geteuid()}} {{sys.orig_argv!r}}\\n")
"""
# ... and then, for asyncio, hand over to the real module, so that only the record tells
SHIM = """\
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules[__name__]
import asyncio as _real
sys.modules[__name__] = _real
"""


def test_processes_fastnet_starts_import_nothing_from_the_callers_directory_or_environment(host, tmp_path):
    """A directory another user could write to, holding asyncio.py and sitecustomize.py that
    record who imported them, is the working directory of `fastnet up`, `exec` and `down`, and
    on the caller's PYTHONPATH; PYTHONSTARTUP names a third. The keeper, the agent (also when
    restarted) and a container's Python command must import none of them, and run in `/` with
    none of the caller's variables. (The `fastnet` command itself is the caller's own Python
    process: a console script has its own directory, not the working directory, on sys.path,
    but honours a PYTHONPATH its caller sets, as every Python program does.)"""
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "imported-by"
    for module in ("asyncio", "sitecustomize", "startup"):
        (planted / f"{module}.py").write_text(PLANTED.format(marker=str(marker)) + (SHIM if module == "asyncio" else ""))
    config = host.write(BASE.replace("command: [sleep, infinity]",
                                     'command: [python3, -c, "import asyncio, time; time.sleep(600)"]'))

    # The working directory alone: not even the command line imports from it.
    cp = fastnet_process(host, "up", "-f", str(config), cwd=str(planted))
    assert cp.wait(120) == 0, cp.stderr.read()
    host.record_objects()
    assert not marker.exists(), marker.read_text()
    assert host.exec("b", "python3", "-c", "import asyncio").returncode == 0
    assert not marker.exists(), marker.read_text()

    # ... and the caller's environment: only the command line itself may take it.
    hostile = {"PYTHONPATH": str(planted), "PYTHONSTARTUP": str(planted / "startup.py"), "PYTHONINSPECT": ""}
    assert fastnet_process(host, "down", "-f", str(config), cwd=str(planted), env=hostile).wait(60) == 0
    cp = fastnet_process(host, "up", "-f", str(config), cwd=str(planted), env=hostile)
    assert cp.wait(120) == 0, cp.stderr.read()
    host.record_objects()
    kill_agent(host)  # the keeper's restart must not bring anything in either
    fastnet = [os.path.realpath(FASTNET), str(FASTNET)]
    for line in marker.read_text().splitlines() if marker.exists() else []:
        assert any(f in line for f in fastnet), f"a process fastnet started imported planted code: {line}"

    keeper, agent = host.keeper_record()["pid"], agent_pid(host)
    command = host.inspect("a")["command"]["pid"]
    for pid in (keeper, agent, command):
        env = environ(pid)
        assert not {k for k in env if k.startswith("PYTHON")}, (cmdline(pid), env)
        assert set(env) <= {"PATH", "LANG", "HOME", "FASTNET_CONTAINER", "FASTNET_STATE_DIR"}, (cmdline(pid), env)
        assert os.readlink(f"/proc/{pid}/cwd") == "/", cmdline(pid)
    for pid in (keeper, agent):
        assert " -I " in f" {cmdline(pid)} ", cmdline(pid)


# -- 2: projects whose names share a prefix ----------------------------------------------------
SHOP = """\
name: {name}
networks:
  front: {{subnet: {subnet}}}
containers:
  {container}:
    networks: [front]
    command: [sh, -c, "echo {name}/{container}; exec sleep 600"]
  peer:
    networks: [front]
"""


def test_a_project_is_found_by_exact_ownership_never_by_prefix(host):
    """Project `shop` with container `v2-web` and project `shop-v2` with container `web`
    (fastnet 0.1 bound both namespaces at `shop-v2-web`): each has its own namespace, log and
    DNS view, and `down -p shop` leaves every object of `shop-v2` alone."""
    shop = host.up(SHOP.format(name="shop", container="v2-web", subnet="10.90.1.0/24"))
    host.up(SHOP.format(name="shop-v2", container="web", subnet="10.90.2.0/24"))
    one, two = host.inspect("shop/v2-web"), host.inspect("shop-v2/web")
    assert one["netns"] != two["netns"] and ns_inode(one["netns"]) != ns_inode(two["netns"])
    assert one["netns"].endswith("/shop/v2-web") and two["netns"].endswith("/shop-v2/web")
    for project, container in (("shop", "v2-web"), ("shop-v2", "web")):
        log = host.dir / "logs" / project / f"{container}.log"
        wait_until(lambda: log.exists() and log.read_text() == f"{project}/{container}\n", what=f"{log}")
        peer = host.inspect(f"{project}/peer")
        assert ask(peer["netns"], container).answer, f"{project}/peer cannot resolve {container}"
    assert ask(host.inspect("shop/peer")["netns"], "web").rcode() == dns.rcode.NXDOMAIN
    assert ask(host.inspect("shop-v2/peer")["netns"], "v2-web").rcode() == dns.rcode.NXDOMAIN

    before = host.snapshot("shop-v2")
    host.down("shop")
    assert host.projects() == ["shop-v2"]
    assert host.snapshot("shop-v2") == before
    assert pid_alive(before["web"]["pid"])
    peer = containers(host, "shop-v2")["peer"]
    assert ping(host, "shop-v2/peer", containers(host, "shop-v2")["web"].ip("front"))
    assert ask(peer.netns, "web").answer
    assert (host.dir / "logs" / "shop-v2" / "web.log").exists() and not (host.dir / "logs" / "shop").exists()
    host.down(shop.path)


@pytest.mark.parametrize("bad", ["*", "shop*", "../x", "Shop", "x" * 13, ""])
def test_down_validates_the_project_name(host, bad):
    host.up(SHOP.format(name="shop", container="web", subnet="10.90.1.0/24"))
    cp = host.fastnet("down", "-p", bad, check=False)
    assert cp.returncode == 2, cp
    assert one_line_error(cp).startswith("fastnet: error: down: -p: ")
    assert host.projects() == ["shop"] and host.inspect("web")["running"]


# -- 3: `up` interrupted at any moment ----------------------------------------------------------
def expected_containers(text: str) -> set[str]:
    return set(re.findall(r"^  ([a-z0-9][a-z0-9_.-]*):", text.split("containers:", 1)[1], re.M))


def assert_converged(host, text: str, project: str = "demo") -> None:
    """The project is exactly what the file says, and nothing else of it exists: every
    container running (with its command), one host port per interface, one namespace each."""
    view = host.ps()["projects"][project]
    want = expected_containers(text)
    assert set(view["containers"]) == want
    ports = set()
    for c in view["containers"].values():
        assert c["running"], c
        if c["command"]:
            assert c["command"]["running"], c
        ports |= {n["host_ifname"] for n in c["networks"].values()}
    ours = {l["ifname"] for l in host.links() if l.get("ifalias", "").startswith(f"fastnet:{project}/")}
    assert ours == ports, f"links {sorted(ours - ports)} are not the project's ports"
    keeper = host.keeper_record()["pid"]
    netns_dir = Path(f"/proc/{keeper}/root{host.dir}/rt/netns/{project}")
    assert set(os.listdir(netns_dir)) == want
    tagged = {tag.rsplit("/", 1)[1] for _, tag in host.container_processes() if f"/{project}/" in tag}
    assert tagged == {n for n, c in view["containers"].items() if c["command"]}


def interrupt_up(host, config: Path, sig: signal.Signals, failpoint: str | None = None, delay: float = 0.0):
    """Start `up`, and signal it at the failpoint (paused there) or after `delay` seconds."""
    env = {"FASTNET_FAILPOINT": failpoint, "FASTNET_FAILPOINT_ACTION": "stop"} if failpoint else None
    proc = fastnet_process(host, "up", "-f", str(config), env=env)
    if failpoint:
        wait_until(lambda: stopped(proc.pid) or proc.poll() is not None, timeout=60, what=f"up to reach {failpoint}")
        assert proc.poll() is None, proc.stderr.read()
    else:
        time.sleep(delay)
    proc.send_signal(sig)
    if sig != signal.SIGKILL:
        proc.send_signal(signal.SIGCONT)
    proc.wait(60)
    return proc


@pytest.mark.parametrize("sig", list(SIGNALS))
@pytest.mark.parametrize("failpoint", ["attach_interface:b/front", "attach_interface:e/back", "start_command:a"])
def test_up_interrupted_at_a_failpoint(host, failpoint, sig):
    """SIGTERM, SIGINT and SIGHUP roll back before `up` exits (128 + the signal), leaving
    nothing; after SIGKILL, which nothing can catch, the next `up` converges from what the
    killed run left (on main it failed: "network namespace .../demo-a already exists")."""
    config = host.write(BASE)
    proc = interrupt_up(host, config, SIGNALS[sig], failpoint)
    if sig == "KILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        err = proc.stderr.read().strip()
        assert proc.returncode == 128 + SIGNALS[sig], err
        assert err.startswith("fastnet: error: up demo: ") and f"interrupted by SIG{sig}" in err and "rolled back" in err, err
        assert "\n" not in err
        assert_no_leftovers(host)
    host.up(config)
    host.record_objects()
    assert_converged(host, BASE)
    assert_project_works(host)
    host.down(config)
    assert_no_leftovers(host)


# Twelve containers, four of them with commands, two networks: long enough an `up` (about a
# second) for a signal to land anywhere in it.
MANY = "name: demo\nnetworks:\n  front: {subnet: 10.90.1.0/24}\n  back: {subnet: 10.90.2.0/24}\ncontainers:\n" + "".join(
    f"  c{i}:\n    networks: [{'front, back' if i % 3 == 0 else 'front'}]\n"
    + ("    command: [sleep, infinity]\n" if i % 3 == 1 else "")
    for i in range(12)
)


def test_up_interrupted_at_random_moments(host):
    """30 rounds: `up` gets a random one of SIGKILL/SIGTERM/SIGINT/SIGHUP at a random moment,
    then `up` must succeed and converge to the file, and `down` must leave nothing."""
    seed = int(os.environ.get("FASTNET_TEST_SEED", time.time()))
    rng = random.Random(seed)
    config = host.write(MANY)
    started = time.monotonic()
    host.up(config)
    full = time.monotonic() - started
    host.down(config)
    outcomes = {}
    for round_ in range(30):
        sig = rng.choice(list(SIGNALS))
        delay = rng.uniform(0, full)
        proc = interrupt_up(host, config, SIGNALS[sig], delay=delay)
        outcomes[f"{round_}:{sig}@{delay:.2f}s"] = proc.returncode
        where = f"seed {seed}, round {round_}: SIG{sig} after {delay:.2f} s (up exited {proc.returncode})"
        cp = host.up(config, check=False)
        assert cp.returncode == 0, f"{where}: {cp.stderr}"
        host.record_objects()
        try:
            assert_converged(host, MANY)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
        host.down(config)
        assert_no_leftovers(host)
    # the moments were spread over the run: some before the first change, some after the last
    print(f"seed {seed}: {outcomes}")
    assert len(set(outcomes.values())) > 1, outcomes


# -- 4: the agent is not a single point of failure ----------------------------------------------
TRAFFIC = """\
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
conntrack:
  timeouts: {udp: 2}
containers:
  streamer:
    networks: [front]
  asker:
    networks: [front]
  named:
    networks: [front]
"""


def test_the_agent_killed_twenty_times_under_traffic(host):
    """A TCP stream and a UDP flow through SNAT and a DNS query loop run while the agent is
    SIGKILLed 20 times in a row: the stream loses no byte and is never reset, every datagram
    comes back through one mapping, and DNS answers again within 1 s of each kill."""
    host.up(TRAFFIC)
    host.record_objects()
    c = containers(host, "demo")
    named_ip = c["named"].ip("front")
    stop = threading.Event()
    problems: list[str] = []
    streamed = [0]
    answers: list[tuple[float, bool]] = []

    with EchoServer(host.world_path, "tcp", WORLD_UPLINK_IP) as tcp_srv, \
         EchoServer(host.world_path, "udp", WORLD_UPLINK_IP) as udp_srv:
        stream = open_tcp(c["streamer"].netns, WORLD_UPLINK_IP, tcp_srv.port)
        with netns(c["streamer"].netns):
            flow = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def tcp_loop():
            stream.settimeout(5)
            while not stop.is_set():
                payload = os.urandom(32 * 1024)
                try:
                    stream.sendall(payload)
                    got = bytearray()
                    while len(got) < len(payload):
                        chunk = stream.recv(65536)
                        if not chunk:
                            problems.append(f"TCP stream closed after {streamed[0]} bytes")
                            return
                        got += chunk
                except OSError as exc:
                    problems.append(f"TCP stream: {exc} after {streamed[0]} bytes")
                    return
                if bytes(got) != payload:
                    problems.append(f"TCP stream: mismatch after {streamed[0]} bytes")
                    return
                streamed[0] += len(payload)
                time.sleep(0.002)  # a steady stream, not one that starves the agent's restart of CPU

        def udp_loop():
            while not stop.is_set():
                result = udp_stream("", WORLD_UPLINK_IP, udp_srv.port, count=20, size=512, sock=flow)
                if result != "ok":
                    problems.append(f"UDP flow: {result}")
                    return
                time.sleep(0.01)

        def dns_loop():
            while not stop.is_set():
                try:
                    ok = [str(r[0]) for r in ask(c["asker"].netns, "named", timeout=0.2).answer] == [named_ip]
                except Exception:
                    ok = False
                answers.append((time.monotonic(), ok))
                time.sleep(0.01)

        threads = [threading.Thread(target=f, daemon=True) for f in (tcp_loop, udp_loop, dns_loop)]
        for t in threads:
            t.start()
        kills = []
        for _ in range(20):
            time.sleep(0.3)
            kills.append(time.monotonic())
            kill_agent(host)
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(10)
        stream.close()
        flow.close()
        udp_peers = {p for p in udp_srv.peers}

    assert not problems, problems
    assert streamed[0] > 0
    assert len(udp_peers) == 1, f"the UDP flow was mapped to several ports: {udp_peers}"
    gaps = []
    for killed in kills:
        before = [t for t, ok in answers if ok and t < killed]
        after = [t for t, ok in answers if ok and t > killed]
        assert after, f"DNS never answered again after the kill at {killed}"
        gaps.append(after[0] - (before[-1] if before else killed))
    print(f"DNS gaps after 20 agent kills (s): max {max(gaps):.3f}, median {sorted(gaps)[10]:.3f}; "
          f"TCP bytes streamed {streamed[0]}")
    assert max(gaps) < 1.0, gaps

    # Garbage collection resumed: the UDP flows expire (2 s) and the new agent deletes them.
    wait_until(lambda: not [f for f in conntrack(host) if f["proto"] == "udp"], timeout=15,
               what="the restarted agent to collect the expired UDP flows")


def test_a_crash_looping_agent_waits_and_a_command_starts_it_at_once(host):
    """An agent that fails on its own (here SIGSEGV) right after its start is restarted after a
    doubling delay; a fastnet command that finds none asks the keeper to start it now."""
    host.up(TWO_NETWORKS)
    for _ in range(5):  # 0.25, 0.5, 1, 2, 4 s
        pid = agent_pid(host)
        os.kill(pid, signal.SIGSEGV)
        wait_until(lambda: not pid_alive(pid))
    log = (host.dir / "logs" / "agent.log").read_text()
    assert "restarting it in 4.00 s" in log, log
    asked = time.monotonic()
    host.ps()
    agent_pid(host)
    assert time.monotonic() - asked < 2.0


def test_containers_hold_nothing_of_the_keeper(host):
    """A command's private mount namespace lets go of the keeper's tmpfs: once the keeper is
    gone, the other containers' namespaces, the pins and the socket hooks go too, although a
    command still runs (on main they stayed, the hooks sending 127.0.0.11:53 to a dead port)."""
    host.up(BASE)
    host.record_objects()
    hooks = set(sock_hook_ids(host))
    assert hooks
    view = host.ps()["projects"]["demo"]["containers"]
    idle = {ns_inode(c["netns"]): ns_cookie(c["netns"]) for n, c in view.items() if n != "a"}
    os.kill(host.keeper_record()["pid"], signal.SIGKILL)
    wait_until(lambda: not netns_references(idle), what=f"the namespaces to go: {netns_references(idle)}")
    wait_until(lambda: not hooks & cgroup_tree_ids(), what="the socket hooks to go")
    assert pid_alive(view["a"]["command"]["pid"])  # it keeps its own namespace, and only that
    host.down("demo")
    assert_no_leftovers(host)


def test_a_keeper_run_by_a_service_manager(host):
    """`fastnet keeper` runs in the foreground (as a systemd unit would run it): commands use it,
    it restarts the agent, a second one is refused, and `down` of the last project stops it."""
    supervised = fastnet_process(host, "keeper")
    wait_until(lambda: (r := host.keeper_record()) and r["pid"] == supervised.pid, what="the keeper's record")
    config = host.up(TWO_NETWORKS).path
    host.record_objects()
    assert host.keeper_record()["pid"] == supervised.pid
    kill_agent(host)
    assert_project_works(host)
    second = host.fastnet("keeper", check=False)
    assert second.returncode == 1 and f"a keeper already runs for this host (pid {supervised.pid})" in second.stderr
    host.down(config)
    assert supervised.wait(10) == 0
    assert_no_leftovers(host)


# -- 5: state files fastnet cannot read ----------------------------------------------------------
OTHER = """\
name: other
networks:
  side: {subnet: 10.91.1.0/24}
containers:
  x:
    networks: [side]
    publish: ["8080:80"]
  y:
    networks: [side]
"""


def newer_format(path: Path) -> None:
    data = json.loads(path.read_text())
    data["format"] += 1
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("damage", ["corrupt", "newer"])
def test_an_unreadable_state_file_is_never_acted_on(host, damage):
    """With `other`'s state file damaged or from a newer fastnet, `up` of another project is
    refused naming the file, and `down` of it removes its own objects but leaves the shared
    tables as they are: `other`'s containers keep their ports, names and published port."""
    demo = host.up(TWO_NETWORKS)
    host.up(OTHER)
    y, x = containers(host, "other")["y"], containers(host, "other")["x"]
    x_ip = x.ip("side")
    state = host.dir / "projects" / "other.json"
    if damage == "corrupt":
        state.write_text(state.read_text()[:100])
    else:
        newer_format(state)
    with EchoServer(x.netns, "tcp", port=80):
        def other_works():
            assert in_netns(y.netns, "ping", "-n", "-c1", "-W1", x_ip, check=False).returncode == 0
            assert ask(y.netns, "x").answer
            open_tcp(host.world_path, "198.51.100.1", 8080).close()

        other_works()
        cp = host.up(TWO_NETWORKS + "  g:\n    networks: [front]\n", check=False)
        assert cp.returncode == 1
        err = one_line_error(cp)
        assert str(state) in err and ("newer fastnet" in err if damage == "newer" else "unreadable" in err), err
        assert "g" not in host.ps()["projects"]["demo"]["containers"]
        kill_agent(host)  # a restarted agent serves what the file said when it was last readable
        cp = host.down(demo.path, check=False)
        assert cp.returncode == 1 and "left as they are" in cp.stderr and str(state) in cp.stderr, cp.stderr
        other_works()
    assert host.projects() == ["other"]
    host.down("other")
    assert_no_leftovers(host)


def test_a_newer_datapath_is_refused(host):
    """Pins of a newer ABI version: this fastnet refuses to act on them and says which."""
    from fastnet.datapath import abi

    config = host.up(TWO_NETWORKS).path
    pins = Path(f"/proc/{host.keeper_record()['pid']}/root{host.dir}/rt/bpf")
    newer = pins / f"v{abi.ABI_VERSION + 1}_000000000000"
    newer.mkdir()
    cp = host.up(TWO_NETWORKS + "  g:\n    networks: [front]\n", check=False)
    assert cp.returncode == 1
    err = one_line_error(cp)
    assert f"built by a newer fastnet (ABI {abi.ABI_VERSION + 1}" in err, err
    assert newer.exists() and "g" not in host.ps()["projects"]["demo"]["containers"]
    newer.rmdir()
    assert_project_works(host)
    host.down(config)


# -- 7: the uplink's addresses and link state are followed ---------------------------------------
FOLLOW = """\
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
containers:
  a:
    networks: [front]
  web:
    networks: [front]
    publish: ["8080:80"]
"""


def source_seen(host, client_ns: str, srv: EchoServer) -> str | None:
    """The source address the WORLD server sees for one datagram from the container."""
    before = len(srv.peers)
    if udp_echo(client_ns, WORLD_UPLINK_IP, srv.port, tries=1, timeout=0.2) != "ok":
        return None
    return srv.peers[before][0]


def test_snat_and_published_ports_follow_the_uplinks_addresses(host):
    """An address change on the uplink (a DHCP renewal: the new address added, the old one
    removed) reaches SNAT within 1 s, a new host address answers published ports, a restarted
    agent catches up with a change made while none ran, and `ps` says when the uplink is down
    or has no address."""
    host.up(FOLLOW)
    host.record_objects()
    a = containers(host, "demo")["a"]
    host.sh("sysctl", "-qw", "net.ipv4.conf.up0.promote_secondaries=1")
    with EchoServer(host.world_path, "udp", WORLD_UPLINK_IP) as srv, \
         EchoServer(host.inspect("web")["netns"], "tcp", port=80):
        assert source_seen(host, a.netns, srv) == "198.51.100.1"
        host.sh("ip", "addr", "add", "198.51.100.7/24", "dev", "up0")
        host.sh("ip", "addr", "del", "198.51.100.1/24", "dev", "up0")
        wait_until(lambda: source_seen(host, a.netns, srv) == "198.51.100.7", timeout=1.0,
                   what="SNAT to take the uplink's new address")
        wait_until(lambda: tcp_echo(host.world_path, "198.51.100.7", 8080, timeout=0.3) == "ok", timeout=1.0,
                   what="the published port to answer on the new address")
        assert host.ps()["uplinks"] == {"up0": {"state": "up", "ipv4": ["198.51.100.7"]}}

        # while no agent runs: the keeper stopped, the agent killed
        keeper = host.keeper_record()["pid"]
        os.kill(keeper, signal.SIGSTOP)
        try:
            agent = agent_pid(host)
            os.kill(agent, signal.SIGKILL)
            wait_until(lambda: not pid_alive(agent))
            host.sh("ip", "addr", "add", "198.51.100.1/24", "dev", "up0")
            host.sh("ip", "addr", "del", "198.51.100.7/24", "dev", "up0")
        finally:
            os.kill(keeper, signal.SIGCONT)
        agent_pid(host)
        wait_until(lambda: source_seen(host, a.netns, srv) == "198.51.100.1", timeout=2.0,
                   what="the restarted agent to catch up with the address")

    host.sh("ip", "link", "set", "up0", "down")
    ps = host.fastnet("ps").stdout
    assert "uplink up0: down" in ps, ps
    assert host.ps()["uplinks"]["up0"]["state"] == "down"
    host.sh("ip", "link", "set", "up0", "up")
    host.sh("ip", "addr", "del", "198.51.100.1/24", "dev", "up0")
    assert "uplink up0: no IPv4 address" in host.fastnet("ps").stdout
    host.sh("ip", "addr", "add", "198.51.100.1/24", "dev", "up0")
    host.sh("ip", "route", "replace", "default", "via", WORLD_UPLINK_IP)
    assert "uplink up0" not in host.fastnet("ps").stdout


# -- 8: limits are found before anything is made ----------------------------------------------------
def many_containers(networks: int, per_network: int) -> str:
    lines = ["name: big", "networks:"]
    lines += [f"  n{i}: {{subnet: 10.{80 + i}.0.0/22}}" for i in range(networks)]
    lines.append("containers:")
    lines += [f"  c{i}-{j}: {{networks: [n{i}]}}" for i in range(networks) for j in range(per_network)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("shape, expected", [
    ((1, 300), "networks.n0: 300 container interfaces, above the datapath's 256 per network (FN_MAX_FLOOD_PORTS"),
    ((40, 250), "10000 container interfaces on bridge networks on this host, above the datapath's 4096 (FN_MAX_ENDPOINTS"),
])
def test_datapath_tables_too_small_are_refused_before_anything_is_made(host, shape, expected):
    cp = host.up(many_containers(*shape), check=False)
    assert cp.returncode == 1
    assert expected in one_line_error(cp)
    assert_no_leftovers(host)


def test_a_full_runtime_tmpfs_is_refused_before_anything_is_made(host):
    """The keeper's tmpfs holds a resolv.conf per container: filled up (here by a test file),
    `up` of more containers says so instead of failing half-way."""
    first = host.up(TWO_NETWORKS)
    runtime = Path(f"/proc/{host.keeper_record()['pid']}/root{host.dir}/rt")
    filler = runtime / "filler"
    free = os.statvfs(runtime).f_bavail * os.statvfs(runtime).f_frsize
    with open(filler, "wb") as f:
        f.truncate(0)
        f.write(b"\0" * (free - 4096 * 4))
    try:
        cp = host.up(TWO_NETWORKS + "".join(f"  g{i}:\n    networks: [front]\n" for i in range(8)), check=False)
        assert cp.returncode == 1
        err = one_line_error(cp)
        assert "containers: 8 more containers need 32 KiB in fastnet's runtime tmpfs" in err, err
        assert set(host.ps()["projects"]["demo"]["containers"]) == set("abcdef")
    finally:
        filler.unlink()
    assert_project_works(host)
    host.down(first.path)


def test_too_few_file_descriptors_for_the_agent_are_refused(host):
    """The agent keeps two sockets per container: a keeper started with RLIMIT_NOFILE 300 can
    serve about 20 containers, and `up` of 40 says so before making any."""
    text = "name: fds\nnetworks:\n  n: {subnet: 10.90.0.0/24}\ncontainers:\n" + "".join(
        f"  c{i}: {{networks: [n]}}\n" for i in range(40))
    path = host.write(text)
    cp = run("nsenter", f"--net={host.netns_path}", "prlimit", "--nofile=300:300", str(FASTNET), "up", "-f", str(path),
             check=False)
    assert cp.returncode == 1, cp.stdout
    err = one_line_error(cp)
    assert "40 containers on this host need about 336 open files in fastnet's agent" in err and "limit of 300" in err, err
    assert_no_leftovers(host)


# -- 9: logs --------------------------------------------------------------------------------------
def test_logs_are_root_only_and_bounded(host):
    """Command and agent logs are 0600 in 0700 directories, and a command writing far more than
    the cap (4 MiB) keeps at most the cap in `<name>.log.1` plus what it wrote since."""
    from fastnet.control.logs import LIMIT

    text = BASE.replace("command: [sleep, infinity]",
                        'command: [sh, -c, "yes xxxxxxxxxxxxxxx | head -c 12000000; exec sleep 600"]')
    host.up(text)
    logs = host.dir / "logs"
    command_log = logs / "demo" / "a.log"
    for path in (host.dir, logs, logs / "demo"):
        assert path.stat().st_mode & 0o777 == 0o700, path
    for path in (logs / "agent.log", command_log):
        assert path.stat().st_mode & 0o777 == 0o600, path
    rotated = command_log.with_name("a.log.1")
    wait_until(lambda: rotated.exists() and command_log.stat().st_size < LIMIT, timeout=15,
               what="the agent to cap the command's log")
    assert rotated.stat().st_size == LIMIT and rotated.stat().st_mode & 0o777 == 0o600
    assert set(rotated.read_bytes()[-64:]) == set(b"x\n")


# -- 10: concurrent invocations ---------------------------------------------------------------------
PARALLEL = 20
ROUNDS = 50


def small_project(i: int) -> str:
    return (f"name: par{i}\nnetworks:\n  n: {{subnet: 10.{100 + i}.0.0/24}}\n"
            f"containers:\n  c:\n    networks: [n]\n    publish: [\"{9000 + i}:80\"]\n")


def host_view(host) -> dict:
    """What the host holds, without the kernel's identities (ifindexes, namespace inodes and
    the network ids, which depend on the order projects came up): projects, containers,
    addresses and commands from `ps`, and the datapath's endpoints as (MAC, address)."""
    from fastnet.datapath import loader
    from fastnet.datapath.maps import Maps

    view = {
        name: {c["name"]: ({n: (v["ifname"], v["ipv4"], v["mac"]) for n, v in c["networks"].items()}, c["publish"])
               for c in project["containers"].values()}
        for name, project in host.ps()["projects"].items()
    }
    keeper = host.keeper_record()
    dp = loader.open_pinned(Path(f"/proc/{keeper['pid']}/root{host.dir}/rt/bpf")) if keeper else None
    endpoints = sorted((mac, str(ip)) for mac, ip, _ in Maps(dp).endpoints().values()) if dp else []
    if dp is not None:
        dp.close()
    return {"projects": view, "endpoints": endpoints}


def test_parallel_projects_end_as_a_serial_run(host):
    """20 projects brought up in parallel, checked, and brought down in parallel, 50 times:
    every round ends exactly as the serial run (the first) did, and nothing is left."""
    from concurrent.futures import ThreadPoolExecutor

    configs = [host.write(small_project(i)) for i in range(PARALLEL)]
    for path in configs:
        host.up(path)
    serial = host_view(host)
    host.record_objects()
    assert len(serial["projects"]) == PARALLEL and len(serial["endpoints"]) == PARALLEL
    for path in configs:
        host.down(path)
    assert_no_leftovers(host)

    def each(verb: str) -> list[str]:
        with ThreadPoolExecutor(PARALLEL) as pool:
            done = list(pool.map(lambda p: host.fastnet(verb, "-f", str(p), check=False), configs))
        return [f"{verb} {p.name}: {cp.returncode} {cp.stderr.strip()}" for p, cp in zip(configs, done) if cp.returncode]

    for round_ in range(ROUNDS):
        failed = each("up")
        assert not failed, f"round {round_}: {failed}"
        assert host_view(host) == serial, f"round {round_}"
        failed = each("down")
        assert not failed, f"round {round_}: {failed}"
        assert not host.projects() and not host.agent_processes(), f"round {round_}"
    assert_no_leftovers(host)
