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


class SockOrig(ctypes.Structure):
    """struct fn_sock_orig: the programs' own (no Python reads it); tests/bpf/test_declared.py
    checks its size against the kernel's map, as bcc 0.26 cannot open an SK_STORAGE map."""

    _fields_ = [("orig_ipv4", u32), ("backend_ipv4", u32), ("orig_port", u16), ("backend_port", u16), ("flags", u32)]


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
FN_IPVLAN_F_L3 = constants()["FN_IPVLAN_F_L3"]
# fn_pub_ports: the bitmap of published ports, FN_PORT_WORDS u64 words per protocol slot
FN_PORT_WORDS = constants()["FN_PORT_WORDS"]
PORT_SLOTS = {6: constants()["FN_PORT_SLOT_TCP"], 17: constants()["FN_PORT_SLOT_UDP"]}  # IPPROTO_* -> slot


class TestState(ctypes.Structure):
    """struct fn_test_state (abi.h, test build only: datapath/testrun.py)."""

    _fields_ = [
        ("now", u64),
        ("count", u32),
        ("pad", u32),
        ("ifindex", u32 * constants()["FN_TEST_MAX_REDIRECTS"]),
        ("kind", u32 * constants()["FN_TEST_MAX_REDIRECTS"]),
        ("mtu_ifindex", u32 * constants()["FN_TEST_MAX_MTUS"]),
        ("mtu", u32 * constants()["FN_TEST_MAX_MTUS"]),
        ("linear", u32),
        ("pulled", u32),
        ("vlan", u32),
        ("pad2", u32),
        ("tun_id", u32),
        ("tun_remote", u32),  # host order, as struct bpf_tunnel_key
    ]


class TestFibKey(ctypes.Structure):
    """struct fn_test_fib_key (abi.h, test build only)."""

    _fields_ = [("prefixlen", u32), ("addr", ctypes.c_uint8 * 4)]


class TestRoute(ctypes.Structure):
    """struct fn_test_route (abi.h, test build only)."""

    _fields_ = [("ret", ctypes.c_int32), ("ifindex", u32), ("src", u32), ("pad", u32)]


# C type (as fastnet/maps.h spells a map's key or value) -> its mirror. Which map holds
# which type is declared only there (datapath/declared.py derives the pairs).
MIRRORS: dict[str, type] = {
    "__u32": u32,
    "__be32": u32,
    "__u64": u64,
    "int": ctypes.c_int32,
    "struct fn_endpoint": Endpoint,
    "struct fn_network": Network,
    "struct fn_fdb_key": FdbKey,
    "struct fn_fdb_entry": FdbEntry,
    "struct fn_ip_entry": IpEntry,
    "struct fn_flood_key": FloodKey,
    "struct fn_metric": Metric,
    "struct fn_host_config": HostConfig,
    "struct fn_svc_addr_key": SvcAddrKey,
    "struct fn_svc_any_key": SvcAnyKey,
    "struct fn_service": Service,
    "struct fn_ct_key": CtKey,
    "struct fn_ct_entry": CtEntry,
    "struct fn_ct_count": CtCount,
    "struct fn_ct_admin_req": CtAdminReq,
    "struct fn_ct_flow": CtFlow,
    "struct fn_nat_map_key": NatMapKey,
    "struct fn_nat_map": NatMap,
    "struct fn_frag_key": FragKey,
    "struct fn_frag_ports": FragPorts,
    "struct fn_sock_dst_key": SockDstKey,
    "struct fn_sock_dst": SockDst,
    "struct fn_sock_orig": SockOrig,
    "struct fn_ipvlan_port": IpvlanPort,
    "struct fn_ipvlan_key": IpvlanKey,
    "struct fn_ipvlan_dst": IpvlanDst,
    "struct fn_vlan_key": VlanKey,
    "struct fn_vlan": Vlan,
    "struct fn_resolver": Resolver,
    "struct fn_ovl_net": OvlNet,
    "struct fn_ovl_key": OvlKey,
    "struct fn_ovl_remote": OvlRemote,
    "struct fn_test_state": TestState,
    "struct fn_test_fib_key": TestFibKey,
    "struct fn_test_route": TestRoute,
}


class AbiMismatch(FastnetError):
    pass


def _layout(t: type) -> tuple:
    if issubclass(t, ctypes.Structure):
        return (ctypes.sizeof(t), tuple((name, getattr(t, name).offset, getattr(t, name).size) for name, *_ in t._fields_))
    return (ctypes.sizeof(t), ())


def check_layout(compiled: dict[str, tuple[type, type]], layouts: dict[str, tuple[type, type]]) -> None:
    """Compare each map's (key, value) mirrors in `layouts` (datapath/declared.py's
    MAP_LAYOUTS) with the types bcc built from the header."""
    problems = []
    for name, (key, value) in layouts.items():
        if name not in compiled:
            problems.append(f"{name}: not in the compiled object")
            continue
        ckey, cvalue = compiled[name]
        for part, mine, theirs in (("key", key, ckey), ("value", value, cvalue)):
            if _layout(mine) != _layout(theirs):
                problems.append(f"{name} {part}: mirror {_layout(mine)} != compiled {_layout(theirs)}")
    if problems:
        raise AbiMismatch("datapath/abi.py does not match bpf/include/fastnet/abi.h: " + "; ".join(problems))
