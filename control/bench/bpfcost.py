"""What the eBPF datapath costs per packet, measured in the kernel:

- bpf_testrun_ns_{bridge,snat,dnat}: BPF_PROG_TEST_RUN (repeat) on the test build of the
  datapath (datapath.testrun.TestDatapath), maps set to a small topology below; one TCP
  data segment container -> container on one network (bridge), container -> outside (SNAT,
  an established flow), outside -> published port (DNAT, an established flow).
- bpf_testrun_ns_uplink_host: the same for a TCP segment of the host's own (to the uplink's
  address, no flow, no published port): what fastnet adds to every packet of the host's.
- bpf_stats_ns_per_pkt: the kernel's run-time statistics (BPF_ENABLE_STATS) on during a load
  on the live ebpf testbed: run_time_ns / run_cnt of fn_from_container over that load.
- bpf_stats_ns_per_xhost_pkt: the same during a cross-host UDP load on the ebpf pair of hosts:
  the run time of all of fastnet's programs on both hosts per frame that crossed.
"""
from __future__ import annotations

import socket
import statistics
import struct
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

TCP_ACK, TCP_SYN = 0x10, 0x02
UPLINK_IFINDEX = 900
ROUTER_MAC, UPLINK_MAC = "02:00:00:00:09:01", "02:00:00:00:09:00"
UPLINK_IP, SERVER, CLIENT = IPv4Address("198.51.100.1"), IPv4Address("203.0.113.10"), IPv4Address("192.0.2.50")


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def tcp_frame(smac: str, dmac: str, src, dst, sport: int, dport: int, flags: int = TCP_ACK, payload: bytes = b"x" * 64) -> bytes:
    """Ethernet/IPv4/TCP with correct checksums."""
    s, d = socket.inet_aton(str(src)), socket.inet_aton(str(dst))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 2000 if flags & TCP_ACK else 0, 5 << 4, flags, 64240, 0, 0) + payload
    pseudo = s + d + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, socket.IPPROTO_TCP, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return _mac(dmac) + _mac(smac) + b"\x08\x00" + ip + tcp


def _setup(tdp):
    """Maps of the test build: network 10.0.1.0/24 with ports A (if 101) and B (if 102), the
    uplink, and tcp *:7000 published to B:8000."""
    from ..spec import mac_for
    from ...datapath.maps import HostRecord, Maps, NetworkRecord, PortRecord, ServiceRecord, default_timeouts

    net = IPv4Network("10.0.1.0/24")
    gw = net.network_address + 1
    front = NetworkRecord(1, net, gw, mac_for(gw))
    a = PortRecord(101, mac_for(IPv4Address("10.0.1.2")), IPv4Address("10.0.1.2"), 1)
    b = PortRecord(102, mac_for(IPv4Address("10.0.1.3")), IPv4Address("10.0.1.3"), 1)
    host = HostRecord(UPLINK_IFINDEX, UPLINK_IP, (1024, 32767), 0, ((UPLINK_IP, False), (gw, False)), default_timeouts())
    web = ServiceRecord(socket.IPPROTO_TCP, None, 7000, 7000, int(b.ipv4), 8000, b.ifindex, b.mac, int(gw), front.gateway_mac)
    maps = Maps(tdp.dp)
    maps.sync([front], [a, b])
    maps.sync_host(host)
    maps.sync_services([web])
    maps.conntrack_flush()
    return front, a, b


def _timed(tdp, prog: str, frame: bytes, ifindex: int, runs: int) -> float:
    """Median ns of `runs` single runs (repeat=1), each on a fresh copy of the frame."""
    durations = []
    for _ in range(runs):
        res = tdp.run(prog, frame, ifindex, repeat=1)
        if res.verdict != "redirect":
            raise RuntimeError(f"{prog}: the benchmark frame was not forwarded ({res.verdict})")
        durations.append(res.duration_ns)
    return float(statistics.median(durations))


def testrun_ns(tdp, runs: int = 2000, repeat: int = 10000) -> dict[str, float]:
    """ns per run of each path, a TCP data segment of an established flow. repeat>1 reruns the
    program on the *same* buffer: right for the bridge (nothing is rewritten) but a NAT rerun
    sees its own rewritten packet and takes the drop path; so every path is the median of
    single runs (which include ~60 ns of test-run overhead), and the bridge is also given
    with repeat (`bpf_testrun_ns_bridge_repeat`, without that overhead)."""
    front, a, b = _setup(tdp)
    bridge = tcp_frame(a.mac, b.mac, a.ipv4, b.ipv4, 40000, 80)
    out = tcp_frame(a.mac, front.gateway_mac, a.ipv4, SERVER, 40001, 80)
    inbound = tcp_frame(ROUTER_MAC, UPLINK_MAC, CLIENT, UPLINK_IP, 50000, 7000)
    for frame, prog, ifi in ((out, "fn_from_container", a.ifindex), (inbound, "fn_from_uplink", UPLINK_IFINDEX)):
        syn = frame[:47] + bytes([TCP_SYN]) + frame[48:]  # open the flow first (checksum unchecked)
        tdp.run(prog, syn, ifi)
    host_segment = tcp_frame(ROUTER_MAC, UPLINK_MAC, CLIENT, UPLINK_IP, 50001, 22)
    host_run = tdp.run("fn_from_uplink", host_segment, UPLINK_IFINDEX, repeat=repeat)  # untouched: repeat is right
    if host_run.verdict != "ok":
        raise RuntimeError(f"fn_from_uplink: the host's segment was not left to the host ({host_run.verdict})")
    return {
        "bpf_testrun_ns_uplink_host": float(host_run.duration_ns),
        "bpf_testrun_ns_bridge": _timed(tdp, "fn_from_container", bridge, a.ifindex, runs),
        "bpf_testrun_ns_snat": _timed(tdp, "fn_from_container", out, a.ifindex, runs),
        "bpf_testrun_ns_dnat": _timed(tdp, "fn_from_uplink", inbound, UPLINK_IFINDEX, runs),
        "bpf_testrun_ns_bridge_repeat": float(tdp.run("fn_from_container", bridge, a.ifindex, repeat=repeat).duration_ns),
    }


