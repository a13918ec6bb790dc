"""Python mirrors of the structs in bpf/include/fastnet/abi.h.

Kept by hand so that they read like the header; `check_layout()` compares each one with
the type bcc compiled from the header (size and every field offset) and the loader refuses
to run on a mismatch, so the header stays the single source of truth.
Byte order: fields the header marks "be" hold network order; conversion happens in maps.py.
"""
from __future__ import annotations

import ctypes
import re
from functools import lru_cache
from pathlib import Path
from .errors import FastnetError

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
ABI_HEADER = BPF_DIR / "include" / "fastnet" / "abi.h"


class Endpoint(ctypes.Structure):
    _fields_ = [("mac", u8 * 6), ("flags", u16), ("ipv4", u32), ("net_id", u32)]


class Network(ctypes.Structure):
    _fields_ = [
        ("gateway", u32),
        ("subnet", u32),
        ("netmask", u32),
        ("gateway_mac", u8 * 6),
        ("flags", u16),
        ("flood_ports", u32),
    ]


class FdbKey(ctypes.Structure):
    _fields_ = [("net_id", u32), ("mac", u8 * 6), ("pad", u16)]


class FdbEntry(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("flags", u32)]


class IpEntry(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("net_id", u32), ("mac", u8 * 6), ("flags", u16)]


class FloodKey(ctypes.Structure):
    _fields_ = [("net_id", u32), ("slot", u32)]


class Metric(ctypes.Structure):
    _fields_ = [("packets", u64), ("bytes", u64)]


class HostConfig(ctypes.Structure):
    _fields_ = [
        ("netns_cookie", u64),
        ("uplink_ifindex", u32),
        ("uplink_ipv4", u32),
        ("snat_port_min", u16),
        ("snat_port_max", u16),
        ("flags", u32),
        ("timeout_tcp_syn", u32),
        ("timeout_tcp_established", u32),
        ("timeout_tcp_closing", u32),
        ("timeout_udp", u32),
        ("timeout_icmp", u32),
        ("timeout_tcp_half_closed", u32),
        ("ct_in_max", u32),
        ("ct_in_new_max", u32),
        ("ct_out_max", u32),
        ("ct_out_new_max", u32),
        ("ct_port_max", u32),
        ("ct_port_new_max", u32),
        ("ct_container_max", u32),
        ("ct_container_new_max", u32),
        ("fib_ifindex", u32),
        ("uplink_mtu", u32),
    ]


class SvcAddrKey(ctypes.Structure):
    _fields_ = [("prefixlen", u32), ("proto", u8), ("addr", u8 * 4), ("port", u8 * 2), ("pad", u8)]


class SvcAnyKey(ctypes.Structure):
    _fields_ = [("prefixlen", u32), ("proto", u8), ("port", u8 * 2), ("pad", u8)]


class Service(ctypes.Structure):
    _fields_ = [
        ("backend_ipv4", u32),
        ("backend_ifindex", u32),
        ("host_port_first", u16),
        ("backend_port_first", u16),
        ("backend_mac", u8 * 6),
        ("flags", u16),
        ("gateway", u32),
        ("gateway_mac", u8 * 6),
        ("pad", u16),
    ]


class CtKey(ctypes.Structure):
    _fields_ = [("saddr", u32), ("daddr", u32), ("sport", u16), ("dport", u16), ("proto", u8), ("pad", u8 * 3)]


class CtEntry(ctypes.Structure):
    _fields_ = [
        ("expires", u64),
        ("created", u64),
        ("status", u64),
        ("to_saddr", u32),
        ("to_daddr", u32),
        ("to_sport", u16),
        ("to_dport", u16),
        ("out_ifindex", u32),
        ("out_dmac", u8 * 6),
        ("out_smac", u8 * 6),
        ("state", u8),
        ("flags", u8),
        ("tcp", u8),
        ("pad", u8),
        ("seq", u32),
        ("ack_expect", u32),
        ("owner", u32),
        ("pad2", u32),
    ]


class NatMapKey(ctypes.Structure):
    _fields_ = [("addr", u32), ("port", u16), ("proto", u8), ("pad", u8)]


class NatMap(ctypes.Structure):
    _fields_ = [("used", u64), ("addr", u32), ("port", u16), ("flags", u16)]


class SockDstKey(ctypes.Structure):
    _fields_ = [("cookie", u64), ("backend_ipv4", u32), ("backend_port", u16), ("pad", u16)]


class SockDst(ctypes.Structure):
    _fields_ = [("orig_ipv4", u32), ("orig_port", u16), ("pad", u16)]


