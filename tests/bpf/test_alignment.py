"""Every program passes the verifier with BPF_F_STRICT_ALIGNMENT, as it must on architectures
without efficient unaligned access (the verifier then checks each packet, stack and map
access against its size, with the packet's NET_IP_ALIGN of 2). An Ethernet header starts 2
bytes off a 4-byte boundary: its MACs may be read 2 bytes at a time, never 4."""
from __future__ import annotations

import os

import pytest

from fastnet.datapath import declared, libbpf


@pytest.mark.parametrize("program", [p for p in declared.programs() if p.attach == "TC_INGRESS" or p.is_sock_hook],
                         ids=lambda p: p.name)
def test_program_verifies_with_strict_alignment(test_datapath, program):
    insns = test_datapath.bpf.dump_func(program.name.encode())
    attach_type = program.attach_type() if program.is_sock_hook else 0
    fd = libbpf.prog_load(program.program_type(), program.name[:15], insns, libbpf.BPF_F_STRICT_ALIGNMENT, attach_type)
    os.close(fd)
