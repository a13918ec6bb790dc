"""The log files fastnet writes under a host's directory: root's alone, and bounded.

    <host dir>/logs/agent.log                  the keeper and the agent (restarts, reload errors)
    <host dir>/logs/<project>/<container>.log  a container's command (stdout and stderr)

Files are created 0600 in directories 0700: a command's output and the agent's messages may
name addresses, ports and arguments other users have no business reading.

A writer keeps its file open for as long as it runs (a container's command for days), and
nothing stands between it and the file that could die and take the command with it. So the
size cap is applied from outside, the way logrotate's `copytruncate` does for programs that
cannot reopen their logs: once a file passes LIMIT bytes its last LIMIT bytes are copied to
`<name>.1` (replacing the previous one) and the file is truncated in place. Every writer opened
the file with O_APPEND, so its next write lands at the new end. The agent applies the cap every
few seconds: `<name>.1` holds at most LIMIT bytes, the file what was written since.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

LIMIT = 4 * 1024 * 1024
DIR_MODE, FILE_MODE = 0o700, 0o600


def logs_dir(host_dir: Path) -> Path:
    return host_dir / "logs"


def agent_log(host_dir: Path) -> Path:
    return logs_dir(host_dir) / "agent.log"


def command_log(host_dir: Path, project: str, container: str) -> Path:
    return logs_dir(host_dir) / project / f"{container}.log"


def _private_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)  # made by an older version, or under another umask


def _open_append(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def open_agent_log(host_dir: Path) -> int:
    """A descriptor appending to the agent's log (created root-only)."""
    _private_dir(logs_dir(host_dir))
    return _open_append(agent_log(host_dir))


def open_command_log(host_dir: Path, project: str, container: str) -> int:
    """A descriptor appending to a container command's log (created root-only)."""
    path = command_log(host_dir, project, container)
    _private_dir(logs_dir(host_dir))
    _private_dir(path.parent)
    return _open_append(path)


def cap(path: Path, limit: int = LIMIT) -> bool:
    """copytruncate path if it is larger than limit: its last `limit` bytes become `<name>.1`
    (replacing the previous one), and the file is truncated in place. True if it did."""
    try:
        if path.stat().st_size <= limit:
            return False
        rotated = path.with_name(path.name + ".1")
        tmp = path.with_name(f".{path.name}.1.tmp")
        with open(path, "rb") as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "wb") as dst:
            src.seek(-limit, os.SEEK_END)
            shutil.copyfileobj(src, dst, limit)
        os.replace(tmp, rotated)
        os.truncate(path, 0)
        return True
    except FileNotFoundError:  # removed meanwhile (its container went)
        return False


def cap_all(host_dir: Path, limit: int = LIMIT) -> None:
    """Apply the cap to every log of the host."""
    root = logs_dir(host_dir)
    if not root.is_dir():
        return
    for path in root.rglob("*.log"):
        with contextlib.suppress(OSError):
            cap(path, limit)


def remove_project(host_dir: Path, project: str) -> None:
    """A project's command logs go with the project (`down` leaves no trace)."""
    shutil.rmtree(logs_dir(host_dir) / project, ignore_errors=True)
