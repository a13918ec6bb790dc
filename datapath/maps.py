"""Typed views of the datapath's maps. All byte-order conversion between Python values and
map bytes happens here; callers pass ipaddress objects, MAC strings and ifindexes."""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import socket
import struct
from dataclasses import dataclass
from typing import Iterable, NamedTuple
from ipaddress import IPv4Address, IPv4Network

from . import abi, declared, libbpf
from .counters import counters
from .loader import Datapath, percpu_value_type


@functools.lru_cache(maxsize=4096)  # a host has few distinct MACs; tables repeat them
def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_str(raw) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))


def be32(addr: IPv4Address | int) -> int:
    """An address as the u32 whose memory holds it in network order."""
    return socket.htonl(int(addr))


def from_be32(value: int) -> IPv4Address:
    return IPv4Address(struct.pack("=I", value))


@dataclass(frozen=True)
class PortRecord:
    """One container interface as the datapath sees it."""

    ifindex: int  # host end of the veth
    mac: str
    ipv4: IPv4Address
    net_id: int


class ServiceRecord(NamedTuple):
    """One published port range: (proto, host address or any, ports) -> a container port.

    A tuple of ints, strings and bools (addresses as int(IPv4Address)), so that the sets of them
    a sync compares hash and compare in C: IPv4Address hashes in Python, which made comparing
    10,000 published ports cost milliseconds."""

    proto: int  # IPPROTO_TCP / IPPROTO_UDP
    host_addr: int | None  # None: every address of the host
    host_port_first: int
    host_port_last: int
    backend_ipv4: int
    backend_port_first: int
    backend_ifindex: int
    backend_mac: str
    gateway: int
    gateway_mac: str
    local_only: bool = False


@dataclass(frozen=True)
class HostRecord:
    """The host as the datapath sees it."""

    uplink_ifindex: int
    uplink_ipv4: IPv4Address | None
    snat_ports: tuple[int, int]
    netns_cookie: int
    addresses: tuple[tuple[IPv4Address, bool], ...]  # (address, is loopback)
    timeouts: dict[str, int] | None = None  # seconds by CT_TIMEOUTS name; None: the defaults
    uplink_is_parent: bool = False  # of ipvlan networks or 802.1Q sub-interfaces
    budgets: CtBudgets | None = None  # None: ct_budgets() of the defaults
    fib_ifindex: int = 0  # fastnet's FIB device (control/routing.py); 0: none
    uplink_mtu: int = 0  # 0: unknown (every packet out of the uplink asks bpf_check_mtu)


CT_TIMEOUTS = ("tcp_syn", "tcp_established", "tcp_half_closed", "tcp_closing", "udp", "icmp")


@dataclass(frozen=True)
class CtBudgets:
    """How many flows connection tracking admits (fn_host_config's ct_*_max): "in" for flows
    from outside to published ports, "out" for the containers' own (SNAT, hairpin); "new" ones
    are not confirmed yet; "port" is the most one published (protocol, port) may hold of the in
    budgets, "container" the most one container may hold of the out budgets."""

    in_max: int
    in_new_max: int
    out_max: int
    out_new_max: int
    port_max: int
    port_new_max: int
    container_max: int
    container_new_max: int

    @property
    def flows(self) -> int:
        """Flows of every budget: fn_ct holds twice as many entries."""
        return self.in_max + self.in_new_max + self.out_max + self.out_new_max


