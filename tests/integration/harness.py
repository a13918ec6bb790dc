"""Test hosts, namespaces and traffic for fastnet's integration tests.

A *test host* is a pair of network namespaces made for one test (or one module):

    +------------- HOST fnh-<pid>-<n> -------------+          +--- WORLD fnw-<pid>-<n> ---+
    |  fastnet runs here, via `ip netns exec HOST` |          |                           |
    |  or `nsenter --net=/run/netns/HOST`          |          |                           |
    |  lo                                          |   veth   |  lo                       |
    |  up0 198.51.100.1/24 ========================|==========|= up0 198.51.100.2/24      |
    |  default via 198.51.100.2                    |          |                           |
    +----------------------------------------------+          +---------------------------+

Everything fastnet makes for that host (containers, host ends of their veths, routes, BPF
programs, the agent, the state directory) must be gone after `fastnet down`; `leftovers()`
lists what is not. Traffic only ever goes to addresses inside namespaces the tests create.

Made to be reused by later suites (e.g. NAT through up0 to WORLD):
    Host.fastnet/.up/.down/.inspect/.ps/.exec/.counters/.snapshot   the CLI, run in HOST
    netns(path)                                     put this thread in a netns (sockets stay there)
    EchoServer, tcp_echo, udp_echo, ping            traffic, payloads compared byte for byte
    l2socket, Capture, marker                       scapy frames in and sniffing on containers
    leftovers, assert_no_leftovers                  what fastnet left behind
    TWO_NETWORKS, containers, assert_project_works  the common topology and a quick health check
NAT (test_nat*.py, test_publish.py):
    EchoServer.peers, tcp_echo/udp_echo(bind=PORT)   who the server saw; a fixed source port
    open_tcp, roundtrip, udp_stream                 long-lived flows; many datagrams, reply source checked
    conntrack, flows, moved                         `fastnet conntrack --json`, counter deltas
    nstat, tx_checksum_off                          checksum error counters; TX offload off on veths
    far_network, sysctl, queue_icmp_errors, wait_for_icmp_error, icmp_echo_socket
                                                    a lower-MTU hop behind WORLD; ICMP errors on sockets
    uplink_program, sock_hook_ids, cgroup_tree_ids, prog_map_ids, iptables_rules
                                                    what fastnet attached, and that nothing else is there
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

FASTNET = Path(sys.executable).parent / "fastnet"
STATE_ROOT = Path(os.environ.get("FASTNET_STATE_DIR", "/run/fastnet"))
RTPROT_FASTNET = 250
UPLINK = "up0"
HOST_UPLINK_IP, WORLD_UPLINK_IP = "198.51.100.1", "198.51.100.2"
HOST_PORT_RE = re.compile(r"^[a-z0-9_.-]{1,7}-[0-9a-f]{7}$")
CMD_TIMEOUT = 120

# ----------------------------------------------------------------------------------------
# namespaces
# ----------------------------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def netns(path: str | os.PathLike):
    """Run the body with this *thread* in the network namespace at path, then go back.
    Sockets created inside stay bound to that namespace after the block."""
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(saved, CLONE_NEWNET)
    finally:
        os.close(saved)


def ns_inode(path: str | os.PathLike) -> int:
    return os.stat(path).st_ino


SO_NETNS_COOKIE = 71


def ns_cookie(path: str | os.PathLike) -> int | None:
    """The network namespace's cookie: unlike its inode, never reused (within a boot)."""
    try:
        with netns(path), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return None


def run(*cmd: str, check: bool = True, env: dict | None = None, timeout: float = CMD_TIMEOUT, input: str | None = None):
    cp = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise CommandFailed(cp)
    return cp


class CommandFailed(AssertionError):
    def __init__(self, cp: subprocess.CompletedProcess):
        self.cp = cp
        super().__init__(
            f"{' '.join(map(str, cp.args))} exited {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"
        )


