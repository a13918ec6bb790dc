"""The host a fastnet invocation acts on, and the processes that keep its objects alive.

A "host" is the network namespace fastnet runs in (the real host, or any namespace a test
or an operator enters with `ip netns exec` or `nsenter`). Its state lives under
`<state root>/hosts/net-<netns inode>/`.

Container namespaces and the bpffs holding the datapath's pins must outlive the command
that made them, and `ip netns exec` runs every command in a private mount namespace whose
mounts die with it. So each host has one keeper (control/keeper.py): a small process in its own
mount namespace that owns a private tmpfs (`rt/`, holding container netns bind mounts) and a
private bpffs, does nothing else, and runs the agent (control/agent.py: DNS, conntrack garbage
collection), restarting it whenever it exits. Every fastnet command joins the keeper's mount
namespace before it touches those. The agent can die at any time without taking anything with
it; when the keeper exits (`down` of the last project), the kernel frees what it held.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import linux, logs, procs
from .keeper import AGENT_FILE, KEEPER_FILE
from .observe import netns_cookie
from ..datapath.errors import FastnetError

STATE_ROOT = Path(os.environ.get("FASTNET_STATE_DIR", "/run/fastnet"))
START_TIMEOUT = 10.0


class HostError(FastnetError):
    pass


@dataclass(frozen=True)
class Process:
    """A keeper or agent, as its record file names it: pid and start time identify it."""

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
        """A path inside its mount namespace as any process on the machine can open it."""
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
        """The keeper's private tmpfs."""
        return self.dir / "rt"

    @property
    def netns_dir(self) -> Path:
        return self.runtime / "netns"

    @property
    def bpffs(self) -> Path:
        return self.runtime / "bpf"

    @property
    def cgroup(self) -> Path:
        """The root of the cgroup2 hierarchy, mounted by the keeper."""
        return self.runtime / "cgroup"

    @property
    def projects_dir(self) -> Path:
        return self.dir / "projects"

    @property
    def keeper_file(self) -> Path:
        return self.dir / KEEPER_FILE

    @property
    def agent_file(self) -> Path:
        return self.dir / AGENT_FILE

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

    def live_keeper(self) -> Process | None:
        keeper = read_process(self.keeper_file)
        return keeper if keeper is not None and keeper.alive() else None

    def live_agent(self) -> Process | None:
        agent = read_process(self.agent_file)
        return agent if agent is not None and agent.alive() else None


