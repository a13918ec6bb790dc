"""The load generators (sockperf, iperf3, wrk, a tiny C HTTP server) run inside namespaces,
and the parsing of their output. Every function returns plain numbers."""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

from .. import procs
from .variants import BenchError, Endpoint

# tool -> Debian package that provides it
REQUIRED = {"sockperf": "sockperf", "iperf3": "iperf3", "wrk": "wrk", "cc": "gcc", "taskset": "util-linux",
            "nsenter": "util-linux", "ip": "iproute2", "bridge": "iproute2", "ethtool": "ethtool", "dnsperf": "dnsperf",
            "ping": "iputils-ping", "etcd": "etcd-server"}
HTTPD_SOURCE = Path(__file__).resolve().parent / "httpd.c"


def check_tools() -> None:
    """A one-line error naming the package to install for the first missing tool."""
    for tool, package in REQUIRED.items():
        if procs.which(tool) is None:
            raise BenchError(f"{tool} not found: install the Debian package {package!r} (apt-get install {package})")


def build_httpd(workdir: Path) -> str:
    out = workdir / "fn-bench-httpd"
    cp = procs.run(["cc", "-O2", "-o", str(out), str(HTTPD_SOURCE)], capture_output=True, text=True)
    if cp.returncode != 0:
        raise BenchError(f"cc {HTTPD_SOURCE.name} failed: {cp.stderr.strip().splitlines()[-1:]}")
    return str(out)


