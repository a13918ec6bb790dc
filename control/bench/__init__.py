"""`fastnet bench`: fastnet's eBPF datapath against the Docker-style iptables backend and a
bare veth, measured side by side in one run (see docs/benchmarks.md).

    variants.py  the testbeds (namespaces, `fastnet up`), torn down on any exit
    tools.py     sockperf / iperf3 / wrk / httpd.c in namespaces, and their parsing
    bpfcost.py   the datapath's own cost: BPF_PROG_TEST_RUN, run-time statistics under load,
                 publishing one more port
    dns.py       the embedded resolver under dnsperf (dns_upstream.py: the testbed's upstream)
    runner.py    interleaving, repetitions, medians and pairwise ratios
    report.py    rich table, JSON, PNG
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

from .variants import BenchError

ALL_VARIANTS = ("ebpf", "iptables", "nftables", "direct")
QUICK_VARIANTS = ("ebpf", "iptables", "direct")  # nftables only on request: quick stays at about 4 minutes


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def bench(quick: bool, variants: list[str] | None, json_path: str | None, png_path: str | None, repeat: int | None,
          tiny: bool = False) -> dict:
    """Run the bench, print progress and the table; write JSON/PNG if asked. Returns the JSON data."""
    from rich.console import Console
    from rich.markup import escape

    from . import report, runner

    console = Console()
    if not console.is_terminal:  # piped or logged: wide enough for the whole table
        console = Console(width=200)
    settings = runner.Settings.make(quick, repeat, tiny)
    # SIGTERM tears down like Ctrl-C (the testbeds are removed in run_bench's finally)
    signal.signal(signal.SIGTERM, _interrupt)
    chosen = list(variants or (QUICK_VARIANTS if quick else ALL_VARIANTS))
    start = time.monotonic()
    with console.status("starting") as status:
        def progress(msg: str) -> None:
            status.update(escape(f"[{time.monotonic() - start:5.0f}s] {msg}"))
            if not console.is_terminal or msg.startswith(("setting up", "tearing", "publishing")):
                console.log(escape(msg))

        res = runner.run_bench(chosen, settings, progress)
    summary = runner.summarize(res)
    report.print_table(summary, chosen, console)
    for note in res.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    data = report.to_json(res, summary, settings)
    data["elapsed_s"] = round(time.monotonic() - start, 1)
    if json_path:
        report.write_json(data, Path(json_path))
    if png_path:
        report.write_png(summary, chosen, Path(png_path))
    console.print(f"done in {data['elapsed_s']} s")
    return data


__all__ = ["bench", "BenchError", "ALL_VARIANTS"]