def read_process(path: Path) -> Process | None:
    try:
        data = json.loads(path.read_text())
        return Process(int(data["pid"]), int(data["start_time"]), int(data["netns_inode"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def make_private_dirs(path: Path) -> None:
    """path and its parents up to the state root, root-only: they hold logs and state."""
    for d in (STATE_ROOT, STATE_ROOT / "hosts", path):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if d.stat().st_mode & 0o077:
            os.chmod(d, 0o700)


def current_host() -> Host:
    return Host(linux.ns_inode("/proc/self/ns/net"))


@contextlib.contextmanager
def locked(host: Host):
    """Serialise fastnet invocations on one host; the kernel drops the lock if we die. The
    directory is claimed for this namespace first (see forget_dead_namespace)."""
    make_private_dirs(host.dir)
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
    if leftovers and (recorded is not None or host.live_keeper() is None):
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        host.identity_file.unlink(missing_ok=True)


def claim(host: Host) -> None:
    """Record that the host directory belongs to this namespace (when its keeper starts)."""
    tmp = host.dir / f".host.json.{os.getpid()}"
    tmp.write_text(json.dumps({"netns_cookie": netns_cookie()}))
    tmp.rename(host.identity_file)


def _refuse_legacy_agent(host: Host) -> None:
    """An agent of a fastnet from before the keeper holds the mounts itself: this version
    cannot adopt it (it would run a second resolver beside it)."""
    legacy = read_process(host.agent_file)
    if host.live_keeper() is None and legacy is not None and legacy.alive():
        raise HostError(
            f"a fastnet agent of an older version runs on this host (pid {legacy.pid}) without a keeper: "
            "bring its projects down with that version first, or stop it (its containers go with it)"
        )


def start_keeper(host: Host) -> Process:
    """Start the host's keeper (which starts the agent) and wait until its mounts are ready."""
    make_private_dirs(host.dir)
    claim(host)
    for stale in (host.keeper_file, host.agent_file):
        stale.unlink(missing_ok=True)
    read_fd, write_fd = os.pipe()
    log = logs.open_agent_log(host.dir)
    try:
        proc = procs.popen(
            procs.python("fastnet.control.keeper", str(host.dir), str(write_fd)),
            env=procs.environment(FASTNET_STATE_DIR=str(STATE_ROOT)),  # fastnet's own: the agent's host key
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
    finally:
        os.close(write_fd)
        os.close(log)
    with os.fdopen(read_fd, "rb") as ready:
        answer = ready.read()  # EOF when the keeper signals readiness or dies
    keeper = host.live_keeper()
    if answer != b"ready" or keeper is None or keeper.pid != proc.pid:
        proc.kill()
        raise HostError(f"the fastnet keeper did not start; see {logs.agent_log(host.dir)}")
    proc.returncode = 0  # never waited on here: it outlives us
    return keeper


def exec_keeper(host: Host) -> None:
    """Become the host's keeper, in the foreground (`fastnet keeper`, for a service manager
    that supervises it); HostError if one runs already."""
    with locked(host):
        _refuse_legacy_agent(host)
        if (keeper := host.live_keeper()) is not None:
            raise HostError(f"a keeper already runs for this host (pid {keeper.pid})")
        claim(host)
        for stale in (host.keeper_file, host.agent_file):
            stale.unlink(missing_ok=True)
    log = logs.open_agent_log(host.dir)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(procs.WORKDIR)
    argv = procs.python("fastnet.control.keeper", str(host.dir), "-")
    os.execve(argv[0], argv, procs.environment(FASTNET_STATE_DIR=str(STATE_ROOT)))


def wait_for_agent(host: Host, keeper: Process, timeout: float = START_TIMEOUT) -> Process:
    """The agent, once it serves; the keeper is asked to start it now if it is waiting to."""
    poke_agent(host, keeper)
    deadline = time.monotonic() + timeout
    while (agent := host.live_agent()) is None:
        if time.monotonic() > deadline or not keeper.alive():
            raise HostError(f"the fastnet agent did not start; see {logs.agent_log(host.dir)}")
        time.sleep(0.01)
    return agent


def poke_agent(host: Host, keeper: Process) -> None:
    """Have the keeper start the agent now if it is waiting out a restart delay."""
    if host.live_agent() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(keeper.pid, signal.SIGUSR1)


def ensure_running(host: Host) -> Process:
    """The host's keeper, started if there is none, with its agent serving; returns the keeper."""
    _refuse_legacy_agent(host)
    keeper = host.live_keeper() or start_keeper(host)
    wait_for_agent(host, keeper)
    return keeper


def stop_keeper(host: Host) -> None:
    """Stop the keeper (it stops the agent); the kernel frees what it held."""
    leave_host_mounts()  # else this process alone would keep the keeper's mounts alive
    for record in (read_process(host.keeper_file), read_process(host.agent_file)):
        if record is None or not record.alive():
            continue
        os.kill(record.pid, signal.SIGTERM)
        for _ in range(300):
            if not record.alive():
                break
            time.sleep(0.01)
        else:
            os.kill(record.pid, signal.SIGKILL)
    for path in (host.keeper_file, host.agent_file):
        path.unlink(missing_ok=True)


_outer_mounts: int | None = None


def enter_host_mounts(keeper: Process) -> None:
    """Join the keeper's mount namespace (must happen before this process starts threads)."""
    global _outer_mounts
    if linux.ns_inode(f"/proc/{keeper.pid}/ns/mnt") == linux.ns_inode("/proc/self/ns/mnt"):
        return
    if _outer_mounts is None:
        _outer_mounts = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    _setns_mounts_keeping_cwd(f"/proc/{keeper.pid}/ns/mnt")


def leave_host_mounts() -> None:
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
