"""BPF_PROG_TEST_RUN on the test build of the datapath (bpf/fastnet.c with FN_TEST).

The test build records redirects in fn_test_state instead of performing them and reads its
clock from there (the seam in bpf/lib/helpers.h), so a run reports where a packet would
have gone, at a time the test chooses.
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from . import abi, libbpf
from .loader import compile_datapath

# struct __sk_buff (uapi bpf.h): a run may set only a few fields; we set ingress_ifindex.
SKB_CTX_SIZE = 192
SKB_INGRESS_IFINDEX_OFFSET = 36

TC_ACT = {0: "ok", 2: "shot", 7: "redirect", -1: "unspec"}
REDIRECT_KIND = {
    abi.constants()["FN_REDIRECT_PEER"]: "peer",
    abi.constants()["FN_REDIRECT_EGRESS"]: "egress",
    abi.constants()["FN_REDIRECT_CLONE"]: "clone",
    abi.constants()["FN_REDIRECT_NEIGH"]: "neigh",
}


class TestState(ctypes.Structure):
    """struct fn_test_state (abi.h, test build only)."""

    _fields_ = [
        ("now", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("ifindex", ctypes.c_uint32 * abi.constants()["FN_TEST_MAX_REDIRECTS"]),
        ("kind", ctypes.c_uint32 * abi.constants()["FN_TEST_MAX_REDIRECTS"]),
    ]


@dataclass
class RunResult:
    verdict: str  # ok / shot / redirect
    retval: int
    output: bytes
    redirects: list[tuple[str, int]]  # (peer|egress|clone, ifindex) in order
    duration_ns: int


class TestDatapath:
    """A private, unpinned test build: its own maps, nothing attached anywhere."""

    def __init__(self):
        self.bpf, self.dp = compile_datapath(test_mode=True)

    def close(self) -> None:
        self.dp.close()
        self.bpf.cleanup()

    now_ns = 1_000_000_000_000  # the programs' clock during runs; tests move it forward

    def run(self, prog: str, frame: bytes, ingress_ifindex: int, repeat: int = 1) -> RunResult:
        zero = ctypes.c_uint32(0)
        libbpf.map_update(self.dp.maps["fn_test_state"], zero, TestState(now=self.now_ns))
        ctx = bytearray(SKB_CTX_SIZE)
        struct.pack_into("=I", ctx, SKB_INGRESS_IFINDEX_OFFSET, ingress_ifindex)
        retval, out, duration = libbpf.test_run(self.dp.progs[prog], frame, bytes(ctx), repeat)
        rec = TestState()
        libbpf.map_lookup(self.dp.maps["fn_test_state"], zero, rec)
        redirects = [(REDIRECT_KIND[rec.kind[i]], rec.ifindex[i]) for i in range(min(rec.count, len(rec.kind)))]
        signed = ctypes.c_int32(retval).value
        return RunResult(TC_ACT.get(signed, str(signed)), signed, out, redirects, duration)
