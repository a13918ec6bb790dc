"""The testbeds `fastnet bench` compares, each built in namespaces the bench creates.

    ebpf / iptables (one bench host namespace each, like the integration tests' harness):
      HOST fnb-<pid>-<v>  runs `fastnet up [--backend iptables]`; containers a, b on one network,
                          b publishes 8080:80; up0 198.51.100.1/24, default via WORLD; its own
                          processes serve the host_* metrics
      WORLD fnbw-<pid>-<v> up0 198.51.100.2/24: the outside (published-port clients, SNAT servers,
                          the host's clients)
    direct: two namespaces joined by one plain veth, 10.99.0.1 <-> 10.99.0.2; every metric
      (container to container, "published" port, "SNAT", the host's own) runs over that one veth.
    ebpf, iptables and direct each also have a cross-host pair of hosts (xhost.py) for xhost_*.

Every testbed exposes the same endpoints (Path, netns path, address, port) so that the
load generators in tools.py do not care which one they measure.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import procs
from ..backends.iptables import RESTORE_TIMES
from ...datapath.errors import FastnetError

FASTNET = str(Path(sys.executable).parent / "fastnet")
STATE_ROOT = Path(os.environ.get("FASTNET_STATE_DIR", "/run/fastnet"))
HOST_UPLINK_IP, WORLD_UPLINK_IP = "198.51.100.1", "198.51.100.2"
# Each tool listens on its own port (one tool's TIME_WAIT sockets must not stop the next from
# binding): container port -> published host port.
TOOL_PORTS = {"http": 80, "sockperf": 81, "iperf3": 82}
PUB_PORT, CONTAINER_PORT = 8080, 80  # the busy port of the scaling tests (http)
SUBNET = "10.77.{n}.0/24"



# ---- the testbed's upstream: set before the first `up` (the agent reads it when it starts) ----
def _etc_netns(host_netns: str) -> Path:
    return Path("/etc/netns") / host_netns


def point_host_at_world(host_netns: str) -> None:
    """HOST's resolv.conf (as `ip netns exec HOST` shows it) names the WORLD end of up0."""
    d = _etc_netns(host_netns)
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text(f"nameserver {WORLD_UPLINK_IP}\n")


def forget_host(host_netns: str) -> None:
    shutil.rmtree(_etc_netns(host_netns), ignore_errors=True)


class BenchError(FastnetError):
    """A one-line failure of the bench."""


def run(*cmd: str, check: bool = True, timeout: float = 300, input: str | None = None) -> subprocess.CompletedProcess:
    """A tool (or fastnet itself) in fastnet's environment, never the caller's (control/procs.py)."""
    env = procs.environment(FASTNET_STATE_DIR=str(STATE_ROOT))
    cp = procs.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input)
    if check and cp.returncode != 0:
        err = (cp.stderr or cp.stdout).strip().splitlines()
        raise BenchError(f"{' '.join(map(str, cmd[:6]))} exited {cp.returncode}: {err[-1] if err else ''}")
    return cp


def ns_path(name: str) -> str:
    return f"/run/netns/{name}"


def add_netns(name: str) -> str:
    run("ip", "netns", "add", name)
    run("ip", "-n", name, "link", "set", "lo", "up")
    return ns_path(name)


