"""BPF_PROG_TEST_RUN on the test build of the datapath (bpf/fastnet.c with FN_TEST).

The test build records redirects in fn_test_state instead of performing them, reads its
clock and the device MTUs from there and routes by fn_test_fib (the seam in
bpf/lib/helpers.h), so a run reports where a packet would have gone, at a time and on a
routing table the test chooses.
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from . import abi, libbpf
from .loader import compile_datapath

# struct __sk_buff (uapi bpf.h): a run may set only a few fields; we set ingress_ifindex.
SKB_CTX_SIZE = 192
SKB_INGRESS_IFINDEX_OFFSET = 36
SKB_GSO_SEGS_OFFSET, SKB_GSO_SIZE_OFFSET = 164, 176

TC_ACT = {0: "ok", 2: "shot", 7: "redirect", -1: "unspec"}
REDIRECT_KIND = {
    abi.constants()["FN_REDIRECT_PEER"]: "peer",
    abi.constants()["FN_REDIRECT_EGRESS"]: "egress",
    abi.constants()["FN_REDIRECT_CLONE"]: "clone",
    abi.constants()["FN_REDIRECT_NEIGH"]: "neigh",
}


MAX_MTUS = abi.constants()["FN_TEST_MAX_MTUS"]
FN_TEST_VLAN = abi.constants()["FN_TEST_VLAN"]
# the mirrors of the test build's structs live with the others, checked the same way
TestState, TestFibKey, TestRoute = abi.TestState, abi.TestFibKey, abi.TestRoute

# enum bpf_fib_lookup_ret (uapi bpf.h): what a route of the test's table answers
FIB_SUCCESS, FIB_BLACKHOLE, FIB_UNREACHABLE, FIB_PROHIBIT, FIB_NOT_FWDED = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class Route:
    """One entry of the test's routing table: `prefix` leaves by `ifindex` from `src`, or is
    answered `ret` (FIB_*: local addresses FIB_NOT_FWDED, unreachable routes FIB_UNREACHABLE)."""

    prefix: IPv4Network
    ret: int = FIB_SUCCESS
    ifindex: int = 0
    src: IPv4Address | None = None


@dataclass
class RunResult:
    verdict: str  # ok / shot / redirect
    retval: int
    output: bytes
    redirects: list[tuple[str, int]]  # (peer|egress|clone, ifindex) in order
    duration_ns: int
    pulled: int = 0  # the length the program's last bpf_skb_pull_data asked for (0: none)
    tunnel: tuple[int, IPv4Address] | None = None  # (VNI, remote) of the tunnel key it set or read


class TestDatapath:
    """A private, unpinned test build: its own maps, nothing attached anywhere."""

    def __init__(self, defines: tuple[tuple[str, int], ...] = ()):
        self.bpf, self.dp = compile_datapath(test_mode=True, defines=defines)
        self.mtus: dict[int, int] = {}

    def close(self) -> None:
        self.dp.close()
        self.bpf.cleanup()

    now_ns = 1_000_000_000_000  # the programs' clock during runs; tests move it forward

    def set_routes(self, routes: list[Route]) -> None:
        """Make fn_test_fib hold exactly `routes` (longest prefix wins, as in the kernel)."""
        fd = self.dp.maps["fn_test_fib"]
        for key in libbpf.map_keys(fd, TestFibKey):
            libbpf.map_delete(fd, key)
        for r in routes:
            key = TestFibKey(prefixlen=r.prefix.prefixlen, addr=(ctypes.c_uint8 * 4)(*r.prefix.network_address.packed))
            src = struct.unpack("=I", r.src.packed)[0] if r.src else 0
            libbpf.map_update(fd, key, TestRoute(ret=r.ret, ifindex=r.ifindex, src=src))

    def run(self, prog: str, frame: bytes, ingress_ifindex: int, repeat: int = 1, *, linear: int = 0,
            vlan: int | None = None, gso_size: int = 0,
            tunnel: tuple[int, IPv4Address] | None = None) -> RunResult:
        """One run of prog on frame. linear: only that many bytes of it in the skb's linear
        part (until the program pulls); vlan: the TCI of an 802.1Q tag the stack took out of
        the frame; gso_size: the frame is a GSO super-packet of segments that long; tunnel:
        the (VNI, remote) of the tunnel key the skb arrives with (a VXLAN device's)."""
        zero = ctypes.c_uint32(0)
        state = TestState(now=self.now_ns, linear=linear, vlan=0 if vlan is None else FN_TEST_VLAN | vlan)
        if tunnel is not None:
            state.tun_id, state.tun_remote = tunnel[0], int(tunnel[1])
        assert len(self.mtus) <= MAX_MTUS, self.mtus
        for i, (ifindex, mtu) in enumerate(sorted(self.mtus.items())):
            state.mtu_ifindex[i], state.mtu[i] = ifindex, mtu
        libbpf.map_update(self.dp.maps["fn_test_state"], zero, state)
        ctx = bytearray(SKB_CTX_SIZE)
        struct.pack_into("=I", ctx, SKB_INGRESS_IFINDEX_OFFSET, ingress_ifindex)
        if gso_size:
            struct.pack_into("=I", ctx, SKB_GSO_SIZE_OFFSET, gso_size)
            struct.pack_into("=I", ctx, SKB_GSO_SEGS_OFFSET, -(-len(frame) // gso_size))
        retval, out, duration = libbpf.test_run(self.dp.progs[prog], frame, bytes(ctx), repeat)
        rec = TestState()
        libbpf.map_lookup(self.dp.maps["fn_test_state"], zero, rec)
        redirects = [(REDIRECT_KIND[rec.kind[i]], rec.ifindex[i]) for i in range(min(rec.count, len(rec.kind)))]
        signed = ctypes.c_int32(retval).value
        tun = (rec.tun_id, IPv4Address(rec.tun_remote)) if rec.tun_remote else None
        return RunResult(TC_ACT.get(signed, str(signed)), signed, out, redirects, duration, rec.pulled, tun)
