"""Terminal output (rich)."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Tables are read by people and by scripts piping them: never fold rows to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=250)


def print_up(result) -> None:
    lines = result.plan.summary()
    if not lines:
        console.print(f"project [bold]{result.project}[/] is up to date")
        return
    for line in lines:
        console.print(line, markup=False, highlight=False)
    n = len(result.state.spec.containers)
    console.print(f"project [bold]{result.project}[/] is up: {n} container{'s' if n != 1 else ''}")


def print_ps(inv: dict) -> None:
    if not inv["projects"]:
        console.print("no fastnet projects on this host")
        return
    table = Table(box=None, header_style="bold")
    for col in ("PROJECT", "CONTAINER", "ORIGIN", "BACKEND", "MODE", "NETWORKS", "DRIVER", "PORTS", "COMMAND"):
        table.add_column(col)
    for p in inv["projects"].values():
        for c in p["containers"].values():
            nets = ", ".join(f"{n}={v['ipv4']}/{v['prefixlen']}" for n, v in c["networks"].items()) or "-"
            drivers = ", ".join(f"{n}={v.get('driver') or '?'}" for n, v in c["networks"].items()) or "-"
            if c["command"] is None:
                cmd = "-"
            else:
                state = "running" if c["command"]["running"] else "exited"
                cmd = f"{' '.join(c['command']['argv'])} ({state})"
            ports = ", ".join(c.get("publish", [])) or "-"
            table.add_row(p["name"], c["name"], c.get("origin", "file"), p["backend"], c.get("mode", "bridge"), nets, drivers, ports, cmd)
    console.print(table)
    for name, up in inv.get("uplinks", {}).items():
        if up["state"] != "up" or not up["ipv4"]:
            why = {"missing": "no such interface", "down": "down"}.get(up["state"], "no IPv4 address")
            console.print(f"uplink {name}: {why}: containers cannot reach the outside and published ports "
                          "do not answer from it", markup=False, highlight=False)
    for backend, programs in inv["counters"].items():
        if "error" in programs:
            console.print(f"{backend} datapath: unreadable: {programs['error']}", markup=False)
            continue
        for prog, counters in programs.items():
            if counters:
                parts = ", ".join(f"{k} {v['packets']}" for k, v in sorted(counters.items()))
                console.print(f"{backend} {prog}: {parts}", markup=False, highlight=False)


def _ep(addr: str, port: int) -> str:
    return f"{addr}:{port}"


def print_conntrack(flows: list[dict]) -> None:
    if not flows:
        console.print("no tracked connections")
        return
    table = Table(box=None, header_style="bold")
    for col in ("PROTO", "KIND", "STATE", "ORIGINAL", "REPLY", "AGE", "EXPIRES IN"):
        table.add_column(col)
    for f in flows:
        o, r = f["original"], f["reply"]
        table.add_row(
            f["proto"],
            f["kind"],
            f["state"] + ("" if f["confirmed"] else " (unconfirmed)"),
            f"{_ep(o['src'], o['sport'])} -> {_ep(o['dst'], o['dport'])}",
            f"{_ep(r['src'], r['sport'])} -> {_ep(r['dst'], r['dport'])}",
            f"{f['age_s']:.0f}s",
            f"{f['expires_in_s']:.0f}s",
        )
    console.print(table)