def kill_netns_processes(path: str) -> None:
    """SIGKILL every process whose network namespace is the one at path."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/net") == f"net:[{inode}]":
                os.kill(int(pid), 9)


def del_netns(name: str) -> None:
    if Path(ns_path(name)).exists():
        kill_netns_processes(ns_path(name))
        run("ip", "netns", "del", name, check=False)


@dataclass
class Endpoint:
    """Where a load generator runs (client netns) and what it connects to; the server runs
    in server_ns. pub_offset: connect to port + offset (a published port) instead of port."""

    client_ns: str
    server_ns: str
    ip: str
    pub_offset: int = 0

    def ports(self, tool: str) -> tuple[int, int]:
        """(port the client connects to, port the server listens on) for a tool."""
        listen = TOOL_PORTS[tool]
        return listen + self.pub_offset, listen


EXTRA_PORT = "19999:19999"  # the one more port of scale_add_port_ms


def project_yaml(name: str, net: int, containers: int = 2, ports: int = 1, extra: bool = False) -> str:
    """A project: containers a, b, ... on one network; b publishes `ports` host ports
    (8080:80 first, then single ports and ranges mixed) when ports > 0."""
    lines = [f"name: {name}", "networks:", "  net:", f"    subnet: {SUBNET.format(n=net)}", "containers:"]
    names = ["a", "b"] + [f"c{i}" for i in range(max(0, containers - 2))]
    for i, c in enumerate(names[:containers]):
        lines += [f"  {c}:", "    networks: [net]"]
        if c == "b" and ports > 0:
            entries = publish_entries(ports) + ([EXTRA_PORT] if extra else [])
            lines += ["    publish:"] + [f'      - "{m}"' for m in entries]
    return "\n".join(lines) + "\n"


def publish_entries(n: int) -> list[str]:
    """n published host ports to b: 8080:80, then alternately a single port and a 9-port range
    (ranges and single ports mixed), from host port 20000 up; plus 8081:81 and 8082:82 for
    sockperf and iperf3 (not counted in n)."""
    out = [f"{PUB_PORT + p - CONTAINER_PORT}:{p}" for p in TOOL_PORTS.values()]
    left, base = n - 1, 20000
    while left > 0:
        if left >= 10 and len(out) % 2 == 0:
            out.append(f"{base}-{base + 8}:{base}-{base + 8}")
            base, left = base + 9, left - 9
        else:
            out.append(f"{base}:{base}")
            base, left = base + 1, left - 1
    return out


class Testbed:
    name = "?"
    # the variant's cross-host testbed (xhost.py; None: the xhost_* metrics do not apply), set up
    # after this one and torn down before it by the runner
    pair = None

    def setup(self) -> None: ...

    def teardown(self) -> list[str]:
        return []

    c2c: Endpoint
    pub: Endpoint
    snat: Endpoint
    host_own: Endpoint  # the host's own traffic over its uplink: no container involved

    @property
    def xhost(self) -> Endpoint | None:
        """Container on one host to container on another (see xhost.py)."""
        return None if self.pair is None else self.pair.endpoint


@dataclass
class DirectBed(Testbed):
    """Two namespaces, one veth: the bound no datapath can beat."""

    tag: str
    name: str = "direct"
    made: list[str] = field(default_factory=list)

    def setup(self) -> None:
        a, b = f"fnbd-{self.tag}-a", f"fnbd-{self.tag}-b"
        for n in (a, b):
            add_netns(n)
            self.made.append(n)
        run("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
        for n, ip in ((a, "10.99.0.1"), (b, "10.99.0.2")):
            run("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", "eth0")
            run("ip", "-n", n, "link", "set", "eth0", "up")
        self.c2c = Endpoint(ns_path(a), ns_path(b), "10.99.0.2")
        self.pub = self.c2c
        self.snat = self.c2c
        self.host_own = self.c2c  # a plain veth: what the host's traffic costs with nothing loaded

    def teardown(self) -> list[str]:
        for n in self.made:
            del_netns(n)
        return []


@dataclass
class FastnetHost:
    """A namespace HOST fnb-<tag>-<name> running fastnet with one backend: its state dir (keyed
    by the namespace's inode), `fastnet` run inside it, and its teardown. The caller wires
    HOST's uplink between create_host() and the first up()."""

    tag: str
    backend: str
    workdir: Path
    name: str = ""
    project: str = ""  # the project inspect() looks containers up in
    made: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # project -> config file

    def __post_init__(self):
        self.name = self.name or self.backend
        self.project = self.project or f"bench{self.name[:3]}"
        self.host = f"fnb-{self.tag}-{self.name}"

    @property
    def host_path(self) -> str:
        return ns_path(self.host)

    def create_host(self) -> None:
        add_netns(self.host)
        self.made.append(self.host)
        self.state_dir = STATE_ROOT / "hosts" / f"net-{os.stat(self.host_path).st_ino}"
        if self.state_dir.exists():  # left by a namespace that reused the inode: not ours
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def fastnet(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ip", "netns", "exec", self.host, FASTNET, *args, check=check)

    def up(self, project: str, yaml_text: str) -> float:
        """`fastnet up` of the config (written to a file); returns the wall time in seconds."""
        path = self.workdir / f"{self.name}-{project}.yaml"
        path.write_text(yaml_text)
        self.files[project] = path
        t0 = time.perf_counter()
        self.fastnet("up", "-f", str(path), "--backend", self.backend)
        return time.perf_counter() - t0

    def down(self, project: str) -> str | None:
        cp = self.fastnet("down", "-p", project, check=False)
        self.files.pop(project, None)
        return None if cp.returncode == 0 else f"{self.name}: fastnet down -p {project}: {cp.stderr.strip()}"

    def inspect(self, container: str) -> dict:
        return json.loads(self.fastnet("inspect", f"{self.project}/{container}").stdout)

    def container_netns(self, container: str) -> str:
        return self.inspect(container)["netns"]

    def agent_pid(self) -> int | None:
        """The pid of the host's live agent (its resolver), from the record it keeps."""
        from ..host import read_process
        from ..keeper import AGENT_FILE

        agent = read_process(self.state_dir / AGENT_FILE)
        return agent.pid if agent is not None and agent.alive() else None

    def container_ip(self, container: str) -> str:
        nets = self.inspect(container)["networks"]
        return next(iter(nets.values()))["ipv4"]

    def teardown(self) -> list[str]:
        """`fastnet down` every project, note what it left in the state dir, then remove the
        state dir and the namespaces (even if down failed)."""
        problems = []
        try:
            for project in list(self.files):
                if (p := self.down(project)) is not None:
                    problems.append(p)
            problems += self.leftovers()
        finally:
            if getattr(self, "state_dir", None) is not None:
                shutil.rmtree(self.state_dir, ignore_errors=True)
            for n in self.made:
                del_netns(n)
        return problems

    def leftovers(self) -> list[str]:
        if getattr(self, "state_dir", None) is None or not self.state_dir.exists():
            return []
        left = [str(p.relative_to(self.state_dir)) for p in self.state_dir.rglob("*") if p.name != "lock"]
        return [f"{self.name}: fastnet down left {', '.join(sorted(left))} in {self.state_dir}"] if left else []


@dataclass
class FastnetBed(FastnetHost, Testbed):
    """A bench host namespace with its WORLD, running one fastnet project (ebpf or iptables)."""

    net: int = 0  # the project's subnet: SUBNET with n = net

    def __post_init__(self):
        super().__post_init__()
        self.world = f"fnbw-{self.tag}-{self.name}"

    @property
    def world_path(self) -> str:
        return ns_path(self.world)

    def setup(self) -> None:
        self.create_host()
        add_netns(self.world)
        self.made.append(self.world)
        run("ip", "-n", self.host, "link", "add", "up0", "type", "veth", "peer", "name", "up0", "netns", self.world)
        for n, ip in ((self.host, HOST_UPLINK_IP), (self.world, WORLD_UPLINK_IP)):
            run("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", "up0")
            run("ip", "-n", n, "link", "set", "up0", "up")
        run("ip", "-n", self.host, "route", "add", "default", "via", WORLD_UPLINK_IP)
        point_host_at_world(self.host)  # the resolver's upstream, read when the agent starts
        self.up(self.project, project_yaml(self.project, self.net))
        a, b = self.container_netns("a"), self.container_netns("b")
        self.c2c = Endpoint(a, b, self.container_ip("b"))
        self.pub = Endpoint(self.world_path, b, HOST_UPLINK_IP, PUB_PORT - CONTAINER_PORT)
        self.snat = Endpoint(a, self.world_path, WORLD_UPLINK_IP)
        # a client in WORLD, a host process as the server: its packets cross fn_from_uplink
        # (ebpf) or the host's netfilter hooks and conntrack (iptables)
        self.host_own = Endpoint(self.world_path, self.host_path, HOST_UPLINK_IP)

    def publish(self, n: int) -> None:
        """Have n host ports published to b (see publish_entries)."""
        self.up(self.project, project_yaml(self.project, self.net, ports=n))

    def up_timing_restores(self, project: str, yaml_text: str) -> float:
        """`fastnet up`; returns the total ms fastnet spent in iptables-restore, which the
        iptables backend times when the host directory holds its RESTORE_TIMES file."""
        times = self.state_dir / RESTORE_TIMES
        times.write_text("")
        try:
            self.up(project, yaml_text)
            return sum(int(x) for x in times.read_text().split()) / 1e6
        finally:
            times.unlink(missing_ok=True)

    def teardown(self) -> list[str]:
        try:
            return super().teardown()
        finally:
            forget_host(self.host)


NFT_RULESET = """table ip fnbench {{
  map pub {{
    type inet_service : ipv4_addr . inet_service
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat - 10; policy accept;
    ip daddr {host_ip} counter dnat ip to tcp dport map @pub
  }}
}}
"""


@dataclass
class NftBed(FastnetBed):
    """The iptables testbed (bridge, filter, masquerade by the iptables backend), but published
    ports DNATed by one nft verdict map (host port -> container address . port) in a nat chain
    that runs before iptables-nft's: the strongest non-eBPF baseline for port scaling. Ports
    beyond 8080-8082 (which the iptables project also publishes, for its FORWARD ACCEPTs) all
    go to b:80. Made as NftBed(tag, "iptables", workdir, name="nftables", net=3)."""

    def setup(self) -> None:
        super().setup()
        self.b_ip = self.container_ip("b")
        run("ip", "netns", "exec", self.host, "nft", "-f", "-", input=NFT_RULESET.format(host_ip=HOST_UPLINK_IP))
        self.publish(1)

    def _elements(self, n: int) -> list[str]:
        out = [f"{PUB_PORT + p - CONTAINER_PORT} : {self.b_ip} . {p}" for p in TOOL_PORTS.values()]
        return out + [f"{20000 + i} : {self.b_ip} . {CONTAINER_PORT}" for i in range(n - 1)]

    def publish(self, n: int) -> None:
        """Replace the map's content with n host ports (one `nft -f` transaction)."""
        elements = self._elements(n)
        batch = ["flush map ip fnbench pub"]
        for i in range(0, len(elements), 1000):
            batch.append(f"add element ip fnbench pub {{ {', '.join(elements[i:i + 1000])} }}")
        run("ip", "netns", "exec", self.host, "nft", "-f", "-", input="\n".join(batch) + "\n")

    def add_port_ms(self) -> float:
        """Wall time of `nft add element` of one more port (process start included), then removed."""
        element = f"{{ 19999 : {self.b_ip} . {CONTAINER_PORT} }}"
        t0 = time.perf_counter()
        run("ip", "netns", "exec", self.host, "nft", "add", "element", "ip", "fnbench", "pub", element)
        took = time.perf_counter() - t0
        run("ip", "netns", "exec", self.host, "nft", "delete", "element", "ip", "fnbench", "pub", "{ 19999 }")
        return took * 1000

    def teardown(self) -> list[str]:
        if Path(self.host_path).exists():
            run("ip", "netns", "exec", self.host, "nft", "delete", "table", "ip", "fnbench", check=False)
        return super().teardown()


def make_testbeds(names: list[str], workdir: Path) -> list[Testbed]:
    tag = str(os.getpid())
    beds = {
        "ebpf": lambda: FastnetBed(tag, "ebpf", workdir, net=1),
        "iptables": lambda: FastnetBed(tag, "iptables", workdir, net=2),
        "direct": lambda: DirectBed(tag),
        "nftables": lambda: NftBed(tag, "iptables", workdir, name="nftables", net=3),
    }
    unknown = [n for n in names if n not in beds]
    if unknown:
        raise BenchError(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(beds)}")
    from .xhost import make_pair  # xhost builds on this module

    made = [beds[n]() for n in names]
    for bed in made:
        bed.pair = make_pair(bed.name, tag, workdir)
    return made
