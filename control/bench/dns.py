"""DNS figures of `fastnet bench`: queries/s and p50/p99 latency of the embedded resolver, for a
local name (container b, answered by the resolver) and for a forwarded name (answered by
dns_upstream.py in the testbed's WORLD, via the host's resolv.conf), asked by dnsperf from
inside container a at 127.0.0.11.

    queries/s  dnsperf with DNSPERF_OUTSTANDING queries in flight (under the resolver's
               per-container forwarding cap, so nothing is dropped by design)
    latency    dnsperf -v with one query in flight: each reply's own latency, no queueing;
               the agent's threads pinned to dnsperf's CPU meanwhile

Only the fastnet testbeds have a resolver; `direct` reports nothing.
"""
from __future__ import annotations

import re
import statistics
from pathlib import Path

from .. import procs
from . import tools
from .variants import WORLD_UPLINK_IP, BenchError, FastnetBed, Testbed

METRICS: dict[str, tuple[str, str]] = {
    "dns_local_qps": ("query/s", "higher"),
    "dns_local_p50_us": ("us", "lower"),
    "dns_local_p99_us": ("us", "lower"),
    "dns_fwd_qps": ("query/s", "higher"),
    "dns_fwd_p50_us": ("us", "lower"),
    "dns_fwd_p99_us": ("us", "lower"),
}
DNSPERF_OUTSTANDING = 32
CLIENT_CPU = 0  # dnsperf's, and the resolver's while it is measured
FORWARDED_NAMES = 1000  # distinct names: nothing on the way may answer from a cache
QPS_RE = re.compile(r"Queries per second:\s+([\d.]+)")
COMPLETED_RE = re.compile(r"Queries completed:\s+(\d+)")
VERBOSE_RE = re.compile(r"^> (\w+) \S+ \S+ ([\d.]+)$", re.M)


# ---- dnsperf --------------------------------------------------------------------------------
def parse_qps(out: str) -> float:
    m, done = QPS_RE.search(out), COMPLETED_RE.search(out)
    if not m or not done or int(done.group(1)) == 0:
        raise BenchError(f"dnsperf completed no queries: {out.strip()[-200:]}")
    return float(m.group(1))


def parse_latencies_us(out: str) -> dict[str, float]:
    """p50/p99 of the per-query latencies `dnsperf -v` prints ("> NOERROR name A 0.000123")."""
    samples = sorted(float(s) * 1e6 for rcode, s in VERBOSE_RE.findall(out) if rcode in ("NOERROR", "NXDOMAIN"))
    if len(samples) < 10:
        raise BenchError(f"dnsperf -v printed {len(samples)} latencies: {out.strip()[-200:]}")
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50": q[49], "p99": q[98]}


def dnsperf(ns: str, datafile: Path, seconds: float, outstanding: int, verbose: bool = False) -> str:
    args = ["dnsperf", "-s", "127.0.0.11", "-d", datafile, "-l", max(1, round(seconds)), "-c", 1,
            "-q", outstanding, "-t", 2]
    return tools.client(ns, *args, *(["-v"] if verbose else []), cpu=CLIENT_CPU, timeout=seconds + 60)


def _measure(ns: str, datafile: Path, seconds: float, prefix: str, resolver_pid: int | None) -> dict[str, float]:
    qps = parse_qps(dnsperf(ns, datafile, seconds, DNSPERF_OUTSTANDING))
    # One query in flight: the resolver's threads on dnsperf's CPU, as tcp_rr pins its client
    # and server together. Left to the scheduler, this p50 came out 85-95 µs or 340-460 µs
    # from one run to the next, on both backends alike (wherever the agent's thread happened
    # to run); pinned to either CPU it is stable.
    with tools.pinned(resolver_pid, CLIENT_CPU):
        lat = parse_latencies_us(dnsperf(ns, datafile, seconds, 1, verbose=True))
    return {f"{prefix}_qps": qps, f"{prefix}_p50_us": lat["p50"], f"{prefix}_p99_us": lat["p99"]}


def g_dns(bed: Testbed, s, ctx) -> dict:
    if not isinstance(bed, FastnetBed):
        return dict.fromkeys(METRICS)
    workdir = Path(ctx["httpd"]).parent  # the bench's temporary directory
    local, forwarded = workdir / "fn-dns-local.txt", workdir / "fn-dns-forwarded.txt"
    if not local.exists():
        local.write_text("b A\n")
        forwarded.write_text("".join(f"n{i}.example.test A\n" for i in range(FORWARDED_NAMES)))
    ns, resolver = bed.container_netns("a"), bed.agent_pid()
    out = _measure(ns, local, s.seconds, "dns_local", resolver)
    _start_upstream(bed, ctx)
    out.update(_measure(ns, forwarded, s.seconds, "dns_fwd", resolver))
    return out


def _start_upstream(bed: FastnetBed, ctx) -> None:
    """The testbed's upstream in its WORLD, started once and kept until the run ends (ctx's
    exit stack): starting a Python process per sample would cost a second each time."""
    started = ctx.setdefault("dns_upstreams", set())
    if bed.name not in started:
        upstream = procs.python("fastnet.control.bench.dns_upstream", WORLD_UPLINK_IP)
        ctx["cleanup"].enter_context(tools.server(bed.world_path, *upstream, port=53, proto="udp"))
        started.add(bed.name)
