"""The per-host keeper: holds what the containers and the datapath live in, and keeps the
agent running. It does nothing else, so that nothing else can make it fail.

Run as `python -I -m fastnet.control.keeper HOST_DIR READY_FD` by control.host.start_keeper(), or
in the foreground by `fastnet keeper` (READY_FD "-") for a service manager.

What it holds: a mount namespace of its own with fastnet's tmpfs (`rt/`: the containers'
network-namespace bind mounts and resolv.conf files) and a private bpffs (`rt/bpf`: the
datapath's programs, maps and socket-hook links), plus a cgroup2 mount for those hooks. Every
fastnet command joins this mount namespace before it touches them; `ip netns exec` would make
them die with the command that made them. They live exactly as long as the keeper.

What it runs: the agent (control/agent.py: DNS resolver, conntrack garbage collection, the
uplink watch), as its only child, in the same namespaces. When the agent exits it is started
again at once -- it adopts the running state: the sockets of the resolver are reopened and the
datapath was never touched. Only an agent that keeps failing on its own (an error status or a
crash signal) within STABLE_AFTER seconds of its start waits before the next start, a delay
that doubles up to MAX_DELAY so that a crash loop does not spin; SIGUSR1 (sent by a fastnet
command that finds no agent) cancels the delay.

Signals: SIGTERM stops the agent and then the keeper (`down` of the last project). SIGINT and
SIGHUP are ignored: the keeper is in a session of its own and outlives the terminal and the
command that started it. Every signal is taken synchronously (sigtimedwait), so no handler runs
in the middle of anything.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import linux, procs

STABLE_AFTER = 5.0  # an agent that lived this long was not crash-looping
FIRST_DELAY, MAX_DELAY = 0.25, 30.0
STOP_GRACE = 2.0
CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1}
KEEPER_FILE, AGENT_FILE = "keeper.json", "agent.json"
# The tmpfs holds a resolv.conf (one page) per container; bind mounts cost no space, and a
# tmpfs allocates only what it holds.
RUNTIME_BYTES = 64 << 20


def prepare_mounts(host_dir: Path) -> None:
    linux.unshare(linux.CLONE_NEWNS)
    # See the machine's later mounts, but keep ours from propagating back out.
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    runtime = host_dir / "rt"
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    linux.mount("fastnet", str(runtime), "tmpfs", 0, f"mode=0700,size={RUNTIME_BYTES}")
    (runtime / "netns").mkdir()
    (runtime / "bpf").mkdir()
    linux.mount("bpf", str(runtime / "bpf"), "bpf", 0, "mode=0700")
    # The socket hooks attach to the root cgroup; `ip netns exec` hides /sys/fs/cgroup.
    (runtime / "cgroup").mkdir()
    linux.mount("cgroup2", str(runtime / "cgroup"), "cgroup2")


def write_record(path: Path, pid: int) -> None:
    record = {"pid": pid, "start_time": linux.proc_start_time(pid), "netns_inode": linux.ns_inode("/proc/self/ns/net")}
    tmp = path.with_name(f".{path.name}.{pid}")
    tmp.write_text(json.dumps(record))
    tmp.rename(path)


def say(message: str) -> None:
    with contextlib.suppress(OSError):  # a full disk must not stop the keeper
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} fastnet keeper: {message}", file=sys.stderr, flush=True)


def _agent_preexec() -> None:
    """In the agent, between fork and exec: signal masks are inherited, and the agent must not
    outlive the keeper (it would hold the keeper's mount namespace, and so everything in it)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    linux.die_with_parent(signal.SIGKILL)


class Keeper:
    def __init__(self, host_dir: Path):
        self.host_dir = host_dir
        self.agent: subprocess.Popen | None = None
        self.started_at = 0.0
        self.delay = 0.0
        self.restart_at: float | None = time.monotonic()  # the first start: now

    def start_agent(self) -> None:
        self.restart_at = None
        self.started_at = time.monotonic()
        with contextlib.suppress(OSError):
            (self.host_dir / AGENT_FILE).unlink(missing_ok=True)
        try:
            self.agent = procs.popen(
                procs.python("fastnet.control.agent", str(self.host_dir)),
                env=dict(os.environ),  # what start_keeper gave the keeper: fastnet's own environment
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr,  # the agent log, which the keeper's own stderr is
                stderr=sys.stderr,
                preexec_fn=_agent_preexec,
            )
        except OSError as exc:  # out of processes or memory: try again later
            self.agent_exited(0, f"could not start ({exc})")

    def agent_exited(self, status: int, why: str | None = None) -> None:
        self.agent = None
        with contextlib.suppress(OSError):
            (self.host_dir / AGENT_FILE).unlink(missing_ok=True)
        lived = time.monotonic() - self.started_at
        # Killed from outside (an operator, a test, the OOM killer) is no reason to wait; an
        # agent failing on its own again and again is.
        failed = status > 0 or -status in CRASH_SIGNALS
        if not failed or lived >= STABLE_AFTER:
            self.delay = 0.0
        else:
            self.delay = min(MAX_DELAY, max(FIRST_DELAY, 2 * self.delay))
        how = why or (f"exited (signal {-status})" if status < 0 else f"exited (status {status})")
        say(f"the agent {how} after {lived:.1f} s; restarting it in {self.delay:.2f} s")
        self.restart_at = time.monotonic() + self.delay

    def reap(self) -> None:
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.agent is not None and pid == self.agent.pid:
                self.agent.returncode = os.waitstatus_to_exitcode(wstatus)
                self.agent_exited(self.agent.returncode)

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        with contextlib.suppress(OSError):
            (self.host_dir / AGENT_FILE).unlink(missing_ok=True)

    def run(self, ready_fd: int | None) -> int:
        self.start_agent()
        if ready_fd is not None:
            os.write(ready_fd, b"ready")
            os.close(ready_fd)
        while True:
            if self.restart_at is not None and time.monotonic() >= self.restart_at:
                self.start_agent()
            if self.restart_at is None:
                info = signal.sigwaitinfo(SIGNALS)
            else:
                info = signal.sigtimedwait(SIGNALS, max(0.0, self.restart_at - time.monotonic()))
            if info is None:  # the restart delay is over
                continue
            if info.si_signo == signal.SIGTERM:
                self.stop()
                return 0
            if info.si_signo == signal.SIGCHLD:
                self.reap()
            elif info.si_signo == signal.SIGUSR1 and self.agent is None:
                self.restart_at = time.monotonic()  # a command is waiting for it: no delay


def main() -> int:
    host_dir = Path(sys.argv[1])
    ready_fd = None if sys.argv[2] == "-" else int(sys.argv[2])  # "-": `fastnet keeper` (systemd)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    prepare_mounts(host_dir)
    write_record(host_dir / KEEPER_FILE, os.getpid())
    say(f"holding {host_dir / 'rt'} (pid {os.getpid()})")
    return Keeper(host_dir).run(ready_fd)


if __name__ == "__main__":
    sys.exit(main())
