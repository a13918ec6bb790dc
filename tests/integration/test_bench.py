"""`fastnet bench`: the quick mode runs end to end on a tiny setting, its JSON holds every
metric for every variant (not checking the values), and it leaves nothing behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fastnet.control import procs
from harness import FASTNET

pytestmark = pytest.mark.root

METRICS = [
    "c2c_tcp_rr_p50_us", "c2c_tcp_rr_p99_us", "c2c_tcp_rr_p50_us_crosscpu", "c2c_udp_pps", "c2c_tcp_gbps",
    "c2c_tcp_gbps_4", "pub_tcp_rr_p50_us", "pub_crr_per_s", "pub_crr_p50_us", "pub_tcp_gbps", "pub_tcp_gbps_nocsum", "snat_crr_per_s",
    "snat_tcp_gbps", "host_tcp_rr_p50_us", "host_tcp_gbps",
    "xhost_tcp_rr_p50_us", "xhost_tcp_rr_p99_us", "xhost_udp_pps", "xhost_tcp_gbps", "bpf_testrun_ns_bridge", "bpf_testrun_ns_snat", "bpf_testrun_ns_dnat", "bpf_testrun_ns_uplink_host", "bpf_stats_ns_per_pkt",
    "bpf_stats_ns_per_xhost_pkt",
    "scale_crr_p50_us@1", "scale_crr_p50_us@10", "scale_add_port_ms@1", "scale_add_port_ms@10", "scale_reconcile_ms@1", "scale_reconcile_ms@10",
    "up_s@1", "up_s@2",
    "dns_local_qps", "dns_local_p50_us", "dns_local_p99_us", "dns_fwd_qps", "dns_fwd_p50_us", "dns_fwd_p99_us",
]
VARIANTS = ["ebpf", "iptables", "nftables", "direct"]
# metrics a variant has no value for (no control plane, no eBPF datapath)
# (scale_reconcile_ms: the eBPF control plane's full-reconcile path, which the others do not have;
# xhost_: nftables has no cross-host setup of its own)
NOT_APPLICABLE = {"direct": ("bpf_", "scale_", "up_s", "dns_"), "iptables": ("bpf_", "scale_reconcile"),
                  "nftables": ("bpf_", "up_s", "scale_reconcile", "xhost_"), "ebpf": ()}
# the cross-host pair of each variant (control/bench/xhost.py): the same figure measured on every one
XHOST = ("xhost_tcp_rr_p50_us", "xhost_tcp_rr_p99_us", "xhost_udp_pps", "xhost_tcp_gbps")


def bench_namespaces() -> list[str]:
    """fnb-/fnbw-/fnbd- (one-host testbeds), fnbu-/fnbs-/fnbc- (cross-host: underlay, Docker's
    network sandbox, containers)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("fnb")]


def bench_etcds() -> set[int]:
    """etcd processes whose data is in a bench's temporary directory."""
    return {pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if (cl := _cmdline(pid)).startswith("etcd") and "/fastnet-bench-" in cl}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    before = set(bench_namespaces()), bench_etcds()
    cp = subprocess.run([str(FASTNET), "bench", "--quick", "--tiny", "--repeat", "1", "--variants", ",".join(VARIANTS),
                         "--json", str(tmp / "b.json"),
                         "--png", str(tmp / "b.png")], capture_output=True, text=True, timeout=600)
    return cp, tmp, before


def test_quick_bench_runs(quick_run):
    cp, tmp, _ = quick_run
    assert cp.returncode == 0, cp.stderr + cp.stdout
    assert "ebpf/iptables" in cp.stdout and "ebpf/nftables" in cp.stdout
    assert (tmp / "b.png").stat().st_size > 0


def test_json_has_every_metric_for_every_variant(quick_run):
    cp, tmp, _ = quick_run
    data = json.loads((tmp / "b.json").read_text())
    assert data["variants"] == VARIANTS
    assert set(METRICS) <= set(data["metrics"])
    for metric in METRICS:
        row = data["metrics"][metric]
        assert {"unit", "better", "variants", "ratios", "samples"} <= set(row), metric
        for v in VARIANTS:
            samples = row["samples"][v]
            assert len(samples) == 1, (metric, v)
            if not metric.startswith(NOT_APPLICABLE[v]):
                assert isinstance(samples[0], (int, float)), (metric, v, samples)
        if not metric.startswith(("bpf_", "scale_", "up_s")):
            assert set(row["ratios"]) == {f"ebpf/{v}" for v in VARIANTS[1:]}, metric
    for metric in XHOST:  # measured through each variant's own pair of hosts, and in the table
        assert data["metrics"][metric]["ratios"]["ebpf/iptables"] is not None, metric
        assert metric in cp.stdout, metric
    env = data["environment"]
    for key in ("kernel", "cpu_model", "cores", "fastnet", "python", "bcc", "tools", "date"):
        assert key in env, key


def test_bench_leaves_nothing(quick_run):
    """No bench namespace and no etcd of the bench remains, and `fastnet down` left nothing in
    the bench hosts' state dirs (the bench checks them before removing them, and reports what
    it found as notes)."""
    _, tmp, before = quick_run
    assert set(bench_namespaces()) - before[0] == set()
    assert bench_etcds() - before[1] == set()
    assert json.loads((tmp / "b.json").read_text())["notes"] == []


def test_missing_tool_is_a_one_line_error():
    """The bench looks its tools up in fastnet's own PATH, not the caller's (control/procs.py):
    a missing wrk is simulated by hiding it behind /dev/null in a private mount namespace."""
    wrk = shutil.which("wrk", path=procs.SAFE_PATH)
    cp = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                         f'mount --bind /dev/null {wrk} && exec {FASTNET} bench --quick'],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 1
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1, cp.stderr
    assert "wrk" in lines[0] and "apt-get install wrk" in lines[0]
