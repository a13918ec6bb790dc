"""The bench's output: a rich table, a JSON file (every sample + the environment), a PNG chart."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import procs
from . import tools
from .runner import Results, Settings


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _cell(sp: dict | None) -> str:
    return "n/a" if sp is None else escape(f"{_fmt(sp['median'])} [{_fmt(sp['min'])}-{_fmt(sp['max'])}]")


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.3g}x"


def table(summary: dict, variants: list[str]) -> Table:
    t = Table(title=escape("fastnet bench: median [min-max]; ratios = median of per-repetition ratios"))
    t.add_column("metric")
    t.add_column("unit")
    for v in variants:
        t.add_column(v, justify="right")
    ratios = [f"ebpf/{v}" for v in ("iptables", "nftables", "direct") if v in variants and "ebpf" in variants]
    for r in ratios:
        t.add_column(r, justify="right")
    for metric, row in summary.items():
        arrow = "↓" if row["better"] == "lower" else "↑"
        t.add_row(metric, f"{row['unit']} {arrow}", *(_cell(row["variants"].get(v)) for v in variants),
                  *(_ratio(row["ratios"].get(r)) for r in ratios))
    return t


def print_table(summary: dict, variants: list[str], console: Console) -> None:
    console.print(table(summary, variants))
    console.print("↓ lower is better, ↑ higher is better; n/a: not applicable to that variant "
                  "(direct has no control plane, bpf_* exist only for ebpf, xhost_* have no nftables setup; "
                  "xhost_* in the iptables column: Docker's overlay driver, see docs/benchmarks.md)")


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _bcc_version() -> str | None:
    try:
        import bcc  # noqa: F401  (the datapath's compiler, from the distribution)

        return getattr(bcc, "__version__", "present")
    except ImportError:
        cp = procs.run(["dpkg-query", "-W", "-f=${Version}", "python3-bpfcc"], capture_output=True, text=True)
        return cp.stdout.strip() or None


def environment() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "fastnet": _version("fastnet"),
        "python": sys.version.split()[0],
        "bcc": _bcc_version(),
        "tools": tools.versions(),
        "cpuidle_driver": tools.cpuidle_driver(),
    }


METHODS = {
    "(all)": "idle CPUs poll for the whole run (a PM QoS CPU latency limit of 0 us held open, "
             "environment.idle_polling), so that wake-up latency is the same for every variant and sample",
    "c2c_tcp_rr_*": "sockperf ping-pong over TCP, 64-byte messages, client and server pinned to CPU 0 "
                    "(crosscpu: server on CPU 1); container a -> b on one network",
    "c2c_udp_pps": "iperf3 -u -l 64 -b 0, datagrams received per second (sent - lost)",
    "*_tcp_gbps": "iperf3 single stream (c2c_tcp_gbps_4: -P 4), Gbit/s received",
    "pub_tcp_gbps_nocsum": "pub_tcp_gbps with TX checksum offload off on the client's and the server's "
                           "interfaces (software checksums, no TSO)",
    "pub_*": "client in WORLD to 198.51.100.1:8080 published to b:80 (direct: over the veth)",
    "*_crr_*": "wrk -t1 -c8 -H 'Connection: close' against a tiny C HTTP server (httpd.c): one TCP "
               "connection per request; p50 is wrk's latency (request to response, after connect)",
    "snat_*": "container a to WORLD 198.51.100.2 through SNAT (direct: over the veth)",
    "xhost_*": "container on host 1 to container on host 2 of two simulated hosts on one underlay bridge "
               "(control/bench/xhost.py): tcp_rr as c2c_tcp_rr (sockperf, 64 bytes, CPU 0), udp_pps as c2c_udp_pps "
               "(64-byte payloads), tcp_gbps one iperf3 stream. ebpf: fastnet overlay networks (VXLAN in eBPF, "
               "etcd); iptables column: Docker's overlay driver by hand (bridge and kernel VXLAN device per host, "
               "static FDB and neighbour entries, MTU 1450); direct: the containers routed over the underlay "
               "without encapsulation (MTU 1450); nftables: n/a",
    "scale_crr_p50_us@N": "pub_crr_p50_us with N host ports published on b (single ports and 9-port ranges)",
    "scale_add_port_ms@N": "publishing one more port with N published: ebpf: Maps.sync_services with the "
                           "tables' content known (the delta write: one map update), timed in-process on the "
                           "test build's maps; iptables: total time of the iptables-restore calls of that "
                           "`fastnet up` (a timing shim in PATH)",
    "scale_reconcile_ms@N": "ebpf only: the same change as a full reconcile (tables read back and compared), "
                            "what the first sync of a control-plane process (each `fastnet up` today) pays",
    "nftables": "the iptables testbed with published ports DNATed by one nft map (table ip fnbench, map pub) "
                "in a nat chain before iptables-nft's; scale_add_port_ms: wall time of one `nft add element`",
    "up_s@N": "wall time of `fastnet up` of a new project with N containers on one network",
    "bpf_testrun_ns_*": "median of single BPF_PROG_TEST_RUN runs (repeat=1, fresh buffer) of the test "
                        "build, established TCP flow; includes ~60 ns test-run overhead (see "
                        "extra.bpf_testrun_ns_bridge_repeat for the bridge with repeat=10000)",
    "dns_*": "dnsperf in container a against its resolver 127.0.0.11 (see control/bench/dns.py): qps with 32 "
             "queries in flight; p50/p99 from dnsperf -v with one in flight, the agent pinned to dnsperf's CPU 0; local: b's name, fwd: 1000 "
             "distinct names answered by a dnspython server in WORLD, forwarded by the agent",
    "bpf_stats_ns_per_pkt": "the kernel's run-time statistics (BPF_ENABLE_STATS) on during c2c UDP load: "
                            "delta run_time_ns/run_cnt of fn_from_container on the live ebpf testbed",
    "bpf_stats_ns_per_xhost_pkt": "the same during xhost UDP load on the ebpf pair: run time of every fastnet "
                                  "program of both hosts per frame that crossed (runs of fn_from_vxlan)",
}


def to_json(res: Results, summary: dict, settings: Settings) -> dict:
    return {
        "environment": {**environment(), **res.conditions},
        "settings": {"quick": settings.quick, "repeat": settings.repeat, "seconds": settings.seconds,
                     "scale_ports": list(settings.scale_ports), "up_containers": list(settings.up_containers)},
        "variants": res.variants,
        "methods": METHODS,
        "metrics": {m: {**summary[m], "samples": res.samples[m]} for m in res.metrics},
        "extra": res.extra,
        "notes": res.notes,
    }


def write_json(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_png(summary: dict, variants: list[str], path: Path) -> None:
    """One small bar chart per metric: medians with min-max error bars, ratio labels on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m, row in summary.items() if any(row["variants"].get(v) for v in variants)]
    cols = 4
    rows = max(1, -(-len(metrics) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4, rows * 3), squeeze=False)
    colors = {"ebpf": "tab:green", "iptables": "tab:red", "direct": "tab:gray", "nftables": "tab:blue"}
    for ax, metric in zip(axes.flat, metrics):
        _bars(ax, summary[metric], variants, colors, metric)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax, row: dict, variants: list[str], colors: dict, metric: str) -> None:
    present = [v for v in variants if row["variants"].get(v)]
    med = [row["variants"][v]["median"] for v in present]
    lo = [m - row["variants"][v]["min"] for v, m in zip(present, med)]
    hi = [row["variants"][v]["max"] - m for v, m in zip(present, med)]
    ax.bar(present, med, yerr=[lo, hi], capsize=4, color=[colors.get(v, "tab:purple") for v in present])
    arrow = "lower" if row["better"] == "lower" else "higher"
    ax.set_title(f"{metric}\n({row['unit']}, {arrow} is better)", fontsize=8)
    ax.tick_params(labelsize=7)
    labels = [f"{k} {r:.3g}x" for k, r in row["ratios"].items() if r is not None]
    if med:
        ax.set_ylim(0, max(row["variants"][v]["max"] for v in present) * 1.3)  # room for the labels
    if labels:
        ax.text(0.02, 0.98, "\n".join(labels), transform=ax.transAxes, va="top", fontsize=7)
