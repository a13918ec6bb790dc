"""Container sandboxes: network namespaces bound under the agent's tmpfs, and the processes
that run inside them (a container's `command:` and `fastnet exec`)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from pyroute2 import IPRoute

from . import linux
from .dns import resolvconf

STOP_GRACE = 2.0


class SandboxError(RuntimeError):
    pass


def create(path: Path) -> None:
    """Make a new network namespace and bind it at path, repairing a placeholder a crash left."""
    if path.exists():
        if linux.is_nsfs_mount(str(path)):
            raise SandboxError(f"network namespace {path} already exists")
        path.unlink()  # the empty file of a create that died before its mount
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o444, exist_ok=False)
    saved = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.unshare(linux.CLONE_NEWNET)
        try:
            linux.mount("/proc/thread-self/ns/net", str(path), None, 0x1000)  # MS_BIND
        finally:
            linux.setns(saved, linux.CLONE_NEWNET)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    finally:
        os.close(saved)
    resolvconf.write(path)


def remove(path: Path) -> None:
    """Kill everything inside, unbind and delete (idempotent)."""
    if linux.is_nsfs_mount(str(path)):
        kill_all(path)
        linux.umount(str(path))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    resolvconf.remove(path)


def alive(path: Path) -> bool:
    return linux.is_nsfs_mount(str(path))


def kill_all(path: Path) -> None:
    """SIGTERM every process in the namespace, then SIGKILL what is left after a grace period."""
    try:
        inode = linux.ns_inode(str(path))
    except OSError:
        return
    pids = linux.pids_in_netns(inode)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = linux.pids_in_netns(inode)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def entered(path: Path):
    """The calling thread inside the namespace meanwhile: what it opens there (a netlink
    socket, /proc/sys) stays bound to that namespace after it has left."""
    saved = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns_path(str(path), linux.CLONE_NEWNET)
        try:
            yield
        finally:
            linux.setns(saved, linux.CLONE_NEWNET)
    finally:
        os.close(saved)


@contextlib.contextmanager
def netlink(path: Path):
    """An IPRoute socket inside the namespace (the socket stays bound to the namespace it was
    opened in, so we enter it only for the socket() call)."""
    with entered(path):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def write_sysctl(path: Path | None, key: str, value: str) -> None:
    """Write a sysctl given as its /proc/sys path (e.g. "net/ipv4/conf/eth0/forwarding": an
    interface name may hold dots) in the namespace at path (None: the current one).
    /proc/sys/net shows the namespace of the task that opens it, so we open it from inside."""
    proc_path = "/proc/sys/" + key
    if path is None:
        Path(proc_path).write_text(value)
        return
    with entered(path):
        Path(proc_path).write_text(value)


def enter(path: Path | None) -> None:
    """Become a process of the container: its network namespace (None: stay in the host's, for
    host mode), and (like `ip netns exec`) a private mount namespace whose /sys shows that
    network namespace's devices and whose /etc/resolv.conf names the container's resolver
    (control/dns/resolvconf.py; host mode keeps the host's, as in Docker)."""
    if path is not None:
        linux.setns_path(str(path), linux.CLONE_NEWNET)
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    with contextlib.suppress(OSError):
        linux.umount("/sys")
        linux.mount("sysfs", "/sys", "sysfs")
    resolv_conf = resolvconf.path_for(path) if path is not None else None
    if resolv_conf is not None and resolv_conf.exists():  # absent: made before fastnet had a resolver
        linux.mount(str(resolv_conf), str(resolvconf.HOST_RESOLV_CONF), None, linux.MS_BIND)


def resolve_command(argv: tuple[str, ...]) -> str | None:
    """The executable argv[0] names, or None if it cannot be run."""
    if "/" in argv[0]:
        return argv[0] if os.access(argv[0], os.X_OK) else None
    return shutil.which(argv[0])


def spawn(path: Path | None, argv: tuple[str, ...], log_path: Path, env_tag: str) -> tuple[int, int]:
    """Start argv inside the container (path None: in the host's namespace), detached; returns
    (pid, start time)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FASTNET_CONTAINER=env_tag)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: enter(path),
        )
    start = linux.proc_start_time(proc.pid)
    proc.returncode = 0  # never waited on here: the agent's namespace outlives us
    return proc.pid, start or 0


def stop(pid: int, start_time: int) -> None:
    """Stop a command's process group (SIGTERM, then SIGKILL)."""
    if not linux.process_alive(pid, start_time):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not linux.process_alive(pid, start_time):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
