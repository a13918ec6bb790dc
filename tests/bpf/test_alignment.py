"""Every program passes the verifier with BPF_F_STRICT_ALIGNMENT, as it must on architectures
without efficient unaligned access (the verifier then checks each packet, stack and map
access against its size, with the packet's NET_IP_ALIGN of 2). An Ethernet header starts 2
bytes off a 4-byte boundary: its MACs may be read 2 bytes at a time, never 4."""
from __future__ import annotations

import os

import pytest

from fastnet.datapath import abi, libbpf

BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 3, 18


@pytest.mark.parametrize("name", [*abi.TC_PROGRAMS, *abi.SOCK_PROGRAMS])
def test_program_verifies_with_strict_alignment(test_datapath, name):
    insns = test_datapath.bpf.dump_func(name.encode())
    if name in abi.SOCK_PROGRAMS:
        prog_type, attach_type = BPF_PROG_TYPE_CGROUP_SOCK_ADDR, abi.SOCK_PROGRAMS[name]
    else:
        prog_type, attach_type = BPF_PROG_TYPE_SCHED_CLS, 0
    fd = libbpf.prog_load(prog_type, name[:15], insns, libbpf.BPF_F_STRICT_ALIGNMENT, attach_type)
    os.close(fd)