def ct_budgets(max_flows: int = 65536, max_new_flows: int = 8192, inbound_percent: int = 50,
               owner_percent: int = 50) -> CtBudgets:
    """The budgets of the `conntrack:` settings: inbound_percent of max_flows and max_new_flows
    for flows from outside, the rest for the containers' own; owner_percent of each, at least
    one flow, for one published port or one container."""
    in_max, in_new = max_flows * inbound_percent // 100, max_new_flows * inbound_percent // 100
    out_max, out_new = max_flows - in_max, max_new_flows - in_new

    def share(n: int) -> int:
        return max(1, n * owner_percent // 100)

    return CtBudgets(in_max, in_new, out_max, out_new, share(in_max), share(in_new), share(out_max), share(out_new))


def ct_table_entries(budgets: CtBudgets) -> int:
    """fn_ct's capacity (FN_CT_MAX) for these budgets: two entries per flow, and slack for flows
    being removed."""
    return 2 * budgets.flows + abi.constants()["FN_CT_SLACK"]


def default_timeouts() -> dict[str, int]:
    return {name: abi.constants()[f"FN_CT_TIMEOUT_{name.upper()}"] for name in CT_TIMEOUTS}


def port_prefixes(first: int, last: int) -> list[tuple[int, int]]:
    """Cover [first, last] exactly with (port, prefix bits) blocks: at most 2 x 16 of them."""
    blocks = []
    while first <= last:
        size = first & -first if first else 1 << 16
        while first + size - 1 > last:
            size >>= 1
        blocks.append((first, 16 - size.bit_length() + 1))
        first += size
    return blocks


@dataclass(frozen=True)
class NetworkRecord:
    net_id: int
    subnet: IPv4Network
    gateway: IPv4Address
    gateway_mac: str
    internal: bool = False


def desired_tables(networks: list[NetworkRecord], ports: list[PortRecord]) -> dict[str, list[tuple]]:
    """Full content of every forwarding table: {map name: [(key, value), ...]}."""
    t: dict[str, list[tuple]] = {name: [] for name in ("fn_networks", "fn_fdb", "fn_ipcache", "fn_flood", "fn_endpoints")}
    if len(ports) > abi.FN_MAX_ENDPOINTS:
        raise ValueError(f"{len(ports)} container interfaces exceed the datapath's {abi.FN_MAX_ENDPOINTS}")
    by_net: dict[int, list[PortRecord]] = {}
    for p in sorted(ports, key=lambda p: p.ifindex):
        by_net.setdefault(p.net_id, []).append(p)
    for n in networks:
        members = by_net.get(n.net_id, [])
        if len(members) > abi.FN_MAX_FLOOD_PORTS:
            raise ValueError(f"network id {n.net_id}: {len(members)} ports exceed {abi.FN_MAX_FLOOD_PORTS}")
        gw_mac = (ctypes.c_uint8 * 6)(*mac_bytes(n.gateway_mac))
        t["fn_networks"].append((ctypes.c_uint32(n.net_id), abi.Network(
            gateway=be32(n.gateway),
            subnet=be32(n.subnet.network_address),
            netmask=be32(n.subnet.netmask),
            gateway_mac=gw_mac,
            flags=abi.FN_NET_F_INTERNAL if n.internal else 0,
            flood_ports=len(members),
        )))
        t["fn_fdb"].append((abi.FdbKey(net_id=n.net_id, mac=gw_mac), abi.FdbEntry(ifindex=0, flags=abi.FN_FDB_F_GATEWAY)))
        for slot, p in enumerate(members):
            t["fn_flood"].append((abi.FloodKey(net_id=n.net_id, slot=slot), ctypes.c_uint32(p.ifindex)))
    for p in ports:
        mac = (ctypes.c_uint8 * 6)(*mac_bytes(p.mac))
        t["fn_endpoints"].append((ctypes.c_uint32(p.ifindex), abi.Endpoint(mac=mac, ipv4=be32(p.ipv4), net_id=p.net_id)))
        t["fn_fdb"].append((abi.FdbKey(net_id=p.net_id, mac=mac), abi.FdbEntry(ifindex=p.ifindex)))
        t["fn_ipcache"].append((ctypes.c_uint32(be32(p.ipv4)), abi.IpEntry(ifindex=p.ifindex, net_id=p.net_id, mac=mac)))
    return t


def service_entries(services: list[ServiceRecord]) -> dict[str, list[tuple]]:
    t: dict[str, list[tuple]] = {"fn_svc_addr": [], "fn_svc_any": []}
    for svc in services:
        value = abi.Service(
            backend_ipv4=be32(svc.backend_ipv4),
            backend_ifindex=svc.backend_ifindex,
            host_port_first=svc.host_port_first,
            backend_port_first=svc.backend_port_first,
            backend_mac=(ctypes.c_uint8 * 6)(*mac_bytes(svc.backend_mac)),
            flags=abi.constants()["FN_SVC_F_LOCAL_ONLY"] if svc.local_only else 0,
            gateway=be32(svc.gateway),
            gateway_mac=(ctypes.c_uint8 * 6)(*mac_bytes(svc.gateway_mac)),
        )
        for port, bits in port_prefixes(svc.host_port_first, svc.host_port_last):
            port_be = (ctypes.c_uint8 * 2)(*port.to_bytes(2, "big"))
            if svc.host_addr is None:
                key = abi.SvcAnyKey(prefixlen=8 + bits, proto=svc.proto, port=port_be)
                t["fn_svc_any"].append((key, value))
            else:
                addr = (ctypes.c_uint8 * 4)(*svc.host_addr.to_bytes(4, "big"))
                key = abi.SvcAddrKey(prefixlen=8 + 32 + bits, proto=svc.proto, addr=addr, port=port_be)
                t["fn_svc_addr"].append((key, value))
    return t


def port_words(services: Iterable[ServiceRecord]) -> dict[int, int]:
    """The non-zero words of fn_pub_ports that `services` set: {word index: bits}. A range
    sets whole words at a time, so publishing 7000-7999 costs 16 words, not 1000 bits."""
    words: dict[int, int] = {}
    for svc in services:
        if svc.proto not in abi.PORT_SLOTS:
            continue  # only TCP and UDP have ports (the tries may hold others: nothing matches them)
        base = abi.PORT_SLOTS[svc.proto] * abi.FN_PORT_WORDS
        port = svc.host_port_first
        while port <= svc.host_port_last:
            word, low = divmod(port, 64)
            high = min(svc.host_port_last, word * 64 + 63) % 64
            words[base + word] = words.get(base + word, 0) | (((1 << (high - low + 1)) - 1) << low)
            port = (word + 1) * 64
    return words


def port_bitmap(services: Iterable[ServiceRecord]) -> list[tuple]:
    """Every word of fn_pub_ports (zeros included: an array has no missing keys)."""
    words = port_words(services)
    return [(ctypes.c_uint32(i), ctypes.c_uint64(words.get(i, 0))) for i in range(len(abi.PORT_SLOTS) * abi.FN_PORT_WORDS)]


def host_entries(host: HostRecord) -> dict[str, list[tuple]]:
    lo, hi = host.snat_ports
    config = abi.HostConfig(
        netns_cookie=host.netns_cookie,
        uplink_ifindex=host.uplink_ifindex if host.uplink_ipv4 else 0,
        uplink_ipv4=be32(host.uplink_ipv4) if host.uplink_ipv4 else 0,
        snat_port_min=lo,
        snat_port_max=hi,
        flags=abi.constants()["FN_HOST_F_UPLINK_PARENT"] if host.uplink_is_parent else 0,
        fib_ifindex=host.fib_ifindex,
        uplink_mtu=host.uplink_mtu,
        **{f"timeout_{k}": v for k, v in (host.timeouts or default_timeouts()).items()},
        **{f"ct_{k}": v for k, v in dataclasses.asdict(host.budgets or ct_budgets()).items()},
    )
    loopback = abi.constants()["FN_ADDR_F_LOOPBACK"]
    return {
        "fn_config": [(ctypes.c_uint32(0), config)],
        "fn_host_addrs": [(ctypes.c_uint32(be32(a)), ctypes.c_uint32(loopback if is_lo else 0)) for a, is_lo in host.addresses],
    }


@dataclass(frozen=True)
class IpvlanPortRecord:
    """One container interface of an ipvlan network."""

    ifindex: int  # host end of the veth
    parent_ifindex: int
    parent_mac: str  # also the container interface's MAC
    ipv4: IPv4Address
    l3: bool


def ipvlan_tables(ports: list[IpvlanPortRecord]) -> dict[str, list[tuple]]:
    t: dict[str, list[tuple]] = {"fn_ipvlan_addrs": [], "fn_ipvlan_ports": []}
    if len(ports) > abi.FN_MAX_ENDPOINTS:
        raise ValueError(f"{len(ports)} ipvlan interfaces exceed the datapath's {abi.FN_MAX_ENDPOINTS}")
    for p in ports:
        mac = (ctypes.c_uint8 * 6)(*mac_bytes(p.parent_mac))
        flags = abi.FN_IPVLAN_F_L3 if p.l3 else 0
        t["fn_ipvlan_addrs"].append((abi.IpvlanKey(parent_ifindex=p.parent_ifindex, ipv4=be32(p.ipv4)),
                                     abi.IpvlanDst(ifindex=p.ifindex, mac=mac, flags=flags)))
        t["fn_ipvlan_ports"].append((ctypes.c_uint32(p.ifindex), abi.IpvlanPort(
            mac=mac, flags=flags, ipv4=be32(p.ipv4), parent_ifindex=p.parent_ifindex)))
    return t


@dataclass(frozen=True)
class VlanRecord:
    """An 802.1Q sub-interface fastnet emulates: IF.VLAN's veth peer (the tagger) and its parent."""

    parent_ifindex: int
    vid: int
    tagger_ifindex: int


def vlan_entries(vlans: list[VlanRecord]) -> list[tuple]:
    out = []
    for v in vlans:
        out.append((abi.VlanKey(ifindex=v.parent_ifindex, vid=v.vid), abi.Vlan(ifindex=v.tagger_ifindex, vid=v.vid)))
        out.append((abi.VlanKey(ifindex=v.tagger_ifindex, vid=0), abi.Vlan(ifindex=v.parent_ifindex, vid=v.vid)))
    return out


def resolver_entries(resolvers: dict[int, tuple[int, int]], addr: IPv4Address) -> list[tuple]:
    """{netns cookie: (udp port, tcp port)} of the resolver's sockets -> fn_resolvers rows."""
    return [
        (ctypes.c_uint64(cookie), abi.Resolver(addr=be32(addr), udp_port=_be16(udp), tcp_port=_be16(tcp)))
        for cookie, (udp, tcp) in sorted(resolvers.items())
    ]


def _be16(port: int) -> int:
    """A port as the u16 whose memory holds it in network order."""
    return struct.unpack("=H", struct.pack("!H", port))[0]


# -- overlay networks (bpf/lib/overlay.h) --------------------------------------------------------


@dataclass(frozen=True)
class OverlayNetRecord:
    """An overlay network of this host: its datapath network, VNI and the host's VXLAN device."""

    net_id: int
    vni: int
    vxlan_ifindex: int


@dataclass(frozen=True)
class RemoteRecord:
    """A container of another host on an overlay network."""

    vni: int
    ipv4: IPv4Address
    mac: str
    host: IPv4Address  # that host's underlay address


def overlay_net_tables(nets: list[OverlayNetRecord]) -> dict[str, list[tuple]]:
    return {
        "fn_ovl_vnis": [(ctypes.c_uint32(n.vni), ctypes.c_uint32(n.net_id)) for n in nets],
        "fn_ovl_nets": [(ctypes.c_uint32(n.net_id), abi.OvlNet(vni=n.vni, vxlan_ifindex=n.vxlan_ifindex)) for n in nets],
    }


def remote_entries(remotes: Iterable[RemoteRecord]) -> list[tuple]:
    return [(abi.OvlKey(vni=r.vni, ipv4=be32(r.ipv4)),
             abi.OvlRemote(host=be32(r.host), mac=(ctypes.c_uint8 * 6)(*mac_bytes(r.mac))))
            for r in remotes]


NAT_MAPS = "fn_nat_maps"
# A mapping no tracked flow uses is deleted only once no flow took it for this long: the
# programs claim a port a moment before they create the flow that uses it, and the agent
# reads the tables one after the other.
NAT_MAP_GRACE_NS = 30 * 10**9
CT_STATES = {1: "new", 2: "established", 3: "closing", 4: "closed", 5: "half-closed"}
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


@dataclass(frozen=True)
class CtRecord:
    """One direction of a tracked connection."""

    confirmed: bool
    proto: str
    orig: tuple[IPv4Address, int, IPv4Address, int]  # as the packets arrive
    translated: tuple[IPv4Address, int, IPv4Address, int]  # as they leave
    state: str
    flags: int
    created_ns: int
    expires_ns: int
    out_ifindex: int = 0  # the container port it delivers to; 0: the uplink

    @property
    def reply(self) -> bool:
        return bool(self.flags & abi.constants()["FN_CT_F_REPLY"])

    @property
    def kind(self) -> str:
        c = abi.constants()
        for flag, name in (("FN_CT_F_HAIRPIN", "hairpin"), ("FN_CT_F_DNAT", "dnat"), ("FN_CT_F_SNAT", "snat")):
            if self.flags & c[flag]:
                return name
        return "-"

    @property
    def inbound(self) -> bool:
        """From outside to a published port: counted in the in budgets."""
        return bool(self.flags & abi.constants()["FN_CT_F_INBOUND"])


@dataclass(frozen=True)
class CtUsage:
    """Flows one budget holds (fn_ct_budget): confirmed and new."""

    flows: int
    new_flows: int


def _port(value: int) -> int:
    return struct.unpack("!H", struct.pack("=H", value))[0]


def ct_record(k: abi.CtKey, e: abi.CtEntry) -> CtRecord:
    return CtRecord(
        confirmed=bool(e.status & abi.constants()["FN_CT_S_CONFIRMED"]),
        proto=PROTO_NAMES.get(k.proto, str(k.proto)),
        orig=(from_be32(k.saddr), _port(k.sport), from_be32(k.daddr), _port(k.dport)),
        translated=(from_be32(e.to_saddr), _port(e.to_sport), from_be32(e.to_daddr), _port(e.to_dport)),
        state=CT_STATES.get(e.state, str(e.state)),
        flags=e.flags,
        created_ns=e.created,
        expires_ns=e.expires,
        out_ifindex=e.out_ifindex,
    )


@dataclass(frozen=True)
class NatMapRecord:
    """One side of a SNAT mapping: a container endpoint's external (address, port), or back."""

    proto: str
    external: bool  # keyed by the external (uplink) side
    key: tuple[IPv4Address, int]
    value: tuple[IPv4Address, int]
    used_ns: int


def nat_map_record(k: abi.NatMapKey, m: abi.NatMap) -> NatMapRecord:
    return NatMapRecord(
        proto=PROTO_NAMES.get(k.proto, str(k.proto)),
        external=bool(m.flags & abi.constants()["FN_NAT_MAP_F_EXTERNAL"]),
        key=(from_be32(k.addr), _port(k.port)),
        value=(from_be32(m.addr), _port(m.port)),
        used_ns=m.used,
    )


def ct_partner_key(k: abi.CtKey, e: abi.CtEntry) -> abi.CtKey:
    """The key of the other direction's entry (fn_ct_partner_key in bpf/lib/ct.h)."""
    return abi.CtKey(saddr=e.to_daddr, daddr=e.to_saddr, sport=e.to_dport, dport=e.to_sport, proto=k.proto)


class Maps:
    """Reads and reconciles the maps of one datapath."""

    def __init__(self, dp: Datapath):
        self.dp = dp

    def _fd(self, name: str) -> int:
        return self.dp.maps[name]

    def _reconcile(self, name: str, desired: list[tuple]) -> int:
        """Make map `name` hold exactly `desired`; returns the number of writes."""
        key_type, value_type = declared.MAP_LAYOUTS[name]
        fd = self._fd(name)
        current = {bytes(k): v for k, v in self._items(name)}
        writes = 0
        wanted = set()
        for key, value in desired:
            kb = bytes(key)
            wanted.add(kb)
            if kb in current and bytes(current[kb]) == bytes(value):
                continue
            libbpf.map_update(fd, key, value)
            writes += 1
        for kb in current.keys() - wanted:
            libbpf.map_delete(fd, key_type.from_buffer_copy(kb))
            writes += 1
        return writes

    def _items(self, name: str) -> list[tuple]:
        key_type, value_type = declared.MAP_LAYOUTS[name]
        fd = self._fd(name)
        if name in ("fn_svc_addr", "fn_svc_any", "fn_config"):  # no batch lookup for tries/arrays of one
            out = []
            for key in libbpf.map_keys(fd, key_type):
                value = value_type()
                if libbpf.map_lookup(fd, key, value):
                    out.append((key, value))
            return out
        return libbpf.map_lookup_batch(fd, key_type, value_type)

    def sync_host(self, host: HostRecord) -> int:
        """Reconcile the host configuration and its addresses."""
        return sum(self._reconcile(name, content) for name, content in host_entries(host).items())

    def sync_services(self, services: Iterable[ServiceRecord], previous: frozenset[ServiceRecord] | None = None) -> int:
        """Make the published-port tables hold exactly `services`.

        With `previous` (what this caller knows the tables hold) only the difference is written:
        publishing one more port is one map update whatever else is published. Without it the
        tables are read back and reconciled in full, which costs time in proportion to all of them."""
        if previous is None:
            services = list(services)
            writes = sum(self._reconcile(name, content) for name, content in service_entries(services).items())
            return writes + self._reconcile("fn_pub_ports", port_bitmap(services))
        wanted = frozenset(services)
        added = wanted - previous
        # Every record of `wanted` not added was already there: when those cover `previous`,
        # nothing was withdrawn and the second pass over all records is skipped.
        unchanged = len(wanted) - len(added)
        return self.publish(added, previous - wanted if unchanged < len(previous) else (), wanted)

    def publish(self, added: Iterable[ServiceRecord], withdrawn: Iterable[ServiceRecord],
                remaining: Iterable[ServiceRecord] = ()) -> int:
        """Write the entries of `added`, then delete those of `withdrawn` that `added` did not
        rewrite (a changed service keeps its keys: it is updated in place, never missing).
        `remaining`: every service published after the change (it decides which bits of the
        withdrawn ports' bitmap words stay set; only read when something is withdrawn)."""
        added, withdrawn = list(added), list(withdrawn)
        writes, rewritten = 0, set()
        for name, content in service_entries(added).items():
            for key, value in content:
                libbpf.map_update(self._fd(name), key, value)
                rewritten.add((name, bytes(key)))
                writes += 1
        for name, content in service_entries(withdrawn).items():
            for key, _ in content:
                if (name, bytes(key)) not in rewritten:
                    libbpf.map_delete(self._fd(name), key)
                    writes += 1
        return writes + self._publish_bits(port_words(added), port_words(withdrawn), remaining)

    def _publish_bits(self, added: dict[int, int], withdrawn: dict[int, int], remaining: Iterable[ServiceRecord]) -> int:
        """Bring the fn_pub_ports words that changed up to date: a word only gains bits is
        OR-ed into what the map holds; a word that lost some is recomputed from `remaining`."""
        fd, writes = self._fd("fn_pub_ports"), 0
        after = port_words(remaining) if withdrawn else {}
        for index in sorted(added.keys() | withdrawn.keys()):
            key, current = ctypes.c_uint32(index), ctypes.c_uint64()
            libbpf.map_lookup(fd, key, current)
            want = after.get(index, 0) if withdrawn else current.value | added[index]
            if want != current.value:
                libbpf.map_update(fd, key, ctypes.c_uint64(want))
                writes += 1
        return writes

    def sync(self, networks: list[NetworkRecord], ports: list[PortRecord]) -> int:
        """Reconcile every forwarding table with the given networks and ports.

        Entries are written before stale ones are deleted, and the tables a packet consults
        first (endpoints) are written last, so a port never sees a half-built network."""
        return sum(self._reconcile(name, content) for name, content in desired_tables(networks, ports).items())

    def sync_ipvlan(self, ports: list[IpvlanPortRecord]) -> int:
        """Reconcile the ipvlan tables (destinations first, then the ports that send to them)."""
        return sum(self._reconcile(name, content) for name, content in ipvlan_tables(ports).items())

    def sync_vlans(self, vlans: list[VlanRecord]) -> int:
        return self._reconcile("fn_vlans", vlan_entries(vlans))

    def sync_resolvers(self, resolvers: dict[int, tuple[int, int]], addr: IPv4Address) -> int:
        """Make fn_resolvers hold exactly `resolvers`: {container netns cookie: (udp port,
        tcp port)} of the DNS resolver listening on `addr` in that namespace."""
        return self._reconcile("fn_resolvers", resolver_entries(resolvers, addr))

    def sync_overlay_nets(self, nets: list[OverlayNetRecord]) -> int:
        """The overlay networks of this host (the eBPF backend's sync is their one writer)."""
        return sum(self._reconcile(name, content) for name, content in overlay_net_tables(nets).items())

    def sync_remotes(self, remotes: Iterable[RemoteRecord]) -> int:
        """Make fn_ovl_remotes hold exactly `remotes` (the agent's overlay sync is its one writer;
        `up` only copies an old build's table into a new one, datapath/ovlcarry.py)."""
        return self._reconcile("fn_ovl_remotes", remote_entries(remotes))

    def remotes(self) -> list[RemoteRecord]:
        return [RemoteRecord(k.vni, from_be32(k.ipv4), mac_str(v.mac), from_be32(v.host))
                for k, v in self._items("fn_ovl_remotes")]

    def resolvers(self) -> dict[int, tuple[IPv4Address, int, int]]:
        """fn_resolvers as {netns cookie: (address, udp port, tcp port)}."""
        return {int(k.value): (from_be32(v.addr), _port(v.udp_port), _port(v.tcp_port))
                for k, v in self._items("fn_resolvers")}

    def conntrack(self) -> list[CtRecord]:
        return [ct_record(k, e) for k, e in self._items("fn_ct")]

    def conntrack_usage(self) -> dict[str, CtUsage]:
        """What the two budgets hold: {"in": ..., "out": ...} (fn_ct_budget's totals)."""
        c = abi.constants()
        out = {}
        for name, slot in (("in", c["FN_CT_OWNER_IN"]), ("out", c["FN_CT_OWNER_OUT"])):
            value = abi.CtCount()
            libbpf.map_lookup(self._fd("fn_ct_budget"), ctypes.c_uint32(slot), value)
            out[name] = CtUsage(value.flows, value.new_flows)
        return out

    def _ct_admin(self, op: int, items: list, per_request: int, now_ns: int = 0) -> int:
        """Run fn_ct_admin over items (keys or flows), as many requests as they need; the sum of
        what it returns (entries removed, flows adopted)."""
        done = 0
        for i in range(0, len(items), per_request):
            chunk = items[i:i + per_request]
            req = abi.CtAdminReq(now=now_ns, op=op, count=len(chunk))
            data = bytes(req) + b"".join(bytes(x) for x in chunk)
            data += bytes(max(0, 64 - len(data)))  # a test run wants at least an Ethernet header
            retval, _, _ = libbpf.test_run(self.dp.progs["fn_ct_admin"], data)
            done += ctypes.c_int32(retval).value
        return done

    def conntrack_remove(self, keys: Iterable[abi.CtKey]) -> int:
        """Remove the flows of these keys (either direction's), both entries each, releasing
        their budgets; returns the entries removed."""
        c = abi.constants()
        return self._ct_admin(c["FN_CT_ADMIN_REMOVE"], list(keys), c["FN_CT_ADMIN_KEYS"])

    def conntrack_flush(self) -> int:
        """Forget every tracked flow, the SNAT mappings with them, and the fragments of
        datagrams in flight (which only a flow translates); returns the number of conntrack
        entries removed."""
        n = self.conntrack_remove(self._flow_keys(self._items("fn_ct")))
        for table in (NAT_MAPS, "fn_frags"):
            for key, _ in self._items(table):
                libbpf.map_delete(self._fd(table), key)
        return n

    def conntrack_expire(self, now_ns: int, forget_gone_ports: bool = False) -> int:
        """The agent's garbage collection: remove the flows whose entries both expired before
        now_ns (CLOCK_MONOTONIC). One batch read of the table; fn_ct_admin re-checks each
        deadline in the kernel, so a packet refreshing a flow meanwhile keeps it. With
        forget_gone_ports, also the flows of container ports fn_endpoints no longer has
        (conntrack_forget_ports), from the same read."""
        rows = self._items("fn_ct")
        expired = [(k, e) for k, e in rows if e.expires < now_ns]
        c = abi.constants()
        removed = self._ct_admin(c["FN_CT_ADMIN_EXPIRE"], self._flow_keys(expired), c["FN_CT_ADMIN_KEYS"], now_ns)
        if forget_gone_ports:
            removed += self._forget_ports(rows, set(self.endpoints()))
        return removed

    def conntrack_forget_ports(self, live: Iterable[int]) -> int:
        """Remove every flow that delivers to a container port (host-side ifindex) not in
        `live`: a container's flows go with its interface. Its address may come back on
        another interface (the container recreated), and a flow kept alive by a client's
        keep-alives would otherwise go on delivering to the old one for ever."""
        return self._forget_ports(self._items("fn_ct"), set(live))

    def _forget_ports(self, rows: list[tuple], live: set[int]) -> int:
        """rows must have been read before `live` was: a port added in between has no flow in
        them yet (fn_from_container makes none for a port fn_endpoints does not have)."""
        gone = [k for k, e in rows if e.out_ifindex and e.out_ifindex not in live]
        return self.conntrack_remove(gone) if gone else 0

    @staticmethod
    def _flow_keys(rows: list[tuple]) -> list[abi.CtKey]:
        """One key per flow of rows (the forward entry's when both directions are there)."""
        present = {bytes(k) for k, _ in rows}
        reply = abi.constants()["FN_CT_F_REPLY"]
        return [k for k, e in rows if not (e.flags & reply and bytes(ct_partner_key(k, e)) in present)]

    def conntrack_adopt(self, flows: Iterable[abi.CtFlow]) -> int:
        """Insert flows (an older build's), each within its budget; returns those inserted."""
        c = abi.constants()
        return self._ct_admin(c["FN_CT_ADMIN_ADOPT"], list(flows), c["FN_CT_ADMIN_FLOWS"])

    def nat_maps(self) -> list[NatMapRecord]:
        return [nat_map_record(k, m) for k, m in self._items(NAT_MAPS)]

    def nat_maps_expire(self, now_ns: int, grace_ns: int = NAT_MAP_GRACE_NS) -> int:
        """Delete the SNAT mappings (both sides) that no tracked flow uses and no flow took
        for grace_ns: after conntrack_expire, the agent's garbage collection. A mapping is in
        use while any conntrack entry has its external (address, port) in either tuple."""
        live = set()
        for k, e in self._items("fn_ct"):
            live.update(((k.proto, k.saddr, k.sport), (k.proto, k.daddr, k.dport),
                         (k.proto, e.to_saddr, e.to_sport), (k.proto, e.to_daddr, e.to_dport)))
        external = abi.constants()["FN_NAT_MAP_F_EXTERNAL"]
        n = 0
        for k, m in self._items(NAT_MAPS):
            held = (k.proto, k.addr, k.port) if m.flags & external else (k.proto, m.addr, m.port)
            if held not in live and now_ns - m.used >= grace_ns:
                n += libbpf.map_delete(self._fd(NAT_MAPS), k)
        return n

    def endpoints(self) -> dict[int, tuple[str, IPv4Address, int]]:
        rows = libbpf.map_lookup_batch(self._fd("fn_endpoints"), ctypes.c_uint32, abi.Endpoint)
        return {k.value: (mac_str(v.mac), from_be32(v.ipv4), v.net_id) for k, v in rows}

    def counters(self) -> dict[str, dict[str, tuple[int, int]]]:
        """{program: {counter short name: (packets, bytes)}} for every non-zero counter."""
        value_type = percpu_value_type(abi.Metric)
        fd = self._fd("fn_metrics")
        table: dict[str, dict[str, tuple[int, int]]] = {}
        for prog, prog_id in declared.COUNTER_OWNERS.items():
            per_prog = {}
            for c in counters():
                key = ctypes.c_uint32(prog_id * abi.FN_COUNTER_SLOTS + c.id)
                value = value_type()
                if not libbpf.map_lookup(fd, key, value):
                    continue
                packets = sum(v.packets for v in value)
                nbytes = sum(v.bytes for v in value)
                if packets:
                    per_prog[c.short] = (packets, nbytes)
            table[prog] = per_prog
        return table

    def reset_counters(self) -> None:
        value_type = percpu_value_type(abi.Metric)
        for i in range(len(declared.COUNTER_OWNERS) * abi.FN_COUNTER_SLOTS):
            libbpf.map_update(self._fd("fn_metrics"), ctypes.c_uint32(i), value_type())
