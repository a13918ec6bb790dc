"""Runs the metrics on every testbed, interleaved (A B C A B C ...) and repeated, and reduces
the samples: median, min, max per variant, and the ratios ebpf/iptables and ebpf/direct taken
pair by pair within each repetition (then their median)."""
from __future__ import annotations

import contextlib
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import bpfcost, dns, tools
from .variants import BenchError, FastnetBed, NftBed, Testbed, make_testbeds, EXTRA_PORT, project_yaml, publish_entries

# metric -> (unit, which way is better)
METRICS: dict[str, tuple[str, str]] = {
    "c2c_tcp_rr_p50_us": ("us", "lower"),
    "c2c_tcp_rr_p99_us": ("us", "lower"),
    "c2c_tcp_rr_p50_us_crosscpu": ("us", "lower"),
    "c2c_udp_pps": ("pkt/s", "higher"),
    "c2c_tcp_gbps": ("Gbit/s", "higher"),
    "c2c_tcp_gbps_4": ("Gbit/s", "higher"),
    "pub_tcp_rr_p50_us": ("us", "lower"),
    "pub_crr_per_s": ("conn/s", "higher"),
    "pub_crr_p50_us": ("us", "lower"),
    "pub_tcp_gbps": ("Gbit/s", "higher"),
    "pub_tcp_gbps_nocsum": ("Gbit/s", "higher"),
    "snat_crr_per_s": ("conn/s", "higher"),
    "snat_tcp_gbps": ("Gbit/s", "higher"),
    "host_tcp_rr_p50_us": ("us", "lower"),
    "host_tcp_gbps": ("Gbit/s", "higher"),
    "xhost_tcp_rr_p50_us": ("us", "lower"),
    "xhost_tcp_rr_p99_us": ("us", "lower"),
    "xhost_udp_pps": ("pkt/s", "higher"),
    "xhost_tcp_gbps": ("Gbit/s", "higher"),
    "bpf_testrun_ns_bridge": ("ns", "lower"),
    "bpf_testrun_ns_snat": ("ns", "lower"),
    "bpf_testrun_ns_dnat": ("ns", "lower"),
    "bpf_testrun_ns_uplink_host": ("ns", "lower"),
    "bpf_stats_ns_per_pkt": ("ns", "lower"),
    "bpf_stats_ns_per_xhost_pkt": ("ns", "lower"),
    **dns.METRICS,
}


@dataclass
class Settings:
    quick: bool
    repeat: int
    seconds: float
    scale_ports: tuple[int, ...]
    up_containers: tuple[int, ...]

    @classmethod
    def make(cls, quick: bool, repeat: int | None, tiny: bool = False) -> "Settings":
        if tiny:  # for the test suite: every metric, smallest sizes
            return cls(True, repeat or 1, 1.0, (1, 10), (1, 2))
        if quick:
            return cls(True, repeat or 2, 1.0, (1, 1000), (1, 10))
        return cls(False, repeat or 5, 5.0, (1, 1000, 10000), (1, 10, 50))

    def metric_names(self) -> list[str]:
        names = list(METRICS)
        names += [f"scale_crr_p50_us@{n}" for n in self.scale_ports]
        names += [f"scale_add_port_ms@{n}" for n in self.scale_ports]
        names += [f"scale_reconcile_ms@{n}" for n in self.scale_ports]
        names += [f"up_s@{n}" for n in self.up_containers]
        return names


def unit_of(metric: str) -> tuple[str, str]:
    base = metric.split("@")[0]
    if base in METRICS:
        return METRICS[base]
    return {"scale_crr_p50_us": ("us", "lower"), "scale_add_port_ms": ("ms", "lower"),
            "scale_reconcile_ms": ("ms", "lower"), "up_s": ("s", "lower")}[base]


@dataclass
class Results:
    variants: list[str]
    metrics: list[str]
    # samples[metric][variant][rep]: a number, or None when not measured / not applicable
    samples: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # samples of side measurements, by name
    conditions: dict = field(default_factory=dict)  # how the machine was set for the run

    def __post_init__(self):
        self.samples = {m: {v: [] for v in self.variants} for m in self.metrics}

    def add(self, variant: str, values: dict[str, float | None]) -> None:
        for metric, value in values.items():
            self.samples[metric][variant].append(value)