def processes() -> Iterable[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def environ(pid: int) -> dict[str, str]:
    out = {}
    for item in _read(f"/proc/{pid}/environ").split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def netns_of(pid: int) -> int | None:
    try:
        return int(os.readlink(f"/proc/{pid}/ns/net")[5:-1])
    except (OSError, ValueError):
        return None


def pids_in_netns(inode: int, cookie: int | None = None) -> list[int]:
    """Processes in the namespace with this inode; with a cookie, only in that very namespace
    (an inode is reused once its namespace is gone, e.g. by another test run's new host)."""
    return [pid for pid in processes() if pid != os.getpid() and netns_of(pid) == inode
            and (cookie is None or ns_cookie(f"/proc/{pid}/ns/net") in (cookie, None))]


def pid_alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat[stat.rindex(b")") + 2 :][:1] != b"Z"


def kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.05, what: str = "condition"):
    """Poll predicate until it returns something truthy; returns it, or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def netns_references(cookies: dict[int, int | None]) -> list[str]:
    """Who still holds one of these network namespaces (inode -> cookie): a process in it, or
    an nsfs bind mount of it in any mount namespace (scanned once per mount namespace). A
    namespace with a recorded inode but another cookie is a newer one that reused the inode."""
    found = []
    seen_mnt = set()
    inodes = set(cookies)
    targets = {f"net:[{i}]": i for i in inodes}
    for pid in processes():
        if pid == os.getpid():
            continue
        ino = netns_of(pid)
        if ino in inodes and ns_cookie(f"/proc/{pid}/ns/net") in (cookies[ino], None):
            found.append(f"netns net:[{ino}] has process {pid} ({cmdline(pid)[:80]})")
        try:
            mnt = os.readlink(f"/proc/{pid}/ns/mnt")
        except OSError:
            continue
        if mnt in seen_mnt:
            continue
        seen_mnt.add(mnt)
        for line in _read(f"/proc/{pid}/mountinfo").decode(errors="replace").splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[3] in targets:
                ino = targets[fields[3]]
                if ns_cookie(f"/proc/{pid}/root{fields[4]}") not in (cookies[ino], None):
                    continue  # a newer namespace that reused the inode
                found.append(f"netns {fields[3]} is still mounted at {fields[4]} (mount ns of pid {pid})")
    return sorted(set(found))


# ----------------------------------------------------------------------------------------
# the test host
# ----------------------------------------------------------------------------------------
_seq = itertools.count()


def _project_name(yaml_text: str) -> str:
    m = re.search(r"^name:\s*['\"]?([^\s'\"#]+)", yaml_text, re.M)
    return m.group(1) if m else "fastnet"


@dataclass
class Host:
    """One HOST/WORLD namespace pair and the fastnet state of HOST."""

    name: str
    world: str
    workdir: Path
    files: list[Path] = field(default_factory=list)
    prog_ids: set[int] = field(default_factory=set)  # BPF programs fastnet attached here
    map_ids: set[int] = field(default_factory=set)
    container_netns: dict[int, int | None] = field(default_factory=dict)  # inode -> cookie of container netns seen
    inode: int = 0  # of HOST's netns, fixed at creation (the key of fastnet's state dir)

    # -- creation / destruction ----------------------------------------------------------
    @classmethod
    def create(cls, workdir: Path) -> "Host":
        n = next(_seq)
        h = cls(f"fnh-{os.getpid()}-{n}", f"fnw-{os.getpid()}-{n}", Path(workdir))
        h.workdir.mkdir(parents=True, exist_ok=True)
        try:
            run("ip", "netns", "add", h.name)
            run("ip", "netns", "add", h.world)
            for ns in (h.name, h.world):
                run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", h.name, "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK, "netns", h.world)
            run("ip", "-n", h.name, "addr", "add", f"{HOST_UPLINK_IP}/24", "dev", UPLINK)
            run("ip", "-n", h.world, "addr", "add", f"{WORLD_UPLINK_IP}/24", "dev", UPLINK)
            run("ip", "-n", h.name, "link", "set", UPLINK, "up")
            run("ip", "-n", h.world, "link", "set", UPLINK, "up")
            run("ip", "-n", h.name, "route", "add", "default", "via", WORLD_UPLINK_IP)
            h.inode = ns_inode(h.netns_path)
        except BaseException:
            h.destroy_namespaces()
            raise
        # The state dir is keyed by netns inode, and inodes are reused: a directory already
        # there belongs to a namespace that no longer exists (a crashed run), not to us.
        if h.dir.exists():
            shutil.rmtree(h.dir, ignore_errors=True)
        return h

    def teardown(self) -> list[str]:
        """`fastnet down` every project, then report what is left; always cleans up."""
        problems = []
        try:
            # -f first: a file names the networks even when a test deleted the state file.
            # Files that are not valid configs (exit 2) belong to tests of bad input.
            for path in reversed(self.files):
                cp = self.fastnet("down", "-f", str(path), check=False)
                if cp.returncode not in (0, 2):
                    problems.append(f"fastnet down -f {path.name} exited {cp.returncode}: {cp.stderr.strip()}")
            for project in self.projects():
                cp = self.fastnet("down", "-p", project, check=False)
                if cp.returncode != 0:
                    problems.append(f"fastnet down -p {project} exited {cp.returncode}: {cp.stderr.strip()}")
            left = poll_leftovers(self)
            problems += [f"left behind: {item}" for item in left]
        finally:
            self.force_cleanup()
        return problems

    def force_cleanup(self) -> None:
        """Kill whatever fastnet left for this host and delete the namespaces and state."""
        kill(p for p, _ in self.agent_processes())
        kill(p for p, _ in self.container_processes())
        for ino, cookie in self.container_netns.items():
            kill(pids_in_netns(ino, cookie))
        # While HOST still exists: once it is gone its inode (the dir's name) may be reused by
        # someone else's namespace, whose state dir this would then be.
        shutil.rmtree(self.dir, ignore_errors=True)
        self.destroy_namespaces()

    def destroy_namespaces(self) -> None:
        for ns in (self.name, self.world):
            path = Path("/run/netns") / ns
            if path.exists():
                with contextlib.suppress(OSError):
                    kill(pids_in_netns(ns_inode(path)))
                run("ip", "netns", "del", ns, check=False)

    # -- facts ---------------------------------------------------------------------------
    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def world_path(self) -> str:
        return f"/run/netns/{self.world}"

    @property
    def key(self) -> str:
        return f"net-{self.inode}"

    @property
    def dir(self) -> Path:
        return STATE_ROOT / "hosts" / self.key

    def projects(self) -> list[str]:
        return sorted(p.stem for p in (self.dir / "projects").glob("*.json"))

    def agent_record(self) -> dict | None:
        try:
            return json.loads((self.dir / "agent.json").read_text())
        except (OSError, ValueError):
            return None

    def keeper_record(self) -> dict | None:
        try:
            return json.loads((self.dir / "keeper.json").read_text())
        except (OSError, ValueError):
            return None

    def agent_processes(self) -> list[tuple[int, str]]:
        """Live keeper and agent processes of this host (by their command line, not only by
        their record files)."""
        want = str(self.dir)
        found = []
        for pid in processes():
            cl = cmdline(pid)
            if ("fastnet.control.agent" in cl or "fastnet.control.keeper" in cl) and want in cl.split():
                found.append((pid, cl))
        return found

    def container_processes(self) -> list[tuple[int, str]]:
        """Processes fastnet started as a container's `command:` on this host."""
        prefix = f"{self.key}/"
        return [
            (pid, environ(pid)["FASTNET_CONTAINER"])
            for pid in processes()
            if environ(pid).get("FASTNET_CONTAINER", "").startswith(prefix)
        ]

    # -- running things ------------------------------------------------------------------
    def prefix(self, via: str = "ip") -> list[str]:
        if via == "ip":
            return ["ip", "netns", "exec", self.name]
        if via == "nsenter":
            return ["nsenter", f"--net={self.netns_path}"]
        raise ValueError(via)

    def sh(self, *cmd: str, check: bool = True, timeout: float = CMD_TIMEOUT):
        """Run a command in HOST."""
        return run(*self.prefix(), *cmd, check=check, timeout=timeout)

    def fastnet(self, *args: str, check: bool = True, env: dict | None = None, via: str = "ip", timeout: float = CMD_TIMEOUT):
        full_env = {k: v for k, v in os.environ.items() if k != "FASTNET_FAILPOINT"}
        full_env.update(env or {})
        return run(*self.prefix(via), str(FASTNET), *args, check=check, env=full_env, timeout=timeout)

    def fastnet_nsenter(self, *args: str, **kw):
        return self.fastnet(*args, via="nsenter", **kw)

    def write(self, yaml_text: str, stem: str | None = None) -> Path:
        path = self.workdir / f"{stem or _project_name(yaml_text)}-{next(_seq)}.yaml"
        path.write_text(yaml_text)
        self.files.append(path)
        return path

    def up(self, config: str | Path, *, check: bool = True, env: dict | None = None, via: str = "ip", stem: str | None = None):
        """`fastnet up -f` a config: YAML text (written to a new file) or the Path of one
        written before. The result has .path (the file)."""
        path = config if isinstance(config, Path) else self.write(config, stem)
        cp = self.fastnet("up", "-f", str(path), check=check, env=env, via=via)
        cp.path = path
        if cp.returncode == 0:
            self.record_objects()
        return cp

    def down(self, target: str | Path, *, check: bool = True, via: str = "ip"):
        """`fastnet down -f FILE` (a Path) or `fastnet down -p NAME` (a str)."""
        args = ("-f", str(target)) if isinstance(target, Path) else ("-p", target)
        return self.fastnet("down", *args, check=check, via=via)

    def inspect(self, name: str, via: str = "ip") -> dict:
        return json.loads(self.fastnet("inspect", name, via=via).stdout)

    def ps(self, via: str = "ip") -> dict:
        return json.loads(self.fastnet("ps", "--json", via=via).stdout)

    def exec(self, container: str, *cmd: str, check: bool = False, via: str = "ip", timeout: float = 30):
        return self.fastnet("exec", container, "--", *cmd, check=check, via=via, timeout=timeout)

    def counters(self, container: str, program: str = "fn_from_container") -> dict[str, int]:
        """Packets per counter (short name; 0 when absent) of one program of the datapath
        serving container, as `fastnet inspect` reports them."""
        data = self.inspect(container)["counters"]
        assert "error" not in data, data
        return Counters({k: v["packets"] for k, v in data.get(program, {}).items()})

    def links(self, ns: str | None = None) -> list[dict]:
        return json.loads(run("ip", "-n", ns or self.name, "-j", "-d", "link", "show").stdout or "[]")

    def routes(self, *selector: str) -> list[dict]:
        return json.loads(run("ip", "-n", self.name, "-j", "route", "show", *selector).stdout or "[]")

    def tc_filters(self, dev: str, parent: str = "ingress") -> list[dict]:
        cp = self.sh("tc", "-j", "filter", "show", "dev", dev, parent, check=False)
        if cp.returncode != 0:
            return []
        return [f for f in json.loads(cp.stdout or "[]") if "options" in f]

    def record_objects(self) -> None:
        """Remember the BPF programs/maps attached to fastnet's ports and the container
        namespaces, so that leftovers() can check them by id after `down`."""
        for link in self.links():
            for parent in ("ingress", "egress"):
                for f in self.tc_filters(link["ifname"], parent):
                    prog = f["options"].get("prog", {}).get("id")
                    if prog:
                        self.prog_ids.add(prog)
        for prog in list(self.prog_ids):
            cp = run("bpftool", "-j", "prog", "show", "id", str(prog), check=False)
            if cp.returncode == 0:
                self.map_ids.update(json.loads(cp.stdout).get("map_ids", []))
        for project in self.ps()["projects"].values():
            for c in project["containers"].values():
                if c.get("netns"):
                    with contextlib.suppress(OSError):
                        self.container_netns[ns_inode(c["netns"])] = ns_cookie(c["netns"])

    def snapshot(self, project: str) -> dict[str, dict]:
        """What must not change for a container that a run leaves alone: netns inode, host-side
        ifindex (as the kernel has it), address and MAC per network, command pid."""
        by_name = {l["ifname"]: l["ifindex"] for l in self.links()}
        out = {}
        for name, c in self.ps()["projects"][project]["containers"].items():
            out[name] = {
                "netns": ns_inode(c["netns"]),
                "networks": {
                    net: (v["ifname"], v["ipv4"], v["mac"], v["host_ifname"], by_name.get(v["host_ifname"]), v["host_ifindex"])
                    for net, v in c["networks"].items()
                },
                "pid": (c["command"] or {}).get("pid"),
            }
        return out

    def configuration(self, project: str) -> dict[str, dict]:
        """What a container looks like from inside and to its peers, without the kernel's
        identities: networks with interface name, address and MAC, and the command running."""
        out = {}
        for name, c in self.ps()["projects"][project]["containers"].items():
            out[name] = {
                "networks": {net: (v["ifname"], v["ipv4"], v["mac"]) for net, v in c["networks"].items()},
                "command": c["command"] and (c["command"]["argv"], c["command"]["running"]),
            }
        return out