# ---- run-time statistics on the live datapath -----------------------------------------------
def attached(host_ns: str) -> dict[int, str]:
    """Id -> name of the programs in fastnet's TC ingress slot of every link in host_ns."""
    from .. import sandbox
    from ...datapath import tc

    with sandbox.netlink(Path("/run/netns") / host_ns) as ipr:
        return dict(filter(None, (tc.attached(ipr, link["index"]) for link in ipr.get_links())))


def attached_progs(host_ns: str, name: str = "fn_from_container") -> set[int]:
    """Ids of the programs called `name` in fastnet's TC ingress slot of any link in host_ns."""
    return {prog_id for prog_id, prog_name in attached(host_ns).items() if prog_name == name}


def stats_ns_per_pkt(host_ns: str, load) -> float | None:
    """Run load() with the kernel's run-time statistics on; ns per run of fn_from_container
    during it."""
    from ...datapath import runstats

    ids = attached_progs(host_ns)
    if not ids:
        return None
    with runstats.collecting():
        t0, n0 = runstats.totals(ids)
        load()
        t1, n1 = runstats.totals(ids)
    return (t1 - t0) / (n1 - n0) if n1 > n0 else None


def stats_ns_per_crossing(host_nss: list[str], load) -> dict[str, float] | None:
    """Run load() with the kernel's run-time statistics on; the run time of fastnet's programs
    on the hosts per frame that crossed to another host (a run of fn_from_vxlan): in all
    ("total") and by program (the sender's fn_from_container with its tail call, the
    receiver's fn_from_uplink on the outer packet and fn_from_vxlan on the inner frame)."""
    from ...datapath import runstats

    progs = {}
    for ns in host_nss:
        progs.update(attached(ns))
    names = sorted(set(progs.values()))
    by_name = {name: {i for i, n in progs.items() if n == name} for name in names}
    if "fn_from_vxlan" not in by_name:
        return None
    with runstats.collecting():
        before = {name: runstats.totals(ids) for name, ids in by_name.items()}
        load()
        after = {name: runstats.totals(ids) for name, ids in by_name.items()}
    crossed = after["fn_from_vxlan"][1] - before["fn_from_vxlan"][1]
    if crossed <= 0:
        return None
    out = {name: (after[name][0] - before[name][0]) / crossed for name in names}
    out["total"] = sum(out.values())
    return out


# ---- publishing one more port: the datapath's map reconcile ----------------------------------
def services_for(entries: list[str]):
    """ServiceRecords (tcp, every host address) of publish entries "H[-H2]:C[-C2]", all to B."""
    from ...datapath.maps import ServiceRecord

    from ..spec import mac_for

    gw = IPv4Address("10.0.1.1")
    b = IPv4Address("10.0.1.3")
    out = []
    for e in entries:
        host, cont = e.split(":")
        first, _, last = host.partition("-")
        out.append(ServiceRecord(socket.IPPROTO_TCP, None, int(first), int(last or first), int(b), int(cont.split("-")[0]),
                                 102, mac_for(b), int(gw), mac_for(gw)))
    return out


def add_port_ms(tdp, entries: list[str], extra: str) -> dict[str, float]:
    """Publishing one more port `extra` next to `entries`, on the test build's maps, in ms:
    "delta" when the writer knows what the tables hold (Maps.sync_services with `previous`: the
    path of every sync after the first in one control-plane process), "reconcile" when it must
    read them back first (the first sync of a process: what each `fastnet up` pays today)."""
    from ...datapath.maps import Maps

    maps = Maps(tdp.dp)
    before, after = services_for(entries), services_for(entries + [extra])
    out = {}
    for kind, previous in (("delta", frozenset(before)), ("reconcile", None)):
        maps.sync_services(before)
        t0 = time.perf_counter()
        maps.sync_services(after, previous)
        out[kind] = (time.perf_counter() - t0) * 1000
    maps.sync_services([])
    return out
