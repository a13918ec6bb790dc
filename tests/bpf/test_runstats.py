"""datapath/runstats.py: the kernel counts a program's runs and run time exactly while
statistics are being collected, and the ProgInfo layout reads them back."""
from __future__ import annotations

import os

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from fastnet.datapath import libbpf, runstats

from conftest import PROG, reset
from topology import HOST, NETWORKS, PORTS

RUNS = 50


def prog_id(datapath, name: str) -> int:
    return libbpf.prog_info(datapath.dp.progs[name]).id


def stats_enabled_globally() -> bool:
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        return f.read().strip() != "0"


def test_counts_runs_only_while_collecting(test_datapath):
    reset(test_datapath, NETWORKS, PORTS, HOST, [])
    a, b = PORTS[0], PORTS[1]
    frame = bytes(Ether(src=a.mac, dst=b.mac) / IP(src=str(a.ipv4), dst=str(b.ipv4)) / UDP(sport=1, dport=2))
    ids = {prog_id(test_datapath, PROG)}
    with runstats.collecting():
        time0, runs0 = runstats.totals(ids)
        for _ in range(RUNS):
            assert test_datapath.run(PROG, frame, a.ifindex).verdict == "redirect"
        time1, runs1 = runstats.totals(ids)
    assert runs1 - runs0 == RUNS
    assert time1 > time0
    if not stats_enabled_globally():  # someone else's kernel.bpf_stats_enabled=1 would count too
        test_datapath.run(PROG, frame, a.ifindex)
        assert runstats.totals(ids) == (time1, runs1)


def test_a_program_that_is_gone_counts_nothing(test_datapath):
    assert runstats.totals({0x7FFFFFF0}) == (0, 0)


def test_prog_info_names_the_program(test_datapath):
    info = libbpf.prog_info(test_datapath.dp.progs[PROG])
    assert info.name.decode() == PROG[:15]  # the kernel keeps 15 characters
    assert info.id > 0
    fd = libbpf.prog_fd_by_id(info.id)
    os.close(fd)