class Counters(dict):
    def __missing__(self, key):
        return 0


def one_line_error(cp: subprocess.CompletedProcess) -> str:
    lines = cp.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got {len(lines)}:\n{cp.stderr}"
    assert lines[0].startswith("fastnet: error: "), lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------
# leftovers
# ----------------------------------------------------------------------------------------
def leftovers(host: Host) -> list[str]:
    """Everything fastnet-owned still present for this host (empty when it is clean)."""
    found = []
    for link in host.links():
        if link["ifname"] not in ("lo", UPLINK):
            found.append(f"HOST link {link['ifname']} (alias {link.get('ifalias', '')!r})")
    for ns in (host.name, host.world):
        for link in host.links(ns):
            if link.get("ifalias", "").startswith("fastnet:"):
                found.append(f"link {link['ifname']} in {ns} tagged {link['ifalias']!r}")
    for r in host.routes("table", "all", "proto", str(RTPROT_FASTNET)):
        found.append(" ".join(filter(None, (f"route proto {RTPROT_FASTNET}:", r.get("type"), r.get("dst"), r.get("dev")))))
    for parent in ("ingress", "egress"):
        for f in host.tc_filters(UPLINK, parent):
            found.append(f"tc filter on {UPLINK} {parent}: {f['options'].get('bpf_name', f)}")
    if host.dir.exists():
        for child in sorted(host.dir.rglob("*")):
            rel = child.relative_to(host.dir)
            if str(rel) != "lock":
                found.append(f"state dir: {rel}{'/' if child.is_dir() else ''}")
    for pid, cl in host.agent_processes():
        found.append(f"agent process {pid}: {cl}")
    for what, record in (("agent", host.agent_record()), ("keeper", host.keeper_record())):
        if record and pid_alive(int(record.get("pid", 0))):
            found.append(f"{what}.json names live pid {record['pid']}")
    for pid, tag in host.container_processes():
        found.append(f"container process {pid} ({tag}): {cmdline(pid)[:80]}")
    for pid in pids_in_netns(host.inode):
        found.append(f"process {pid} in HOST netns: {cmdline(pid)[:80]}")
    found += netns_references(host.container_netns)
    for prog in sorted(host.prog_ids):
        if run("bpftool", "prog", "show", "id", str(prog), check=False).returncode == 0:
            found.append(f"BPF program id {prog} still loaded")
    for m in sorted(host.map_ids):
        if run("bpftool", "map", "show", "id", str(m), check=False).returncode == 0:
            found.append(f"BPF map id {m} still exists")
    return sorted(set(found))