class CtCount(ctypes.Structure):
    _fields_ = [("new_flows", u64), ("flows", u64)]


class CtAdminReq(ctypes.Structure):
    """struct fn_ct_admin_req: the head of fn_ct_admin's test-run "packet" (not a map's)."""

    _fields_ = [("now", u64), ("op", u32), ("count", u32)]


class CtFlow(ctypes.Structure):
    """struct fn_ct_flow: one flow in an FN_CT_ADMIN_ADOPT request."""

    _fields_ = [("fwd_key", CtKey), ("fwd", CtEntry), ("rev_key", CtKey), ("rev", CtEntry)]


class FragKey(ctypes.Structure):
    _fields_ = [("saddr", u32), ("daddr", u32), ("id", u16), ("proto", u8), ("pad", u8)]


class FragPorts(ctypes.Structure):
    _fields_ = [("sport", u16), ("dport", u16)]


class IpvlanPort(ctypes.Structure):
    _fields_ = [("mac", u8 * 6), ("flags", u16), ("ipv4", u32), ("parent_ifindex", u32)]


class IpvlanKey(ctypes.Structure):
    _fields_ = [("parent_ifindex", u32), ("ipv4", u32)]


class IpvlanDst(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("mac", u8 * 6), ("flags", u16)]


class VlanKey(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("vid", u32)]


class Vlan(ctypes.Structure):
    _fields_ = [("ifindex", u32), ("vid", u32)]


class Resolver(ctypes.Structure):
    _fields_ = [("addr", u32), ("udp_port", u16), ("tcp_port", u16)]


# -- overlay networks (bpf/lib/overlay.h) --
class OvlNet(ctypes.Structure):
    _fields_ = [("vni", u32), ("vxlan_ifindex", u32)]


class OvlKey(ctypes.Structure):
    _fields_ = [("vni", u32), ("ipv4", u32)]


class OvlRemote(ctypes.Structure):
    _fields_ = [("host", u32), ("mac", u8 * 6), ("flags", u16)]


