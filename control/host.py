"""The host a fastnet invocation acts on, and the agent process that keeps its objects alive.

A "host" is the network namespace fastnet runs in (the real host, or any namespace a test
or an operator enters with `ip netns exec` or `nsenter`). Its state lives under
`<state root>/hosts/net-<netns inode>/`.

Container namespaces and the bpffs holding the datapath's pins must outlive the command
that made them, and `ip netns exec` runs every command in a private mount namespace whose
mounts die with it. So each host has one agent: a small process in its own mount namespace
that owns a private tmpfs (`rt/`, holding container netns bind mounts) and a private bpffs.
Every fastnet command joins the agent's mount namespace before it touches those. When the
agent exits, the kernel frees everything it held: namespaces, veths, programs and maps.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import linux
from .observe import netns_cookie

STATE_ROOT = Path(os.environ.get("FASTNET_STATE_DIR", "/run/fastnet"))
AGENT_START_TIMEOUT = 10.0


class HostError(RuntimeError):
    pass


@dataclass(frozen=True)
class Agent:
    pid: int
    start_time: int
    netns_inode: int

    def alive(self) -> bool:
        if not linux.process_alive(self.pid, self.start_time):
            return False
        try:
            return linux.ns_inode(f"/proc/{self.pid}/ns/net") == self.netns_inode
        except OSError:
            return False

    def path_outside(self, path: Path) -> str:
        """A path inside the agent's mount namespace as any process on the machine can open it."""
        return f"/proc/{self.pid}/root{path}"


@dataclass(frozen=True)
class Host:
    netns_inode: int

    @property
    def key(self) -> str:
        return f"net-{self.netns_inode}"

    @property
    def dir(self) -> Path:
        return STATE_ROOT / "hosts" / self.key

    @property
    def runtime(self) -> Path:
        """The agent's private tmpfs."""
        return self.dir / "rt"

    @property
    def netns_dir(self) -> Path:
        return self.runtime / "netns"

    @property
    def bpffs(self) -> Path:
        return self.runtime / "bpf"

    @property
    def cgroup(self) -> Path:
        """The root of the cgroup2 hierarchy, mounted by the agent."""
        return self.runtime / "cgroup"

    @property
    def projects_dir(self) -> Path:
        return self.dir / "projects"

    @property
    def agent_file(self) -> Path:
        return self.dir / "agent.json"

    @property
    def identity_file(self) -> Path:
        return self.dir / "host.json"

    def recorded_cookie(self) -> int | None:
        try:
            return int(json.loads(self.identity_file.read_text())["netns_cookie"])
        except (OSError, ValueError, KeyError):
            return None

    def is_current(self) -> bool:
        """Whether the host directory belongs to this very namespace: an inode is reused once
        its namespace is gone, the namespace cookie never (within a boot)."""
        return self.recorded_cookie() == netns_cookie()

    def read_agent(self) -> Agent | None:
        try:
            data = json.loads(self.agent_file.read_text())
            return Agent(int(data["pid"]), int(data["start_time"]), int(data["netns_inode"]))
        except (OSError, ValueError, KeyError):
            return None

    def live_agent(self) -> Agent | None:
        agent = self.read_agent()
        return agent if agent is not None and agent.alive() else None


def current_host() -> Host:
    return Host(linux.ns_inode("/proc/self/ns/net"))


@contextlib.contextmanager
def locked(host: Host):
    """Serialise fastnet invocations on one host; the kernel drops the lock if we die. The
    directory is claimed for this namespace first (see forget_dead_namespace)."""
    host.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(host.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        forget_dead_namespace(host)
        yield
    finally:
        os.close(fd)


def forget_dead_namespace(host: Host) -> None:
    """A host directory left by a namespace that died without `down` (its inode now names
    ours) describes objects that died with it: clear it, keeping only the lock."""
    cookie = netns_cookie()
    recorded = host.recorded_cookie()
    if recorded == cookie:
        return
    leftovers = [p for p in host.dir.iterdir() if p.name not in ("lock", host.identity_file.name)]
    agent = host.read_agent()
    if leftovers and (recorded is not None or agent is None or not agent.alive()):
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        host.identity_file.unlink(missing_ok=True)


def claim(host: Host) -> None:
    """Record that the host directory belongs to this namespace (when its agent starts)."""
    tmp = host.dir / f".host.json.{os.getpid()}"
    tmp.write_text(json.dumps({"netns_cookie": netns_cookie()}))
    tmp.rename(host.identity_file)


def start_agent(host: Host) -> Agent:
    """Start the host's agent and wait until its mounts are ready."""
    host.dir.mkdir(parents=True, exist_ok=True)
    claim(host)
    with contextlib.suppress(FileNotFoundError):
        host.agent_file.unlink()
    read_fd, write_fd = os.pipe()
    log = open(host.dir / "agent.log", "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastnet.control.agent", str(host.dir), str(write_fd)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    finally:
        os.close(write_fd)
        log.close()
    deadline = time.monotonic() + AGENT_START_TIMEOUT
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read()  # EOF when the agent signals readiness or dies
    agent = host.read_agent()
    if answer != b"ready" or agent is None or agent.pid != proc.pid or not agent.alive():
        proc.kill()
        raise HostError(f"the fastnet agent did not start; see {host.dir / 'agent.log'}")
    if time.monotonic() > deadline:
        raise HostError("the fastnet agent took too long to start")
    return agent


def stop_agent(host: Host) -> None:
    leave_agent_mounts()  # else this process alone would keep the agent's mounts alive
    agent = host.read_agent()
    if agent is not None and agent.alive():
        os.kill(agent.pid, signal.SIGTERM)
        for _ in range(200):
            if not agent.alive():
                break
            time.sleep(0.01)
        else:
            os.kill(agent.pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        host.agent_file.unlink()


_outer_mounts: int | None = None


def enter_agent_mounts(agent: Agent) -> None:
    """Join the agent's mount namespace (must happen before this process starts threads)."""
    global _outer_mounts
    if linux.ns_inode(f"/proc/{agent.pid}/ns/mnt") == linux.ns_inode("/proc/self/ns/mnt"):
        return
    if _outer_mounts is None:
        _outer_mounts = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    _setns_mounts_keeping_cwd(f"/proc/{agent.pid}/ns/mnt")


def leave_agent_mounts() -> None:
    """Return to the mount namespace this process started in."""
    global _outer_mounts
    if _outer_mounts is None:
        return
    _setns_mounts_keeping_cwd(f"/proc/self/fd/{_outer_mounts}")
    os.close(_outer_mounts)
    _outer_mounts = None


def _setns_mounts_keeping_cwd(path: str) -> None:
    cwd = os.getcwd()
    linux.setns_path(path, linux.CLONE_NEWNS)
    with contextlib.suppress(OSError):
        os.chdir(cwd)  # setns(CLONE_NEWNS) moves us to the namespace's root