def poll_leftovers(host: Host, timeout: float = 5.0) -> list[str]:
    """leftovers(), polled for a while: the kernel frees namespaces and BPF objects lazily."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(host)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def assert_no_leftovers(host: Host, timeout: float = 5.0) -> None:
    left = poll_leftovers(host, timeout)
    assert not left, "fastnet left behind:\n  " + "\n  ".join(left)


# ----------------------------------------------------------------------------------------
# traffic: sockets
# ----------------------------------------------------------------------------------------
def make_socket(ns_path: str, kind: int) -> socket.socket:
    with netns(ns_path):
        return socket.socket(socket.AF_INET, kind)


class EchoServer:
    """A TCP or UDP echo server on a socket created in the given netns, served by threads.
    `peers` lists the (address, port) of every accepted connection / received datagram, in
    the order they came: what the server sees as its client."""

    def __init__(self, ns_path: str, proto: str = "tcp", ip: str = "0.0.0.0", port: int = 0):
        self.proto = proto
        self.sock = make_socket(ns_path, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self.peers: list[tuple[str, int]] = []
        self._threads: list[threading.Thread] = []
        if proto == "tcp":
            self.sock.listen(64)
        self._spawn(self._serve_tcp if proto == "tcp" else self._serve_udp)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _serve_tcp(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.peers.append(peer)
            self._spawn(self._echo_conn, conn)

    def _echo_conn(self, conn: socket.socket):
        with conn:
            conn.settimeout(10)
            try:
                while chunk := conn.recv(65536):
                    conn.sendall(chunk)
            except OSError:
                pass

    def _serve_udp(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65536)
            except (socket.timeout, OSError):
                continue
            self.peers.append(peer)
            with contextlib.suppress(OSError):
                self.sock.sendto(data, peer)

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _errname(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def _bind_source(s: socket.socket, bind: int | None) -> None:
    """Bind a client socket to a fixed source port (SO_REUSEADDR: the port may be in TIME_WAIT
    from an earlier connection to another server)."""
    if bind is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", bind))


def tcp_echo(ns_path: str, ip: str, port: int, size: int = 64 * 1024, timeout: float = 5.0, bind: int | None = None) -> str:
    """Connect from ns_path, send `size` random bytes, read the echo; "ok" if it comes back
    byte for byte, else why not ("timeout", "ECONNREFUSED", "EHOSTUNREACH", "mismatch", ...).
    bind: the client's source port (default: any)."""
    payload = os.urandom(size)
    s = make_socket(ns_path, socket.SOCK_STREAM)
    with s:
        s.settimeout(timeout)
        try:
            _bind_source(s, bind)
            s.connect((ip, port))
        except OSError as exc:
            return _errname(exc)
        err: list[str] = []

        def send():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except OSError as exc:
                err.append(_errname(exc))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = bytearray()
        try:
            while chunk := s.recv(65536):
                got += chunk
        except OSError as exc:
            return _errname(exc)
        sender.join(timeout)
        if err:
            return err[0]
        return "ok" if bytes(got) == payload else f"mismatch ({len(got)} of {size} bytes)"