def in_ns(ns: str, *cmd: str, cpu: int | None = None) -> list[str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return ["nsenter", f"--net={ns}", *pin, *map(str, cmd)]


def client(ns: str, *cmd: str, cpu: int | None = None, timeout: float = 120) -> str:
    cp = procs.run(in_ns(ns, *cmd, cpu=cpu), capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        err = (cp.stderr or cp.stdout).strip().splitlines()
        raise BenchError(f"{cmd[0]} exited {cp.returncode}: {err[-1] if err else ''}")
    return cp.stdout


def wait_listening(ns: str, port: int, proto: str, proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Poll `ss` in ns until something listens on port."""
    flag = "-ltnH" if proto == "tcp" else "-lunH"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise BenchError(f"{proc.args[2:]} exited {proc.returncode}: {err[-1] if err else ''}")
        out = procs.run(in_ns(ns, "ss", flag, f"sport = :{port}"), capture_output=True, text=True).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise BenchError(f"{proc.args[2:]}: nothing listens on {proto} port {port} after {timeout:.0f} s")


@contextlib.contextmanager
def server(ns: str, *cmd: str, port: int, proto: str = "tcp", cpu: int | None = None):
    """A server process (in its own process group) for the body; killed with its children."""
    p = procs.popen(in_ns(ns, *cmd, cpu=cpu), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        if cmd[0] == "iperf3":  # its UDP tests too listen on a TCP control port first
            proto = "tcp"
        elif proto == "udp":
            time.sleep(0.3)  # a bound UDP socket is not yet a server that answers
        wait_listening(ns, port, proto, p)
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


PM_QOS_CPU_LATENCY = Path("/dev/cpu_dma_latency")
CPUIDLE = Path("/sys/devices/system/cpu/cpuidle")


def cpuidle_driver() -> str | None:
    with contextlib.suppress(OSError):
        return (CPUIDLE / "current_driver").read_text().strip()
    return None


@contextlib.contextmanager
def idle_polling():
    """Idle CPUs poll instead of sleeping for the body: a PM QoS CPU wake-up latency limit of
    0 µs, held by an open fd (as tuned's latency-performance profile does). Without it, how
    fast a sleeping CPU wakes decides every latency the bench measures; in a VM with adaptive
    halt-polling (cpuidle-haltpoll) that comes out bimodal, e.g. wrk's median 70 or 110 µs
    from one run to the next on the same path. Yields whether the limit is held."""
    try:
        fd = os.open(PM_QOS_CPU_LATENCY, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        yield False
        return
    try:
        os.write(fd, struct.pack("=i", 0))
        yield True
    finally:
        os.close(fd)


@contextlib.contextmanager
def pinned(pid: int | None, cpu: int):
    """Every thread of process pid on one CPU for the body, then back where each was. For a
    process the bench does not start itself (the agent): the tools' own are pinned by taskset."""
    if pid is None:
        yield
        return
    before = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                before[int(tid)] = os.sched_getaffinity(int(tid))
                os.sched_setaffinity(int(tid), {cpu})
    except FileNotFoundError:
        raise BenchError(f"process {pid} is gone") from None
    try:
        yield
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


# ---- sockperf: TCP request/response latency -------------------------------------------------
PCT_RE = re.compile(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)")


def parse_sockperf(out: str) -> dict[str, float]:
    """{"p50": usec, "p99": usec} from sockperf ping-pong's percentile lines."""
    found = {float(p): float(v) for p, v in PCT_RE.findall(out)}
    if 50.0 not in found or 99.0 not in found:
        raise BenchError(f"sockperf printed no percentiles: {out.strip()[-200:]}")
    return {"p50": found[50.0], "p99": found[99.0]}


def tcp_rr(ep: Endpoint, seconds: float, cross_cpu: bool = False) -> dict[str, float]:
    """sockperf ping-pong over TCP; client and server on CPU 0 (or server on CPU 1)."""
    srv_cpu = 1 if cross_cpu and os.cpu_count() > 1 else 0
    port, listen = ep.ports("sockperf")
    with server(ep.server_ns, "sockperf", "sr", "--tcp", "-i", "0.0.0.0", "-p", listen, port=listen, cpu=srv_cpu):
        out = client(ep.client_ns, "sockperf", "pp", "--tcp", "-i", ep.ip, "-p", port, "-t", max(1, round(seconds)),
                     "-m", 64, cpu=0)
    return parse_sockperf(out)


# ---- iperf3: throughput and UDP packet rate ------------------------------------------------
def parse_iperf3_tcp(out: str) -> float:
    """Gbit/s received."""
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def parse_iperf3_udp(out: str) -> float:
    """Packets per second that arrived (sent minus lost)."""
    s = json.loads(out)["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"]


def iperf3(ep: Endpoint, seconds: float, *args: str) -> str:
    port, listen = ep.ports("iperf3")
    with server(ep.server_ns, "iperf3", "-s", "-1", "-p", listen, port=listen):
        return client(ep.client_ns, "iperf3", "-c", ep.ip, "-p", port, "-t", max(1, round(seconds)), "-J", *args)


def tcp_gbps(ep: Endpoint, seconds: float, streams: int = 1) -> float:
    return parse_iperf3_tcp(iperf3(ep, seconds, "-P", str(streams)))


@contextlib.contextmanager
def tx_checksum_off(*namespaces: str):
    """TX checksum offload (and with it TSO/GSO) off on every interface but lo of the namespaces
    for the body: the senders compute every checksum in software and no segment is larger than
    the MTU, so whatever rewrites packets on the way pays for real checksums on each of them."""
    changed = []
    try:
        for ns in namespaces:
            for ifname in interfaces(ns):
                client(ns, "ethtool", "-K", ifname, "tx", "off")
                changed.append((ns, ifname))
        yield
    finally:
        for ns, ifname in changed:
            procs.run(in_ns(ns, "ethtool", "-K", ifname, "tx", "on"), capture_output=True)


def interfaces(ns: str) -> list[str]:
    links = json.loads(client(ns, "ip", "-j", "link", "show"))
    return [link["ifname"] for link in links if link["ifname"] != "lo"]


def udp_pps(ep: Endpoint, seconds: float) -> float:
    return parse_iperf3_udp(iperf3(ep, seconds, "-u", "-l", "64", "-b", "0"))


# ---- wrk: connections per second (Connection: close) ---------------------------------------
UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def _us(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise BenchError(f"wrk: unreadable latency {text!r}")
    return float(m.group(1)) * UNIT_US[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    """{"per_s": requests (= connections) per second, "p50_us": median latency}."""
    rate = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    if not rate or not p50:
        raise BenchError(f"wrk printed no rate/latency: {out.strip()[-200:]}")
    return {"per_s": float(rate.group(1)), "p50_us": _us(p50.group(1))}


def crr(ep: Endpoint, seconds: float, httpd: str, connections: int = 8) -> dict[str, float]:
    """wrk with `Connection: close` (one TCP connection per request) against the C server."""
    port, listen = ep.ports("http")
    with server(ep.server_ns, httpd, listen, 1, port=listen, cpu=1 if os.cpu_count() > 1 else 0):
        out = client(ep.client_ns, "wrk", "-t", 1, "-c", connections, "-d", f"{max(1, round(seconds))}s", "--latency",
                     "-H", "Connection: close", f"http://{ep.ip}:{port}/", cpu=0)
    return parse_wrk(out)


def versions() -> dict[str, str]:
    """First line of each tool's version output."""
    cmds = {"sockperf": ["sockperf", "--version"], "iperf3": ["iperf3", "--version"], "wrk": ["wrk", "-v"],
            "bpftool": ["bpftool", "--version"], "cc": ["cc", "--version"]}
    out = {}
    for name, cmd in cmds.items():
        with contextlib.suppress(OSError):
            cp = procs.run(cmd, capture_output=True, text=True)
            text = (cp.stdout or cp.stderr).strip().splitlines()
            out[name] = text[0] if text else ""
    return out