# ---- one sample of each metric group on one testbed -----------------------------------------
def g_c2c_rr(bed: Testbed, s: Settings, ctx) -> dict:
    r = tools.tcp_rr(bed.c2c, s.seconds)
    return {"c2c_tcp_rr_p50_us": r["p50"], "c2c_tcp_rr_p99_us": r["p99"]}


def g_c2c_rr_cross(bed: Testbed, s: Settings, ctx) -> dict:
    return {"c2c_tcp_rr_p50_us_crosscpu": tools.tcp_rr(bed.c2c, s.seconds, cross_cpu=True)["p50"]}


def g_c2c_udp(bed: Testbed, s: Settings, ctx) -> dict:
    return {"c2c_udp_pps": tools.udp_pps(bed.c2c, s.seconds)}


def g_c2c_gbps(bed: Testbed, s: Settings, ctx) -> dict:
    return {"c2c_tcp_gbps": tools.tcp_gbps(bed.c2c, s.seconds)}


def g_c2c_gbps4(bed: Testbed, s: Settings, ctx) -> dict:
    return {"c2c_tcp_gbps_4": tools.tcp_gbps(bed.c2c, s.seconds, 4)}


def g_pub_rr(bed: Testbed, s: Settings, ctx) -> dict:
    return {"pub_tcp_rr_p50_us": tools.tcp_rr(bed.pub, s.seconds)["p50"]}


def g_pub_crr(bed: Testbed, s: Settings, ctx) -> dict:
    r = tools.crr(bed.pub, s.seconds, ctx["httpd"])
    return {"pub_crr_per_s": r["per_s"], "pub_crr_p50_us": r["p50_us"]}


def g_pub_gbps(bed: Testbed, s: Settings, ctx) -> dict:
    return {"pub_tcp_gbps": tools.tcp_gbps(bed.pub, s.seconds)}


def g_pub_gbps_nocsum(bed: Testbed, s: Settings, ctx) -> dict:
    with tools.tx_checksum_off(bed.pub.client_ns, bed.pub.server_ns):
        return {"pub_tcp_gbps_nocsum": tools.tcp_gbps(bed.pub, s.seconds)}


def g_snat_crr(bed: Testbed, s: Settings, ctx) -> dict:
    return {"snat_crr_per_s": tools.crr(bed.snat, s.seconds, ctx["httpd"])["per_s"]}


def g_snat_gbps(bed: Testbed, s: Settings, ctx) -> dict:
    return {"snat_tcp_gbps": tools.tcp_gbps(bed.snat, s.seconds)}


def g_host_rr(bed: Testbed, s: Settings, ctx) -> dict:
    return {"host_tcp_rr_p50_us": tools.tcp_rr(bed.host_own, s.seconds)["p50"]}


def g_host_gbps(bed: Testbed, s: Settings, ctx) -> dict:
    return {"host_tcp_gbps": tools.tcp_gbps(bed.host_own, s.seconds)}


def g_xhost_rr(bed: Testbed, s: Settings, ctx) -> dict:
    if bed.xhost is None:
        return dict.fromkeys(("xhost_tcp_rr_p50_us", "xhost_tcp_rr_p99_us"))
    r = tools.tcp_rr(bed.xhost, s.seconds)
    return {"xhost_tcp_rr_p50_us": r["p50"], "xhost_tcp_rr_p99_us": r["p99"]}


def g_xhost_udp(bed: Testbed, s: Settings, ctx) -> dict:
    return {"xhost_udp_pps": None if bed.xhost is None else tools.udp_pps(bed.xhost, s.seconds)}


def g_xhost_gbps(bed: Testbed, s: Settings, ctx) -> dict:
    return {"xhost_tcp_gbps": None if bed.xhost is None else tools.tcp_gbps(bed.xhost, s.seconds)}


