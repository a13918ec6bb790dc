"""Container sandboxes: network namespaces bound under the agent's tmpfs, and the processes
that run inside them (a container's `command:` and `fastnet exec`)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from pyroute2 import IPRoute

from . import linux, procs
from ..datapath.errors import FastnetError

STOP_GRACE = 2.0


class SandboxError(FastnetError):
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


def adopt(fd: int, path: Path) -> None:
    """Bind the namespace open at fd (another runtime's) at path: a reference that keeps it
    visible to fastnet's processes, whatever mount namespace its runtime keeps it in."""
    if path.exists():
        if linux.is_nsfs_mount(str(path)):
            raise SandboxError(f"network namespace {path} already exists")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o444, exist_ok=False)
    try:
        linux.mount(f"/proc/self/fd/{fd}", str(path), None, linux.MS_BIND)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def release(path: Path) -> None:
    """Let go of an adopted namespace: unbind only; its processes are its runtime's (idempotent)."""
    if linux.is_nsfs_mount(str(path)):
        linux.umount(str(path))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def remove(path: Path) -> None:
    """Kill everything inside, unbind and delete (idempotent)."""
    if linux.is_nsfs_mount(str(path)):
        kill_all(path)
        linux.umount(str(path))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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


def enter(netns_path: Path | None, resolv_conf: Path | None, runtime: Path) -> None:
    """Become a process of the container: its network namespace (None: stay in the host's, for
    host mode), and (like `ip netns exec`) a private mount namespace whose /sys shows that
    network namespace's devices and whose /etc/resolv.conf is `resolv_conf` (None: the host's,
    as in Docker's host mode).

    The private mount namespace starts as a copy of the keeper's, whose `runtime` tmpfs holds
    every container's namespace bind mount and the datapath's bpffs. The copy lets go of it:
    a container's process must not keep other containers' namespaces, the pins and the socket
    hooks alive after the keeper is gone."""
    if netns_path is not None:
        linux.setns_path(str(netns_path), linux.CLONE_NEWNET)
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    with contextlib.suppress(OSError):
        linux.umount("/sys")
        linux.mount("sysfs", "/sys", "sysfs")
    if resolv_conf is not None and resolv_conf.exists():  # absent: made before fastnet had a resolver
        linux.mount(str(resolv_conf), "/etc/resolv.conf", None, linux.MS_BIND)
    with contextlib.suppress(OSError):  # not mounted: a caller outside the keeper's mounts
        linux.umount(str(runtime))


def resolve_command(argv: tuple[str, ...]) -> str | None:
    """The executable argv[0] names, or None if it cannot be run (looked up as it will be
    started: in fastnet's PATH, not the caller's)."""
    if "/" in argv[0]:
        return argv[0] if os.access(argv[0], os.X_OK) else None
    return procs.which(argv[0])


def spawn(netns_path: Path | None, resolv_conf: Path | None, runtime: Path, argv: tuple[str, ...], log_fd: int,
          tag: dict[str, str]) -> tuple[int, int]:
    """Start argv inside the container (see enter()), detached, in `/` with a minimal
    environment (control/procs.py) plus `tag`; returns (pid, start time). log_fd (closed here)
    takes its stdout and stderr."""
    env = procs.environment(HOME="/root", **tag)
    try:
        proc = procs.popen(
            list(argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            preexec_fn=lambda: enter(netns_path, resolv_conf, runtime),
        )
    finally:
        os.close(log_fd)
    start = linux.proc_start_time(proc.pid)
    proc.returncode = 0  # never waited on here: the keeper's namespace outlives us
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