def udp_echo(ns_path: str, ip: str, port: int, size: int = 1024, timeout: float = 1.0, tries: int = 3, bind: int | None = None) -> str:
    """Send a random datagram from ns_path and wait for the identical echo ("ok").
    bind: the client's source port (default: any)."""
    s = make_socket(ns_path, socket.SOCK_DGRAM)
    with s:
        s.settimeout(timeout)
        _bind_source(s, bind)
        result = "timeout"
        for _ in range(tries):
            payload = os.urandom(size)
            try:
                s.sendto(payload, (ip, port))
                while True:
                    data, _peer = s.recvfrom(65536)
                    if data == payload:
                        return "ok"
                    result = "mismatch"
            except OSError as exc:
                result = _errname(exc)
                if result != "timeout":
                    return result
        return result


BLOCKED = ("timeout", "EHOSTUNREACH", "ENETUNREACH")


def ping(host: Host, container: str, ip: str, expect: bool = True) -> bool:
    """ICMP echo from a container with `fastnet exec NAME -- ping`. A success is retried
    for (expect=True) up to three times; an expected failure is tried once."""
    tries = 3 if expect else 1
    for _ in range(tries):
        if host.exec(container, "ping", "-n", "-c1", "-W1", ip).returncode == 0:
            return True
    return False


def ping_from_host(host: Host, ip: str, tries: int = 3) -> bool:
    return any(host.sh("ping", "-n", "-c1", "-W1", ip, check=False).returncode == 0 for _ in range(tries))


# ----------------------------------------------------------------------------------------
# traffic: scapy
# ----------------------------------------------------------------------------------------
def marker(tag: str = "") -> bytes:
    """A payload no other frame carries."""
    return f"fastnet-test-{tag}-{uuid.uuid4().hex}".encode()


def l2socket(ns_path: str, iface: str = "eth0"):
    """A scapy L2 socket on iface of the netns at ns_path (promisc off: scapy would look the
    interface up in *this* process's namespace)."""
    from scapy.all import conf

    with netns(ns_path):
        return conf.L2socket(iface=iface, promisc=False)


class Capture:
    """Sniff on several (netns, iface) at once for frames carrying any of `markers`.

        with Capture({"b": (b_ns, "eth0"), "d": (d_ns, "eth0")}) as cap:
            send(...)
            cap.wait_for("b", m1)          # positive: poll until seen
        cap.seen("d", m1)                  # negative: checked after the positives arrived
    """

    def __init__(self, points: dict[str, tuple[str, str]], settle: float = 0.1):
        from scapy.all import AsyncSniffer

        self.frames: dict[str, list] = {label: [] for label in points}
        self._lock = threading.Lock()
        self._sockets = {}
        self._sniffers = []
        try:
            for label, (ns_path, iface) in points.items():
                sock = l2socket(ns_path, iface)
                self._sockets[label] = sock
                sniffer = AsyncSniffer(opened_socket=sock, store=False, prn=self._collector(label))
                sniffer.start()
                self._sniffers.append(sniffer)
            time.sleep(settle)  # let every sniffer thread reach its receive loop
        except BaseException:
            self.close()
            raise

    def _collector(self, label):
        def collect(pkt):
            with self._lock:
                self.frames[label].append(pkt)

        return collect

    def matching(self, label: str, mark: bytes) -> list:
        with self._lock:
            return [p for p in self.frames[label] if mark in bytes(p)]

    def seen(self, label: str, mark: bytes) -> bool:
        return bool(self.matching(label, mark))

    def wait_for(self, label: str, mark: bytes, timeout: float = 3.0) -> list:
        return wait_until(lambda: self.matching(label, mark), timeout, what=f"frame {mark!r} at {label}")

    def close(self) -> None:
        for s in self._sniffers:
            with contextlib.suppress(Exception):
                s.stop()
        self._sniffers = []
        for sock in self._sockets.values():
            with contextlib.suppress(Exception):
                sock.close()
        self._sockets = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------