def g_xhost_bpf(bed: Testbed, s: Settings, ctx) -> dict:
    """fastnet's programs on the way of a frame between hosts: only the ebpf pair has them."""
    hosts = bed.pair.datapath_hosts() if bed.pair is not None else []
    if bed.xhost is None or not hosts:
        return {"bpf_stats_ns_per_xhost_pkt": None}
    per = bpfcost.stats_ns_per_crossing(hosts, lambda: tools.udp_pps(bed.xhost, s.seconds))
    if per is None:
        return {"bpf_stats_ns_per_xhost_pkt": None}
    ctx.setdefault("extra", {}).setdefault("bpf_stats_ns_per_xhost_pkt_by_program", []).append(per)
    return {"bpf_stats_ns_per_xhost_pkt": per["total"]}


def g_bpf(bed: Testbed, s: Settings, ctx) -> dict:
    """The eBPF datapath's own cost: only the ebpf testbed has one."""
    keys = ("bpf_testrun_ns_bridge", "bpf_testrun_ns_snat", "bpf_testrun_ns_dnat", "bpf_testrun_ns_uplink_host",
            "bpf_stats_ns_per_pkt")
    if not (isinstance(bed, FastnetBed) and bed.backend == "ebpf"):
        return dict.fromkeys(keys)
    out = bpfcost.testrun_ns(test_datapath(ctx), runs=500 if s.quick else 2000)
    ctx.setdefault("extra", {}).setdefault("bpf_testrun_ns_bridge_repeat", []).append(out.pop("bpf_testrun_ns_bridge_repeat"))
    out["bpf_stats_ns_per_pkt"] = bpfcost.stats_ns_per_pkt(bed.host, lambda: tools.udp_pps(bed.c2c, s.seconds))
    return out


GROUPS: list[Callable] = [g_c2c_rr, g_c2c_rr_cross, g_c2c_udp, g_c2c_gbps, g_c2c_gbps4, g_pub_rr, g_pub_crr,
                          g_pub_gbps, g_pub_gbps_nocsum, g_snat_crr, g_snat_gbps, g_host_rr, g_host_gbps,
                          g_xhost_rr, g_xhost_udp, g_xhost_gbps, g_xhost_bpf, g_bpf, dns.g_dns]
# Measured in the first repetition only in quick mode: four dnsperf runs per testbed cost more
# than any other group, and quick mode must stay at about 4 minutes.
ONCE_WHEN_QUICK = {dns.g_dns}


# ---- control plane and port scaling (fastnet testbeds only) ----------------------------------
def scale_sample(bed: Testbed, n: int, s: Settings, ctx) -> dict:
    """With n published ports on b: wrk's median latency on the busy port 8080, and the cost of
    publishing one more port (see add_port_ms and the iptables/nftables testbeds).

    The wall time of a whole `fastnet up` is not a measure of it: process start and config
    parsing vary by tens of ms between runs, far more than the write itself."""
    keys = (f"scale_crr_p50_us@{n}", f"scale_add_port_ms@{n}", f"scale_reconcile_ms@{n}")
    if not isinstance(bed, FastnetBed):
        return dict.fromkeys(keys)
    p50 = tools.crr(bed.pub, s.seconds, ctx["httpd"])["p50_us"]
    if isinstance(bed, NftBed):
        return {keys[0]: p50, keys[1]: bed.add_port_ms(), keys[2]: None}
    if bed.backend == "iptables":
        add_ms = bed.up_timing_restores(bed.project, project_yaml(bed.project, bed.net, ports=n, extra=True))
        bed.up(bed.project, project_yaml(bed.project, bed.net, ports=n))  # back to n ports
        return {keys[0]: p50, keys[1]: add_ms, keys[2]: None}
    ebpf = add_port_ms(ctx, n)
    return {keys[0]: p50, keys[1]: ebpf["delta"], keys[2]: ebpf["reconcile"]}


def test_datapath(ctx):
    """One test build of the datapath for the whole run (compiling takes a second or two)."""
    if "tdp" not in ctx:
        from fastnet.datapath.testrun import TestDatapath

        ctx["tdp"] = TestDatapath()
    return ctx["tdp"]


def add_port_ms(ctx, n: int) -> dict[str, float]:
    """ebpf: ms to publish port n+1 with n published, as a delta and as a full reconcile."""
    return bpfcost.add_port_ms(test_datapath(ctx), publish_entries(n), EXTRA_PORT)


