"""The few namespace and mount system calls fastnet needs that have no library wrapper in
Python 3.11 (setns/unshare/mount), and facts about processes read from /proc."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns(fd: int, nstype: int) -> None:
    _check(_libc().setns(fd, nstype), "setns")


def setns_path(path: str, nstype: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd, nstype)
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    _check(_libc().unshare(flags), "unshare")


PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int) -> None:
    """Have the kernel send signum to the calling process when its parent exits."""
    _check(_libc().prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0), "prctl")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc().umount2(target.encode(), flags), f"umount {target}")


def ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def is_nsfs_mount(path: str) -> bool:
    """True when path is a live namespace bind mount (not the empty file a crash leaves)."""
    # A bound namespace is an nsfs inode; the placeholder file lives on the directory's
    # filesystem, so the devices differ exactly when the bind mount is in place.
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: fields follow the last ')'
    return stat[stat.rindex(b")") + 2 :].split()


def proc_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot: with the pid it identifies a process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def process_alive(pid: int, start_time: int) -> bool:
    """The process still runs (a zombie waiting to be reaped does not count)."""
    fields = _stat_fields(pid) if pid > 0 else None
    return bool(fields) and fields[0] != b"Z" and int(fields[19]) == start_time


def pids_in_netns(inode: int) -> list[int]:
    """Every process whose network namespace is the one with this inode."""
    found = []
    target = f"net:[{inode}]"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/net") == target:
                found.append(int(entry))
        except OSError:
            continue
    return found