# a project's containers, as the tests address them
# ----------------------------------------------------------------------------------------
@dataclass
class Ctr:
    name: str
    netns: str
    nets: dict[str, dict]  # network -> inspect's view of the interface

    def ip(self, net: str) -> str:
        return self.nets[net]["ipv4"]

    def mac(self, net: str) -> str:
        return self.nets[net]["mac"]

    def ifname(self, net: str) -> str:
        return self.nets[net]["ifname"]


def containers(host: Host, project: str) -> dict[str, Ctr]:
    view = host.ps()["projects"][project]["containers"]
    return {n: Ctr(n, c["netns"], c["networks"]) for n, c in view.items()}


def mac_for(ip: str) -> str:
    """fastnet's MAC for an address: 02:fa:<the four address bytes>."""
    return "02:fa:" + ":".join(f"{int(b):02x}" for b in ip.split("."))


def in_netns(ns_path: str, *cmd: str, check: bool = True):
    """Run a command (e.g. `ip -j addr`) in a container's netns, without fastnet."""
    return run("nsenter", f"--net={ns_path}", *cmd, check=check)


# The topology most tests use (sketched at the top of each test file):
#   front 10.90.1.0/24: a (static .10), b, c, e/eth0      back 10.90.2.0/24: d, e/eth1
#   f: no networks listed -> default network "bridge" 172.17.0.0/16
TWO_NETWORKS = """\
name: demo
networks:
  front:
    subnet: 10.90.1.0/24
  back:
    subnet: 10.90.2.0/24
containers:
  a:
    networks:
      front:
        ipv4_address: 10.90.1.10
  b:
    networks: [front]
  c:
    networks: [front]
  d:
    networks: [back]
  e:
    networks: [front, back]
  f: {}
"""

def edit(text: str, old: str, new: str) -> str:
    """text with its one occurrence of old replaced (fails loudly if the edit does not apply)."""
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


# The same with a long-running command in a (its pid must survive a converging `up`).
TWO_NETWORKS_WITH_COMMAND = edit(
    TWO_NETWORKS,
    "        ipv4_address: 10.90.1.10\n",
    "        ipv4_address: 10.90.1.10\n    command: [sleep, infinity]\n",
)


def assert_project_works(host: Host, project: str = "demo") -> None:
    """For projects shaped like TWO_NETWORKS: peers on each network ping each other, a TCP
    echo from e to a works, and a (front) cannot reach d (back)."""
    c = containers(host, project)
    for net in ("front", "back"):
        members = [n for n, x in c.items() if net in x.nets]
        for src, dst in zip(members, members[1:] + members[:1]):  # a ring: each pings the next
            assert ping(host, src, c[dst].ip(net)), f"{src} cannot ping {dst} on {net}"
    with EchoServer(c["a"].netns, "tcp") as srv:
        assert tcp_echo(c["e"].netns, c["a"].ip("front"), srv.port) == "ok"
    assert not ping(host, "a", c["d"].ip("back"), expect=False), "a reached d across networks"


# ----------------------------------------------------------------------------------------
# NAT: the outside (WORLD), published ports, connection tracking
# ----------------------------------------------------------------------------------------
def moved(before: dict[str, int], after: dict[str, int]) -> "Counters":
    """How much each counter grew between two Host.counters() readings (only the changed)."""
    return Counters({k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)})


def sysctl(ns_path: str, key: str, value: str | int) -> str:
    """Set a sysctl inside the netns at ns_path (per-netns keys only); returns the old value."""
    old = in_netns(ns_path, "sysctl", "-n", key).stdout.strip()
    in_netns(ns_path, "sysctl", "-qw", f"{key}={value}")
    return old