def up_sample(bed: Testbed, n: int) -> dict:
    """Wall time of `fastnet up` of a new project with n containers (then `down`, untimed)."""
    key = f"up_s@{n}"
    if not isinstance(bed, FastnetBed) or isinstance(bed, NftBed):  # nftables: the iptables backend
        return {key: None}
    project = f"bup{bed.backend[:3]}"
    try:
        return {key: bed.up(project, project_yaml(project, bed.net + 100, containers=n, ports=0))}
    finally:
        bed.down(project)


# ---- the run ---------------------------------------------------------------------------------
def run_bench(variants: list[str], settings: Settings, progress) -> Results:
    """Build every testbed, measure, tear everything down (also on error or Ctrl-C)."""
    tools.check_tools()
    res = Results(variants, settings.metric_names())
    with tempfile.TemporaryDirectory(prefix="fastnet-bench-") as tmp:
        workdir = Path(tmp)
        # cleanup: what a measurement keeps running for the whole run (closed before teardown)
        ctx = {"httpd": tools.build_httpd(workdir), "cleanup": contextlib.ExitStack()}
        beds = make_testbeds(variants, workdir)
        try:
            res.conditions["idle_polling"] = ctx["cleanup"].enter_context(tools.idle_polling())
            for bed in beds:
                progress(f"setting up {bed.name}")
                bed.setup()
                if bed.pair is not None:
                    progress(f"setting up {bed.name} cross-host")
                    bed.pair.setup()
            measure(beds, settings, res, ctx, progress)
        finally:
            progress("tearing down")
            with contextlib.suppress(Exception):  # the testbeds go whatever happens
                ctx["cleanup"].close()
            for bed in reversed(beds):
                for part in (bed.pair, bed):
                    if part is not None:
                        with contextlib.suppress(Exception):
                            res.notes += part.teardown()
            if "tdp" in ctx:
                ctx.pop("tdp").close()
        res.extra = ctx.get("extra", {})
    return res


def step(label: str, fn: Callable, *args) -> dict:
    """fn(*args), its one-line error prefixed with what was being measured."""
    try:
        return fn(*args)
    except BenchError as exc:
        raise BenchError(f"{label}: {exc}") from None


def measure(beds: list[Testbed], s: Settings, res: Results, ctx, progress) -> None:
    for rep in range(s.repeat):
        for group in GROUPS:
            if rep > 0 and s.quick and group in ONCE_WHEN_QUICK:
                continue
            for bed in beds:
                progress(f"rep {rep + 1}/{s.repeat}: {group.__name__[2:]} on {bed.name}")
                res.add(bed.name, step(f"{group.__name__[2:]} on {bed.name}", group, bed, s, ctx))
    for n in s.scale_ports:
        for bed in beds:
            if isinstance(bed, FastnetBed):
                progress(f"publishing {n} ports on {bed.name}")
                bed.publish(n)
        for rep in range(s.repeat):
            for bed in beds:
                progress(f"rep {rep + 1}/{s.repeat}: {n} published ports on {bed.name}")
                res.add(bed.name, step(f"scale@{n} on {bed.name}", scale_sample, bed, n, s, ctx))
    for n in s.up_containers:
        for rep in range(s.repeat):
            for bed in beds:
                progress(f"rep {rep + 1}/{s.repeat}: up with {n} containers on {bed.name}")
                res.add(bed.name, step(f"up@{n} on {bed.name}", up_sample, bed, n))


# ---- reduction -------------------------------------------------------------------------------
def spread(values: list[float | None]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def pair_ratios(a: list[float | None], b: list[float | None]) -> list[float]:
    return [x / y for x, y in zip(a, b) if x is not None and y not in (None, 0)]


def summarize(res: Results) -> dict[str, dict]:
    """Per metric: unit, better, per-variant spread, and the median pairwise ratios."""
    out = {}
    for metric in res.metrics:
        by_var = res.samples[metric]
        unit, better = unit_of(metric)
        row = {"unit": unit, "better": better, "variants": {v: spread(x) for v, x in by_var.items()}, "ratios": {}}
        for other in ("iptables", "nftables", "direct"):
            if "ebpf" in by_var and other in by_var:
                r = pair_ratios(by_var["ebpf"], by_var[other])
                row["ratios"][f"ebpf/{other}"] = statistics.median(r) if r else None
        out[metric] = row
    return out