@lru_cache(maxsize=1)
def constants() -> dict[str, int]:
    """Every `#define NAME <integer>` of abi.h."""
    found = {}
    for m in re.finditer(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", ABI_HEADER.read_text(), re.M):
        found[m.group(1)] = int(m.group(2), 0)
    return found


ABI_VERSION = constants()["FASTNET_ABI_VERSION"]


def installed_version() -> int:
    """FASTNET_ABI_VERSION of the header on disk now (a long-lived process may predate an
    upgrade: ABI_VERSION is what it was started with)."""
    m = re.search(r"^#define\s+FASTNET_ABI_VERSION\s+(\d+)", ABI_HEADER.read_text(), re.M)
    return int(m.group(1)) if m else ABI_VERSION
FN_FDB_F_GATEWAY = constants()["FN_FDB_F_GATEWAY"]
FN_NET_F_INTERNAL = constants()["FN_NET_F_INTERNAL"]
FN_COUNTER_SLOTS = constants()["FN_COUNTER_SLOTS"]
FN_MAX_FLOOD_PORTS = constants()["FN_MAX_FLOOD_PORTS"]
FN_MAX_ENDPOINTS = constants()["FN_MAX_ENDPOINTS"]
PROGRAMS = {
    "fn_from_container": constants()["FN_PROG_FROM_CONTAINER"],
    "fn_from_uplink": constants()["FN_PROG_FROM_UPLINK"],
    "fn_sock": constants()["FN_PROG_SOCK"],  # the socket hooks count together
    "fn_from_ipvlan": constants()["FN_PROG_FROM_IPVLAN"],
    "fn_from_parent": constants()["FN_PROG_FROM_PARENT"],
    "fn_from_tagger": constants()["FN_PROG_FROM_TAGGER"],
    "fn_from_route": constants()["FN_PROG_FROM_ROUTE"],
    "fn_from_vxlan": constants()["FN_PROG_FROM_VXLAN"],  # overlay
}
TC_PROGRAMS = ("fn_from_container", "fn_from_uplink", "fn_from_ipvlan", "fn_from_parent", "fn_from_tagger",
               "fn_from_route",
               "fn_from_vxlan")  # overlay
# TC programs that are never attached: the control plane runs them with BPF_PROG_TEST_RUN.
ADMIN_PROGRAMS = ("fn_ct_admin",)
# TC programs the others tail-call -> their slot in fn_tails (the loader fills it).
TAIL_PROGRAMS = {"fn_tail_flood": constants()["FN_TAIL_FLOOD"],
                 "fn_tail_overlay": constants()["FN_TAIL_OVERLAY"]}  # overlay
# Every TC program (SCHED_CLS), attached or not.
SCHED_CLS_PROGRAMS = (*TC_PROGRAMS, *ADMIN_PROGRAMS, *TAIL_PROGRAMS)
# Maps only the test build (FN_TEST) has (tests/bpf/test_abi.py checks their mirrors).
TEST_MAPS = ("fn_test_state", "fn_test_ct_req", "fn_test_ct_flow", "fn_test_fib")
FN_IPVLAN_F_L3 = constants()["FN_IPVLAN_F_L3"]
# socket hook -> its attach type (uapi bpf.h enum bpf_attach_type)
SOCK_PROGRAMS = {
    "fn_sock_connect4": 10,  # BPF_CGROUP_INET4_CONNECT
    "fn_sock_sendmsg4": 14,  # BPF_CGROUP_UDP4_SENDMSG
    "fn_sock_recvmsg4": 19,  # BPF_CGROUP_UDP4_RECVMSG
    "fn_sock_getpeername4": 29,  # BPF_CGROUP_INET4_GETPEERNAME
    # IPv6 sockets with IPv4-mapped addresses (their sendto() runs sendmsg4)
    "fn_sock_connect6": 11,  # BPF_CGROUP_INET6_CONNECT
    "fn_sock_recvmsg6": 20,  # BPF_CGROUP_UDP6_RECVMSG
    "fn_sock_getpeername6": 30,  # BPF_CGROUP_INET6_GETPEERNAME
    "fn_sock_bind4": 8,  # BPF_CGROUP_INET4_BIND
    "fn_sock_bind6": 9,  # BPF_CGROUP_INET6_BIND: "::" and IPv4-mapped addresses
}
# fn_pub_ports: the bitmap of published ports, FN_PORT_WORDS u64 words per protocol slot
FN_PORT_WORDS = constants()["FN_PORT_WORDS"]
PORT_SLOTS = {6: constants()["FN_PORT_SLOT_TCP"], 17: constants()["FN_PORT_SLOT_UDP"]}  # IPPROTO_* -> slot

# map name -> (key mirror, value mirror); scalar keys are plain ctypes integers.
MAP_LAYOUTS: dict[str, tuple[type, type]] = {
    "fn_endpoints": (u32, Endpoint),
    "fn_networks": (u32, Network),
    "fn_fdb": (FdbKey, FdbEntry),
    "fn_ipcache": (u32, IpEntry),
    "fn_flood": (FloodKey, u32),
    "fn_metrics": (u32, Metric),
    "fn_config": (u32, HostConfig),
    "fn_host_addrs": (u32, u32),
    "fn_svc_addr": (SvcAddrKey, Service),
    "fn_svc_any": (SvcAnyKey, Service),
    "fn_pub_ports": (u32, u64),
    "fn_tails": (u32, u32),  # PROG_ARRAY: slot -> program
    "fn_ct": (CtKey, CtEntry),
    "fn_nat_maps": (NatMapKey, NatMap),
    "fn_sock_dsts": (SockDstKey, SockDst),
    "fn_ct_budget": (u32, CtCount),
    "fn_frags": (FragKey, FragPorts),
    "fn_ipvlan_ports": (u32, IpvlanPort),
    "fn_ipvlan_addrs": (IpvlanKey, IpvlanDst),
    "fn_vlans": (VlanKey, Vlan),
    "fn_resolvers": (u64, Resolver),
    # overlay networks
    "fn_ovl_nets": (u32, OvlNet),
    "fn_ovl_vnis": (u32, u32),
    "fn_ovl_remotes": (OvlKey, OvlRemote),
}


class AbiMismatch(FastnetError):
    pass


def _layout(t: type) -> tuple:
    if issubclass(t, ctypes.Structure):
        return (ctypes.sizeof(t), tuple((name, getattr(t, name).offset, getattr(t, name).size) for name, *_ in t._fields_))
    return (ctypes.sizeof(t), ())


def check_layout(compiled: dict[str, tuple[type, type]]) -> None:
    """Compare each mirror with the (key, value) types bcc built from the header."""
    problems = []
    for name, (key, value) in MAP_LAYOUTS.items():
        if name not in compiled:
            problems.append(f"{name}: not in the compiled object")
            continue
        ckey, cvalue = compiled[name]
        for part, mine, theirs in (("key", key, ckey), ("value", value, cvalue)):
            if _layout(mine) != _layout(theirs):
                problems.append(f"{name} {part}: mirror {_layout(mine)} != compiled {_layout(theirs)}")
    if problems:
        raise AbiMismatch("datapath/abi.py does not match bpf/include/fastnet/abi.h: " + "; ".join(problems))