def open_tcp(ns_path: str, ip: str, port: int, bind: int | None = None, timeout: float = 5.0) -> socket.socket:
    """A TCP connection from ns_path (source port `bind` if given), left open for the caller."""
    s = make_socket(ns_path, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        _bind_source(s, bind)
        s.connect((ip, port))
    except BaseException:
        s.close()
        raise
    return s


def roundtrip(s: socket.socket, size: int = 4096) -> str:
    """Send size random bytes on a connected TCP socket to an echo server and read them back."""
    payload = os.urandom(size)
    try:
        s.sendall(payload)
        got = bytearray()
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                return f"closed after {len(got)} of {size} bytes"
            got += chunk
    except OSError as exc:
        return _errname(exc)
    return "ok" if bytes(got) == payload else "mismatch"


def udp_stream(
    ns_path: str, ip: str, port: int, count: int = 200, size: int = 1200, bind: int | None = None,
    timeout: float = 1.0, sock: socket.socket | None = None,
) -> str:
    """Send `count` random datagrams (each resent up to 3 times if lost) and check that every
    one comes back identical and from (ip, port), the address it was sent to. "ok", or why
    not. `sock`: an existing socket to use instead of a new one made in ns_path."""
    s = sock or make_socket(ns_path, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        if sock is None:
            _bind_source(s, bind)
        for i in range(count):
            payload = i.to_bytes(4, "big") + os.urandom(size - 4)
            for _attempt in range(3):
                try:
                    s.sendto(payload, (ip, port))
                    while True:
                        data, peer = s.recvfrom(65536)
                        if data[:4] != payload[:4]:
                            continue  # a late duplicate of an earlier datagram
                        if data != payload:
                            return f"datagram {i}: mismatch"
                        if peer != (ip, port):
                            return f"datagram {i}: reply from {peer[0]}:{peer[1]}, not {ip}:{port}"
                        break
                    break
                except socket.timeout:
                    continue
                except OSError as exc:
                    return f"datagram {i}: {_errname(exc)}"
            else:
                return f"datagram {i}: timeout"
        return "ok"
    finally:
        if sock is None:
            s.close()


def conntrack(host: Host) -> list[dict]:
    """`fastnet conntrack --json`: one dict per flow (proto, kind, state, confirmed,
    original{src,sport,dst,dport}, reply{...}, age_s, expires_in_s)."""
    return json.loads(host.fastnet("conntrack", "--json").stdout)


def flows(host: Host, proto: str | None = None, kind: str | None = None, **original) -> list[dict]:
    """The tracked flows matching proto, kind and the given fields of the original tuple
    (src=..., sport=..., dst=..., dport=...)."""
    return [
        f
        for f in conntrack(host)
        if (proto is None or f["proto"] == proto)
        and (kind is None or f["kind"] == kind)
        and all(f["original"][k] == v for k, v in original.items())
    ]


CSUM_COUNTERS = ("IpInHdrErrors", "IpExtInCsumErrors", "IcmpInCsumErrors", "TcpInCsumErrors", "UdpInCsumErrors")


def nstat(ns_path: str, names: Iterable[str] = CSUM_COUNTERS) -> dict[str, int]:
    """Absolute SNMP counters of a netns (`nstat -asz`: no history is read or written)."""
    data = json.loads(in_netns(ns_path, "nstat", "-asz", "--json").stdout)["kernel"]
    return {n: int(data.get(n, 0)) for n in names}


def tx_checksum(ns_path: str, iface: str, on: bool) -> None:
    """Turn TX checksum offload of one interface on or off (off: the sender computes every
    checksum in full, so the receiver verifies what fastnet rewrote)."""
    in_netns(ns_path, "ethtool", "-K", iface, "tx", "on" if on else "off")


@contextlib.contextmanager
def tx_checksum_off(points: Iterable[tuple[str, str]]):
    """TX checksum offload off on every (netns path, interface) for the body, then back on."""
    done = []
    try:
        for ns_path, iface in points:
            tx_checksum(ns_path, iface, False)
            done.append((ns_path, iface))
        yield
    finally:
        for ns_path, iface in done:
            with contextlib.suppress(AssertionError):
                tx_checksum(ns_path, iface, True)


def uplink_mac(host: Host, ns: str | None = None) -> str:
    """MAC of up0 in HOST (default) or in the namespace named ns."""
    return next(l["address"] for l in host.links(ns) if l["ifname"] == UPLINK)


def uplink_program(host: Host) -> int | None:
    """Id of the BPF program on HOST's up0 ingress, if any."""
    found = [f["options"].get("prog", {}).get("id") for f in host.tc_filters(UPLINK)]
    return found[0] if found else None


def prog_map_ids(prog_id: int) -> set[int]:
    cp = run("bpftool", "-j", "prog", "show", "id", str(prog_id), check=False)
    return set(json.loads(cp.stdout).get("map_ids", [])) if cp.returncode == 0 else set()


def cgroup_programs(cgroup: str = "/sys/fs/cgroup/unified") -> dict[int, str]:
    """{program id: name} of every program attached to the root of the cgroup2 hierarchy."""
    cp = run("bpftool", "-j", "cgroup", "show", cgroup)
    return {p["id"]: p["name"] for p in json.loads(cp.stdout or "[]")}


def cgroup_tree_ids(root: str = "/sys/fs/cgroup/unified") -> set[int]:
    """Ids of every program attached anywhere in the cgroup2 hierarchy (`bpftool cgroup tree`)."""
    out = run("bpftool", "cgroup", "tree", root).stdout
    return {int(m) for m in re.findall(r"^\s*(\d+)\s", out, re.M)}


def sock_hook_ids(host: Host) -> dict[int, str]:
    """The socket hooks (fn_sock_*) of *this* host's datapath: other hosts on the machine attach
    their own to the same root cgroup, so ours are told apart by the maps they share with the
    program on this host's uplink, directly or through another of our hooks (recvmsg* and
    getpeername* use only the socket storage and tables that connect* and sendmsg4 fill)."""
    prog = uplink_program(host)
    ours = prog_map_ids(prog) if prog else set()
    hooks = {pid: (name, prog_map_ids(pid)) for pid, name in cgroup_programs().items() if name.startswith("fn_sock_")}
    found: dict[int, str] = {}
    while True:
        more = {pid: name for pid, (name, maps) in hooks.items() if pid not in found and maps & ours}
        if not more:
            return found
        found.update(more)
        for pid in more:
            ours = ours | hooks[pid][1]


@contextlib.contextmanager
def far_network(host: Host, mtu: int, subnet: str = "203.0.113"):
    """A third namespace FAR behind WORLD, on a link with a smaller MTU; WORLD forwards (for
    the body only). Yields FAR's netns path; FAR's address is <subnet>.2, WORLD's <subnet>.1.

        HOST --up0 (1500)-- WORLD --far0 (mtu)-- FAR <subnet>.2
    """
    name = f"{host.world}-far"
    path = f"/run/netns/{name}"
    old_forward = None
    try:
        run("ip", "netns", "add", name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", host.world, "link", "add", "far0", "mtu", str(mtu), "type", "veth", "peer", "name", "far0", "netns", name, "mtu", str(mtu))
        run("ip", "-n", host.world, "addr", "add", f"{subnet}.1/24", "dev", "far0")
        run("ip", "-n", name, "addr", "add", f"{subnet}.2/24", "dev", "far0")
        run("ip", "-n", host.world, "link", "set", "far0", "up")
        run("ip", "-n", name, "link", "set", "far0", "up")
        run("ip", "-n", name, "route", "add", "default", "via", f"{subnet}.1")
        old_forward = sysctl(host.world_path, "net.ipv4.ip_forward", 1)
        yield path
    finally:
        if old_forward is not None:
            sysctl(host.world_path, "net.ipv4.ip_forward", old_forward)
        run("ip", "-n", host.world, "link", "del", "far0", check=False)
        if Path(path).exists():
            kill(pids_in_netns(ns_inode(path)))
            run("ip", "netns", "del", name, check=False)


def iptables_rules(ns: str) -> list[str]:
    """What iptables (nft and legacy back ends) and nftables hold in the namespace named ns,
    beyond empty built-in chains: [] when nothing."""
    found = []
    for tool in ("iptables-save", "iptables-legacy-save", "iptables-nft-save"):
        if shutil.which(tool) is None:
            continue
        out = run("ip", "netns", "exec", ns, tool).stdout
        for line in out.splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("*") or line == "COMMIT":
                continue
            if re.match(r"^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT \[\d+:\d+\]$", line):
                continue
            found.append(f"{tool}: {line}")
    nft = run("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout.strip()
    if nft:
        found += [f"nft: {line}" for line in nft.splitlines()]
    return found


@dataclass
class IcmpError:
    """One ICMP error queued on a socket (IP_RECVERR): errno, ICMP type/code, and the address
    of the node that sent it."""

    errno: int
    icmp_type: int
    icmp_code: int
    offender: str


IP_RECVERR = 11  # linux/in.h
SO_EE_ORIGIN_ICMP = 2


def queue_icmp_errors(s: socket.socket) -> None:
    """Have the kernel queue every ICMP error about s's packets (IP_RECVERR): before sending."""
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def wait_for_icmp_error(s: socket.socket, timeout: float = 1.5) -> IcmpError | None:
    """The first ICMP error on s's error queue (see queue_icmp_errors), or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _data, ancillary, _flags, _addr = s.recvmsg(512, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            time.sleep(0.02)
            continue
        for level, kind, raw in ancillary:
            if level == socket.IPPROTO_IP and kind == IP_RECVERR:
                err, origin, icmp_type, icmp_code = struct.unpack_from("=IBBB", raw)
                if origin == SO_EE_ORIGIN_ICMP:
                    offender = socket.inet_ntoa(raw[16 + 4 : 16 + 8])  # sockaddr_in after the 16-byte header
                    return IcmpError(err, icmp_type, icmp_code, offender)
    return None


# ----------------------------------------------------------------------------------------
# the iptables backend: the host's firewall and bridges
# ----------------------------------------------------------------------------------------
FIREWALL_SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables")


def firewall(ns: str) -> dict[str, object]:
    """What the iptables backend may change in the namespace named ns, comparable before `up`
    and after `down`: `iptables-save` (counters zeroed, comments dropped), `nft list ruleset`,
    and the sysctls it sets."""
    save = run("ip", "netns", "exec", ns, "iptables-save").stdout
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in save.splitlines() if line and not line.startswith("#")]
    nft = run("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout
    nft = re.sub(r"packets \d+ bytes \d+", "packets 0 bytes 0", nft)
    sysctls = {k: run("ip", "netns", "exec", ns, "sysctl", "-n", k).stdout.strip() for k in FIREWALL_SYSCTLS}
    return {"iptables-save": lines, "nft": nft.strip(), "sysctls": sysctls}


def bridges(host: Host) -> dict[str, dict]:
    """HOST's bridge devices by name (`ip -d link` JSON)."""
    return {l["ifname"]: l for l in host.links() if l.get("linkinfo", {}).get("info_kind") == "bridge"}


def icmp_echo_socket(ns_path: str, ident: int) -> socket.socket:
    """An unprivileged ICMP echo ("ping") socket in ns_path whose echo identifier is ident
    (the kernel writes it and the checksum into every request). Enables ping sockets for
    root in that namespace (net.ipv4.ping_group_range)."""
    sysctl(ns_path, "net.ipv4.ping_group_range", "0 0")
    with netns(ns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    s.bind(("0.0.0.0", ident))
    return s


def icmp_echo_request(seq: int, payload: bytes) -> bytes:
    """An echo request for an ICMP echo socket (identifier and checksum filled by the kernel)."""
    return struct.pack("!BBHHH", 8, 0, 0, 0, seq) + payload
