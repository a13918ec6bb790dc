"""The translating datapath: fn_from_container for a container's traffic to its gateway MAC,
fn_from_uplink for everything arriving from outside, sharing conntrack (fn_ct).

     outside: SERVER 203.0.113.10, OTHER_SERVER 203.0.113.11, CLIENT 192.0.2.50
                                      |
                       next hop ROUTER_MAC 02:00:00:00:09:01
                                      |
     ================================ # =================== fn_from_uplink (TC ingress, if 900)
                                      |
     host  uplink if 900 at UPLINK_MAC 02:00:00:00:09:00, UPLINK_IP 198.51.100.1 (+ SECOND_IP .2)
           host addresses: UPLINK_IP, SECOND_IP, 127.0.0.1 (loopback), every gateway
           SNAT ports 1024-32767 (the host's ip_local_port_range is above); published ports:
             WEB   tcp  *:7000-7099        -> D 10.0.2.2:8000-8099
             DNS   udp  198.51.100.1:5353  -> B 10.0.1.3:53
             ADMIN tcp  127.0.0.1:9000     -> C 10.0.1.4:9000   (local_only: host processes)
                                      |
     ========#==============#=========#====#================#======== fn_from_container
             |              |              |                |         (TC ingress of each
     +-------+--------------+--------+  +--+---------+  +---+------+    host-side veth)
     | A 10.0.1.2  B .3  C .4        |  | D 10.0.2.2 |  | F        |
     | if 101    if 102  if 103      |  | if 201     |  | 10.0.4.2 |
     | "front" 10.0.1.0/24, gw .1    |  | "back"     |  | if 401   |
     +-------------------------------+  | 10.0.2.0/24|  | internal |
                                        +------------+  +----------+

     Every container's MAC is 02:fa:<IPv4 bytes>, every gateway's too (topology.py).

Each case of CASES is data: the packets that set a flow up (`given`), the one packet under
test, and everything its run must show — verdict, recorded redirects, the counters it moved
(each by 1 packet and len(frame) bytes; a new flow moves two: fwd_snat or fwd_dnat, then
fwd_ct for its translation) and the exact output frame. Expected frames are rebuilt by scapy
from the input with the translated fields, so every IP, TCP, UDP and ICMP checksum in them is
computed from scratch: a byte-for-byte match proves the incremental updates right.
Cases may also hold ports with sockets of "the host" (`host_sockets`: the test's own network
namespace, see conftest.py). The tests after the table follow flows over several packets:
conntrack state, timeouts and expiry, port collisions, SNAT mappings and their garbage
collection. Budgets, floods and TCP tracking are in test_conntrack.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from socket import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert, fragment
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from fastnet.datapath.maps import CtRecord, HostRecord, PortRecord, ServiceRecord
from fastnet.datapath.testrun import RunResult

from conftest import NSEC, PROG, ROUTE_PROG, UPLINK_PROG, Nat, host_sockets
from topology import (A, B, BACK, C, CLIENT, D, F, FRONT, HOST, INTERNAL, LOOPBACK,
                      NOT_HOST, OTHER_SERVER, PROHIBIT_NET, ROUTER_MAC, SECOND_IP, SERVER, SERVICES, SNAT_PORTS,
                      BLACKHOLE_NET, UPLINK_BROADCAST, UPLINK_IFINDEX, UPLINK_IP, UPLINK_MAC, VPN_IFINDEX, VPN_IP,
                      VPN_SERVER, gateway_of, host, publish)

UNCHANGED = "unchanged"
NEIGH = [("neigh", UPLINK_IFINDEX)]  # out of the uplink, next hop resolved by the kernel

# Every translated packet is routed by the host: its TTL goes down by one, into containers too.
TTL_DECREMENT_INTO_CONTAINER = 1


def peer(port: PortRecord) -> list[tuple[str, int]]:
    return [("peer", port.ifindex)]


# ---- frames -----------------------------------------------------------------------------------


ISN = 1000  # both ends' initial sequence number: every segment below fits any flow's handshake


def tcp(sport: int, dport: int, flags: str = "S", seq: int | None = None, ack: int | None = None) -> Packet:
    """A segment of a connection whose ends both started at ISN: a SYN carries ISN, everything
    after it ISN + 1 and acknowledges ISN + 1 (the other end's SYN)."""
    seq_ack = {"seq": (ISN if "S" in flags else ISN + 1) if seq is None else seq,
               "ack": (ISN + 1 if "A" in flags else 0) if ack is None else ack}
    payload = b"" if "S" in flags or "R" in flags else b"fastnet"
    return TCP(sport=sport, dport=dport, flags=flags, window=64240, **seq_ack) / Raw(payload)


def udp(sport: int, dport: int, chksum: int | None = None) -> Packet:
    return UDP(sport=sport, dport=dport, chksum=chksum) / Raw(b"fastnet")


def ping(ident: int, reply: bool = False) -> Packet:
    return ICMP(type=0 if reply else 8, id=ident, seq=1) / Raw(b"fastnet ping")


@dataclass(frozen=True)
class Send:
    """A frame and where it enters: a container's port, or from outside (port None) the
    uplink or another device of the host (`via`)."""

    frame: Packet
    port: PortRecord | None = None
    via: int = UPLINK_IFINDEX

    @property
    def prog(self) -> str:
        if self.port is not None:
            return PROG
        return UPLINK_PROG if self.via == UPLINK_IFINDEX else ROUTE_PROG


def out(port: PortRecord, l4: Packet, dst: IPv4Address = SERVER, **ip_fields) -> Send:
    """What container `port` sends through its gateway to dst."""
    ip = IP(src=str(port.ipv4), dst=str(dst), **{"ttl": 64, **ip_fields})
    return Send(Ether(src=port.mac, dst=gateway_of(port).gateway_mac) / ip / l4, port)


def inbound(l4: Packet, src: IPv4Address = SERVER, dst: IPv4Address = UPLINK_IP, **ip_fields) -> Send:
    """What arrives on the uplink from src."""
    ip = IP(src=str(src), dst=str(dst), **{"ttl": 64, **ip_fields})
    return Send(Ether(src=ROUTER_MAC, dst=UPLINK_MAC) / ip / l4)


def run(nat: Nat, send: Send, **shape) -> RunResult:
    """shape: linear=, vlan= (TestDatapath.run)."""
    if send.port is not None:
        return nat.from_container(send.port, send.frame, **shape)
    if send.via != UPLINK_IFINDEX:
        return nat.from_route(send.frame, send.via, **shape)
    return nat.from_uplink(send.frame, **shape)


def rewritten(send: Send, *, src=None, dst=None, sport=None, dport=None, into: PortRecord | None = None,
              ttl_decrement: int = 1) -> Packet:
    """send's frame as it must leave: the given fields replaced, TTL decremented, every checksum
    recomputed (a zero UDP checksum stays zero); `into` a container: Ethernet addresses set to
    the container's and its gateway's MAC. For ICMP echo the identifier is sport in a request,
    dport in a reply (as conntrack keys it)."""
    p = send.frame.copy()
    ip = p[IP]
    if src is not None:
        ip.src = str(src)
    if dst is not None:
        ip.dst = str(dst)
    ip.ttl -= ttl_decrement
    del ip.chksum
    l4 = ip.payload
    if isinstance(l4, ICMP):
        ident = sport if l4.type == 8 else dport
        if ident is not None:
            l4.id = ident
        del l4.chksum
    else:
        if sport is not None:
            l4.sport = sport
        if dport is not None:
            l4.dport = dport
        if not (isinstance(l4, UDP) and l4.chksum == 0):
            del l4.chksum
    if into is not None:
        p[Ether].dst = into.mac
        p[Ether].src = gateway_of(into).gateway_mac
    return p


def to_uplink(send: Send, **changes) -> Packet:
    return rewritten(send, **changes)


def into(port: PortRecord, send: Send, **changes) -> Packet:
    return rewritten(send, into=port, ttl_decrement=TTL_DECREMENT_INTO_CONTAINER, **changes)


# ---- cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    send: Send
    verdict: str  # ok | shot | redirect
    redirects: list[tuple[str, int]]
    counters: tuple[str, ...]  # short names (counters.h), each moved by this one packet
    output: Packet | str = UNCHANGED
    given: tuple[Send, ...] = ()  # sent first, in order (each must be translated)
    host: HostRecord = HOST
    services: tuple[ServiceRecord, ...] = SERVICES
    host_sockets: tuple[tuple[int, int], ...] = ()  # (IPPROTO_TCP/UDP, port) the host holds (conftest)
    linear: int = 0  # only that many bytes of the frame in the skb's linear part (0: all)
    pulled: int = 0  # the bpf_skb_pull_data the run must make (0: none)
    vlan: int | None = None  # an 802.1Q tag the stack took out of the frame (skb->vlan_tci)
    gso_size: int = 0  # the frame is a GSO super-packet of segments that long
    mtus: tuple[tuple[int, int], ...] = ()  # (ifindex, MTU) of devices not at 1500

    @property
    def counter(self) -> str:
        """The counter this case is about (test_counters.py)."""
        return self.counters[0]


def host_bound(id: str, send: Send, **kw) -> Case:
    """Not translated: handed to the host stack as it is."""
    counter = "fwd_uplink_host" if send.port is None else "fwd_host"
    return Case(id, send, "ok", [], (counter,), **kw)


def drop(id: str, send: Send, counter: str, **kw) -> Case:
    return Case(id, send, "shot", [], (counter,), **kw)


SNAT_NEW, DNAT_NEW, CT = ("fwd_snat", "fwd_ct"), ("fwd_dnat", "fwd_ct"), ("fwd_ct",)
SNAT_HAIRPIN_NEW = ("fwd_snat_hairpin", "fwd_ct")

# Flows the cases build on. A keeps its source port 20000: it is in the SNAT range and free.
a_syn = out(A, tcp(20000, 80))
a_ack = out(A, tcp(20000, 80, "A"))  # completes the handshake: confirms the flow
a_udp = out(A, udp(20000, 53))
a_udp_no_csum = out(A, udp(20000, 53, chksum=0))
a_ping = out(A, ping(0x1234))
a_syn_options = out(A, tcp(20000, 80), options=[IPOption_Router_Alert()])
d_udp = out(D, udp(8005, 123))
client_syn = inbound(tcp(5555, 7005), src=CLIENT)
client_syn_second = inbound(tcp(5555, 7005), src=CLIENT, dst=SECOND_IP)
client_syn_options = inbound(tcp(5555, 7005), src=CLIENT, options=[IPOption_Router_Alert()])
client_dns = inbound(udp(5555, 5353), src=CLIENT)
client_dns_no_csum = inbound(udp(5555, 5353, chksum=0), src=CLIENT)
a_stun = out(A, udp(20000, 3478))  # learns its mapping UPLINK_IP:20000
b_to_a_mapping = out(B, udp(21000, 20000), dst=UPLINK_IP)
a_to_b_mapping = out(A, udp(20000, 21000), dst=UPLINK_IP)
a_hairpin = out(A, tcp(20000, 7005), dst=UPLINK_IP)
a_hairpin_dns = out(A, udp(20000, 5353), dst=UPLINK_IP)

# Replies to those flows.
server_synack = inbound(tcp(80, 20000, "SA"))
server_udp = inbound(udp(53, 20000))
server_udp_no_csum = inbound(udp(53, 20000, chksum=0))
server_pong = inbound(ping(0x1234, reply=True))
server_synack_options = inbound(tcp(80, 20000, "SA"), options=[IPOption_Router_Alert()])
d_synack = out(D, tcp(8005, 5555, "SA"), dst=CLIENT)
d_synack_options = out(D, tcp(8005, 5555, "SA"), dst=CLIENT, options=[IPOption_Router_Alert()])
b_dns_answer = out(B, udp(53, 5555), dst=CLIENT)
b_dns_answer_no_csum = out(B, udp(53, 5555, chksum=0), dst=CLIENT)
d_hairpin_synack = out(D, tcp(8005, 20000, "SA"), dst=BACK.gateway)
b_hairpin_dns_answer = out(B, udp(53, 20000), dst=FRONT.gateway)

ONE_SNAT_PORT = host(snat_ports=(2000, 2000))
# Random picks in a range of two find the free one (in 32 tries: all but certainly).
TWO_SNAT_PORTS = host(snat_ports=(2000, 2001))
EPHEMERAL = 40000  # in the host's ip_local_port_range (32768-60999): never an external port
# The same backend port published twice: a client using one source port for both collides.
WEB_AGAIN = publish(IPPROTO_TCP, SECOND_IP, 9005, 9005, D, 8005)
# The control plane publishes only TCP and UDP; an ICMP entry reaches the untranslatable branch
# (an echo request's destination "port" is 0: fn_l4_parse).
PING_SERVICE = publish(IPPROTO_ICMP, None, 0, 0, D, 0)

# ICMP errors quoting a translated packet. The quoted transport checksum is left as it was
# (receivers do not check it); every other checksum, the quoted IP one included, is rebuilt
# by scapy in the expected frames.
ROUTER = IPv4Address("203.0.113.1")


def quoted(ip_src, ip_dst, l4: Packet) -> Packet:
    """The first bytes of a packet as an ICMP error quotes them, checksums frozen."""
    q = IP(bytes(IP(src=str(ip_src), dst=str(ip_dst), ttl=63, id=7) / l4))
    return q


def icmp_error(outer_src, outer_dst, q: Packet, type_: int = 3, code: int = 3, port: PortRecord | None = None,
               **fields) -> Send:
    ip = IP(src=str(outer_src), dst=str(outer_dst), ttl=64)
    l3 = ip / ICMP(type=type_, code=code, **fields) / q
    if port is None:
        return Send(Ether(src=ROUTER_MAC, dst=UPLINK_MAC) / l3)
    return Send(Ether(src=port.mac, dst=gateway_of(port).gateway_mac) / l3, port)


def error_rewritten(send: Send, *, outer_src=None, outer_dst=None, q_src=None, q_dst=None, q_sport=None,
                    q_dport=None, into: PortRecord | None = None) -> Packet:
    p = send.frame.copy()
    outer = p[IP]
    if outer_src is not None:
        outer.src = str(outer_src)
    if outer_dst is not None:
        outer.dst = str(outer_dst)
    outer.ttl -= 1
    del outer.chksum
    del p[ICMP].chksum
    q = p[ICMP].payload
    if q_src is not None:
        q.src = str(q_src)
    if q_dst is not None:
        q.dst = str(q_dst)
    del q.chksum
    l4 = q.payload
    if isinstance(l4, ICMP):
        if q_sport is not None:
            l4.id = q_sport
    else:
        if q_sport is not None:
            l4.sport = q_sport
        if q_dport is not None:
            l4.dport = q_dport
    if into is not None:
        p[Ether].dst = into.mac
        p[Ether].src = gateway_of(into).gateway_mac
    return Ether(bytes(p))


udp_unreachable = icmp_error(SERVER, UPLINK_IP, quoted(UPLINK_IP, SERVER, udp(20000, 53)))
tcp_frag_needed = icmp_error(ROUTER, UPLINK_IP, quoted(UPLINK_IP, SERVER, tcp(20000, 80)), code=4, nexthopmtu=1400)
ping_time_exceeded = icmp_error(ROUTER, UPLINK_IP, quoted(UPLINK_IP, SERVER, ping(0x1234)), type_=11, code=0)
d_port_unreachable = icmp_error(D.ipv4, CLIENT, quoted(CLIENT, D.ipv4, tcp(5555, 8005)), port=D)
stray_unreachable = icmp_error(SERVER, UPLINK_IP, quoted(UPLINK_IP, SERVER, udp(21000, 53)))

def gateway_answer(send: Send, gateway: IPv4Address, type_: int, code: int, mtu: int = 0) -> Packet:
    """The gateway's ICMP error about send's frame (RFC 792), quoting the packet's IP header and
    8 bytes of its payload, back to the sender's MAC."""
    frame = send.frame
    ip = bytes(frame[IP])
    quote = ip[: (ip[0] & 0xF) * 4 + 8]
    return (Ether(src=frame[Ether].dst, dst=frame[Ether].src)
            / IP(src=str(gateway), dst=frame[IP].src, ttl=64, id=0, flags=0)
            / ICMP(type=type_, code=code, nexthopmtu=mtu) / Raw(quote))


def time_exceeded(send: Send, gateway: IPv4Address) -> Packet:
    return gateway_answer(send, gateway, 11, 0)


ICMP_ERROR_CASES = [
    Case("icmp_error_unreachable_for_snat_udp", udp_unreachable, "redirect", peer(A), ("fwd_icmp_error",),
         error_rewritten(udp_unreachable, outer_dst=A.ipv4, q_src=A.ipv4, into=A), given=(a_udp,)),
    Case("icmp_error_frag_needed_from_a_router", tcp_frag_needed, "redirect", peer(A), ("fwd_icmp_error",),
         error_rewritten(tcp_frag_needed, outer_dst=A.ipv4, q_src=A.ipv4, into=A), given=(a_syn,)),
    Case("icmp_error_time_exceeded_for_snat_ping", ping_time_exceeded, "redirect", peer(A), ("fwd_icmp_error",),
         error_rewritten(ping_time_exceeded, outer_dst=A.ipv4, q_src=A.ipv4, into=A), given=(a_ping,)),
    Case("icmp_error_from_dnat_backend", d_port_unreachable, "redirect", NEIGH, ("fwd_icmp_error",),
         error_rewritten(d_port_unreachable, outer_src=UPLINK_IP, q_dst=UPLINK_IP, q_dport=7005),
         given=(client_syn,)),
    host_bound("icmp_error_about_no_tracked_flow", stray_unreachable, given=(a_udp,)),
    # -- an error counts only from where the flow's peer is --
    # A (front) speaks for D's (back) SNAT flow, to the address D's replies come to: not into D
    host_bound("icmp_error_from_container_about_another_networks_flow",
               icmp_error(A.ipv4, UPLINK_IP, quoted(UPLINK_IP, SERVER, udp(8005, 123)), port=A), given=(d_udp,)),
    # A speaks for D's flow to D's server: it would leave the uplink with A's private source
    drop("icmp_error_frag_needed_from_container_about_another_flow",
         icmp_error(A.ipv4, SERVER, quoted(SERVER, D.ipv4, udp(123, 8005)), code=4, nexthopmtu=1400, port=A),
         "drop_icmp_error", given=(d_udp,)),
    # from outside, about a hairpin flow (both ends are containers): not into A
    host_bound("icmp_error_from_outside_about_a_hairpin_flow",
               icmp_error(SERVER, BACK.gateway, quoted(BACK.gateway, D.ipv4, tcp(20000, 8005))), given=(a_hairpin,)),
    # from outside, about A's flow, but to another address of the host than the flow's
    host_bound("icmp_error_from_outside_to_another_host_address",
               icmp_error(ROUTER, SECOND_IP, quoted(UPLINK_IP, SERVER, udp(20000, 53))), given=(a_udp,)),
    host_bound("icmp_error_from_a_martian_source",
               icmp_error(FRONT.gateway, UPLINK_IP, quoted(UPLINK_IP, SERVER, udp(20000, 53))), given=(a_udp,)),
    Case("ttl_expires_at_the_gateway", out(A, udp(20001, 33434), ttl=1), "redirect", [("egress", A.ifindex)],
         ("fwd_ttl_exceeded",), time_exceeded(out(A, udp(20001, 33434), ttl=1), FRONT.gateway)),
]

# Sources no client from outside can have (Linux's martians, the host's own addresses, and what
# the host has no route back to): never translated into a container, whatever they ask for.
MARTIAN_SOURCES = {
    "host_address": UPLINK_IP,
    "gateway": FRONT.gateway,
    "unassigned_fastnet_address": "10.0.2.99",
    "fastnet_subnet_broadcast": "10.0.1.255",
    "uplink_subnet_broadcast": UPLINK_BROADCAST,
    "loopback": LOOPBACK,
    "loopback_net": "127.1.2.3",
    "zero_net": "0.1.2.3",
    "multicast": "224.0.0.5",
    "class_e": "240.0.0.1",
    "limited_broadcast": "255.255.255.255",
}
NO_FIB = host(fib_ifindex=0)  # no FIB device: only the host's address table is known

MARTIAN_SOURCE_CASES = [
    *(drop(f"martian_source_{name}_to_published_{proto}", inbound(l4, src=addr), "drop_martian_src")
      for name, addr in MARTIAN_SOURCES.items()
      for proto, l4 in (("tcp", tcp(5555, 7005)), ("udp", udp(5555, 5353)))),
    drop("martian_source_host_address_without_fib", inbound(udp(5555, 5353), src=SECOND_IP), "drop_martian_src",
         host=NO_FIB),
    # without the FIB only the host's own addresses are known: an unassigned address goes through
    Case("martian_source_unassigned_address_unknown_without_fib", inbound(udp(5555, 5353), src="10.0.2.99"),
         "redirect", peer(B), DNAT_NEW, into(B, inbound(udp(5555, 5353), src="10.0.2.99"), dst=B.ipv4, dport=53),
         host=NO_FIB),
    # a client on the uplink's own subnet is an ordinary client
    Case("client_on_the_uplink_subnet", inbound(udp(5555, 5353), src=NOT_HOST), "redirect", peer(B), DNAT_NEW,
         into(B, inbound(udp(5555, 5353), src=NOT_HOST), dst=B.ipv4, dport=53)),
]

def hidden_in_padding(send: Send, header_bytes: int = 0) -> Send:
    """send's frame with an IP total length that covers only header_bytes of its transport
    header: the rest lies in what a receiver takes for Ethernet padding."""
    frame = Ether(bytes(send.frame))
    frame[IP].len = frame[IP].ihl * 4 + header_bytes
    del frame[IP].chksum
    return Send(Ether(bytes(frame)), send.port)


HEADERS_MAX = 14 + 60 + 20  # FN_HEADERS_MAX (bpf/lib/ipv4.h): what a pull makes linear

# Frames the parser must not trust, and the shapes of skb a NIC hands TC.
PARSING_CASES = [
    # a transport header past the IP total length is padding: it opens no flow
    host_bound("uplink_syn_hidden_in_ethernet_padding", hidden_in_padding(client_syn)),
    host_bound("uplink_syn_half_in_ethernet_padding", hidden_in_padding(client_syn, 12)),
    host_bound("uplink_udp_hidden_in_ethernet_padding", hidden_in_padding(client_dns)),
    drop("container_syn_hidden_in_ethernet_padding", hidden_in_padding(a_syn), "drop_malformed_l4"),
    drop("container_udp_hidden_in_ethernet_padding", hidden_in_padding(a_udp, 4), "drop_malformed_l4"),
    drop("container_ping_hidden_in_ethernet_padding", hidden_in_padding(a_ping), "drop_malformed_l4"),
    # an ICMP error whose quote lies past its IP total length quotes nothing
    host_bound("icmp_error_quote_in_ethernet_padding", hidden_in_padding(udp_unreachable, 8), given=(a_udp,)),
    # a tagged frame (tag in skb->vlan_tci) is another VLAN's, never the uplink's own traffic
    host_bound("uplink_vlan_tagged_to_published_port", client_syn, vlan=42),
    host_bound("uplink_vlan_tagged_reply", server_synack, given=(a_syn,), vlan=42),
    host_bound("uplink_vlan_priority_tagged_reply", server_synack, given=(a_syn,), vlan=0x2000),
    # only the Ethernet header linear (what some NICs hand TC): the headers are pulled first
    Case("uplink_dnat_ethernet_header_only_linear", client_syn, "redirect", peer(D), DNAT_NEW,
         into(D, client_syn, dst=D.ipv4, dport=8005), linear=14, pulled=len(client_syn.frame)),
    Case("uplink_reply_ethernet_header_only_linear", inbound(tcp(80, 20000, "PA") / Raw(bytes(200))), "redirect",
         peer(A), CT, into(A, inbound(tcp(80, 20000, "PA") / Raw(bytes(200))), dst=A.ipv4), given=(a_syn,),
         linear=14, pulled=HEADERS_MAX),
    Case("uplink_reply_ip_header_only_linear", server_udp, "redirect", peer(A), CT,
         into(A, server_udp, dst=A.ipv4), given=(a_udp,), linear=34, pulled=len(server_udp.frame)),
    Case("snat_ethernet_header_only_linear", out(A, tcp(20000, 80, "PA") / Raw(bytes(300))), "redirect", NEIGH,
         SNAT_NEW, to_uplink(out(A, tcp(20000, 80, "PA") / Raw(bytes(300))), src=UPLINK_IP), linear=14,
         pulled=HEADERS_MAX),
    # headers already linear: no pull (the cost of the check is one comparison)
    Case("uplink_reply_headers_linear", inbound(tcp(80, 20000, "PA") / Raw(bytes(200))), "redirect", peer(A), CT,
         into(A, inbound(tcp(80, 20000, "PA") / Raw(bytes(200))), dst=A.ipv4), given=(a_syn,), linear=HEADERS_MAX),
]

def via_vpn(l4: Packet, src: IPv4Address = VPN_SERVER, dst: IPv4Address = VPN_IP, **ip_fields) -> Send:
    """What arrives on the VPN device (topology.VPN_IFINDEX) from src."""
    ip = IP(src=str(src), dst=str(dst), **{"ttl": 64, **ip_fields})
    return Send(Ether(src=ROUTER_MAC, dst=UPLINK_MAC) / ip / l4, via=VPN_IFINDEX)


VPN = [("neigh", VPN_IFINDEX)]
a_vpn_udp = out(A, udp(20000, 53), dst=VPN_SERVER)
vpn_udp_reply = via_vpn(udp(53, 20000))


def unreachable(send: Send, code: int = 1) -> Packet:
    """The gateway's destination unreachable (host unreachable; 13: administratively prohibited)."""
    return gateway_answer(send, gateway_of(send.port).gateway, 3, code)


# SNAT where the host's routing sends a flow, as Docker's MASQUERADE does.
ROUTING_CASES = [
    Case("snat_by_a_second_route", a_vpn_udp, "redirect", VPN, SNAT_NEW, to_uplink(a_vpn_udp, src=VPN_IP)),
    Case("snat_by_a_second_route_tcp", out(A, tcp(20000, 443), dst=VPN_SERVER), "redirect", VPN, SNAT_NEW,
         to_uplink(out(A, tcp(20000, 443), dst=VPN_SERVER), src=VPN_IP)),
    Case("snat_by_a_second_route_second_packet", a_vpn_udp, "redirect", VPN, CT, to_uplink(a_vpn_udp, src=VPN_IP),
         given=(a_vpn_udp,)),
    Case("reply_through_the_second_route", vpn_udp_reply, "redirect", peer(A), CT,
         into(A, vpn_udp_reply, dst=A.ipv4), given=(a_vpn_udp,)),
    Case("reply_through_the_second_route_ttl_1", via_vpn(udp(53, 20000), ttl=1), "redirect", [("egress", VPN_IFINDEX)],
         ("fwd_ttl_exceeded",), time_exceeded(via_vpn(udp(53, 20000), ttl=1), VPN_IP), given=(a_vpn_udp,)),
    Case("snat_without_fib_leaves_by_the_uplink", a_vpn_udp, "redirect", NEIGH, SNAT_NEW,
         to_uplink(a_vpn_udp, src=UPLINK_IP), host=host(fib_ifindex=0)),
    # the host's own addresses and broadcasts are the host's
    host_bound("container_to_the_uplink_subnet_broadcast", out(A, udp(20000, 53), dst=UPLINK_BROADCAST)),
    host_bound("container_to_the_vpn_address", out(A, udp(20000, 53), dst=VPN_IP)),
    # nowhere to go: the gateway says so (an unassigned address of a fastnet subnet, any
    # address behind an unreachable or prohibit route), or the packet goes nowhere
    Case("container_to_an_unassigned_fastnet_address", out(A, udp(20000, 53), dst="10.0.2.99"), "redirect",
         [("egress", A.ifindex)], ("fwd_unreachable",), unreachable(out(A, udp(20000, 53), dst="10.0.2.99"))),
    Case("container_to_another_fastnet_subnet_broadcast", out(A, udp(20000, 53), dst="10.0.2.255"), "redirect",
         [("egress", A.ifindex)], ("fwd_unreachable",), unreachable(out(A, udp(20000, 53), dst="10.0.2.255"))),
    Case("container_to_a_prohibit_route", out(A, tcp(20000, 80), dst=PROHIBIT_NET[1]), "redirect",
         [("egress", A.ifindex)], ("fwd_unreachable",), unreachable(out(A, tcp(20000, 80), dst=PROHIBIT_NET[1]), 13)),
    drop("container_to_a_blackhole_route", out(A, tcp(20000, 80), dst=BLACKHOLE_NET[1]), "drop_no_route"),
    *(drop(f"container_to_martian_{name}", out(A, udp(20000, 53), dst=addr), "drop_martian_dst")
      for name, addr in (("resolver_address", "127.0.0.11"), ("zero_net", "0.0.0.1"), ("multicast", "224.0.0.251"),
                         ("class_e", "240.1.2.3"), ("limited_broadcast", "255.255.255.255"),
                         ("own_subnet_broadcast", "10.0.1.255"))),
    # fn_from_route: replies only; the host's traffic passes uncounted, containers stay unreachable
    Case("route_host_traffic", via_vpn(tcp(443, 5555, "A")), "ok", [], ()),
    Case("route_routed_traffic", via_vpn(tcp(443, 5555, "A"), dst=SERVER), "ok", [], ()),
    drop("route_to_container_address", via_vpn(tcp(5555, 8005), dst=D.ipv4), "drop_direct_access"),
    drop("route_to_loopback", via_vpn(udp(5555, 53), dst=LOOPBACK), "drop_loopback_dst"),
    Case("route_no_published_ports", via_vpn(tcp(5555, 7005, "S")), "ok", [], ()),
    # a packet matching a container's own direction of the flow is no reply
    Case("route_container_direction_not_translated", via_vpn(udp(20000, 53), src=A.ipv4, dst=VPN_SERVER), "ok", [],
         (), given=(a_vpn_udp,)),
    # ICMP errors about a flow count on the device its peer is behind
    Case("icmp_error_through_the_second_route", via_vpn(ICMP(type=3, code=3) / quoted(VPN_IP, VPN_SERVER, udp(20000, 53)),
                                                         src=ROUTER), "redirect", peer(A), ("fwd_icmp_error",),
         error_rewritten(via_vpn(ICMP(type=3, code=3) / quoted(VPN_IP, VPN_SERVER, udp(20000, 53)), src=ROUTER),
                         outer_dst=A.ipv4, q_src=A.ipv4, into=A), given=(a_vpn_udp,)),
    host_bound("icmp_error_about_a_vpn_flow_on_the_uplink",
               icmp_error(ROUTER, VPN_IP, quoted(VPN_IP, VPN_SERVER, udp(20000, 53))), given=(a_vpn_udp,)),
    Case("icmp_error_about_an_uplink_flow_on_the_vpn",
         via_vpn(ICMP(type=3, code=3) / quoted(UPLINK_IP, SERVER, udp(20000, 53)), src=ROUTER, dst=UPLINK_IP), "ok", [],
         (), given=(a_udp,)),
]

# IP fragments: a 3000-byte UDP datagram (and a 2000-byte ping) in 1000-byte fragments, each
# translated by its datagram's flow; the expected fragments are those of the datagram
# translated whole (scapy computes the UDP checksum over all of it, then cuts).
def fragments(send: Send, ip_id: int = 0x4242, **changes) -> list[Send]:
    """send's datagram as the fragments its sender's stack makes of it (1000 bytes of payload
    each); with changes (rewritten()'s), as they must leave: the datagram rewritten first."""
    frame = send.frame.copy()
    frame[IP].id = ip_id
    datagram = Send(frame, send.port, send.via)
    if changes:
        datagram = Send(rewritten(datagram, **changes), send.port, send.via)
    eth = datagram.frame[Ether]
    return [Send(Ether(src=eth.src, dst=eth.dst) / f, send.port, send.via)
            for f in fragment(datagram.frame[IP], fragsize=1000)]


def sent(frags: list[Send]) -> list[Packet]:
    return [f.frame for f in frags]


BIG = bytes(range(256)) * 11 + bytes(184)  # 3000 bytes
a_big = out(A, UDP(sport=20000, dport=53) / Raw(BIG))
a_big_frags = fragments(a_big)
a_big_out = sent(fragments(a_big, src=UPLINK_IP))
server_big = inbound(UDP(sport=53, dport=20000) / Raw(BIG))
server_big_frags = fragments(server_big)
server_big_in = sent(fragments(server_big, dst=A.ipv4, into=A, ttl_decrement=TTL_DECREMENT_INTO_CONTAINER))
client_big = inbound(UDP(sport=5555, dport=5353) / Raw(BIG), src=CLIENT)
client_big_frags = fragments(client_big)
client_big_in = sent(fragments(client_big, dst=B.ipv4, dport=53, into=B, ttl_decrement=TTL_DECREMENT_INTO_CONTAINER))
a_big_ping = out(A, ICMP(type=8, id=0x1234, seq=1) / Raw(BIG[:2000]))
a_big_ping_frags = fragments(a_big_ping)
a_big_ping_out = sent(fragments(a_big_ping, src=UPLINK_IP))

FRAGMENT_CASES = [
    Case("snat_fragment_first", a_big_frags[0], "redirect", NEIGH, SNAT_NEW, a_big_out[0]),
    Case("snat_fragment_middle", a_big_frags[1], "redirect", NEIGH, CT, a_big_out[1], given=(a_big_frags[0],)),
    Case("snat_fragment_last", a_big_frags[3], "redirect", NEIGH, CT, a_big_out[3],
         given=(a_big_frags[0], a_big_frags[1], a_big_frags[2])),
    Case("snat_fragment_last_before_middle", a_big_frags[3], "redirect", NEIGH, CT, a_big_out[3],
         given=(a_big_frags[0],)),
    drop("snat_fragment_before_its_first", a_big_frags[1], "drop_fragment"),
    # another datagram (IP ID) of the same flow: its fragments wait for its own first one
    drop("snat_fragment_of_another_datagram", fragments(a_big, ip_id=0x4243)[1], "drop_fragment",
         given=(a_big_frags[0],)),
    Case("snat_fragment_of_a_ping", a_big_ping_frags[1], "redirect", NEIGH, CT, a_big_ping_out[1],
         given=(a_big_ping_frags[0],)),
    host_bound("container_fragment_to_the_host", fragments(out(A, UDP(sport=20000, dport=53) / Raw(BIG),
                                                               dst=UPLINK_IP))[1]),
    Case("reply_fragment_first", server_big_frags[0], "redirect", peer(A), CT, server_big_in[0], given=(a_udp,)),
    Case("reply_fragment_middle", server_big_frags[1], "redirect", peer(A), CT, server_big_in[1],
         given=(a_udp, server_big_frags[0])),
    Case("reply_fragment_last_before_middle", server_big_frags[3], "redirect", peer(A), CT, server_big_in[3],
         given=(a_udp, server_big_frags[0])),
    host_bound("reply_fragment_before_its_first", server_big_frags[1], given=(a_udp,)),
    host_bound("uplink_fragment_of_no_flow", server_big_frags[1]),
    Case("dnat_fragment_first", client_big_frags[0], "redirect", peer(B), DNAT_NEW, client_big_in[0]),
    Case("dnat_fragment_middle", client_big_frags[1], "redirect", peer(B), CT, client_big_in[1],
         given=(client_big_frags[0],)),
    Case("dnat_fragment_last", client_big_frags[3], "redirect", peer(B), CT, client_big_in[3],
         given=(client_big_frags[0], client_big_frags[1], client_big_frags[2])),
]

# Path MTU: a packet too big for the device it leaves by is answered by the sender's gateway
# with "fragmentation needed" (as a router does) instead of vanishing in the device.
SMALL_UPLINK = host(uplink_mtu=1400)
UPLINK_1400 = ((UPLINK_IFINDEX, 1400),)


def sized(send: Send, ip_len: int, **ip_fields) -> Send:
    """send's datagram padded to an IP total length of ip_len (DF set unless told otherwise)."""
    frame = Ether(bytes(send.frame))
    room = ip_len - len(frame[IP])
    frame[Raw].load = frame[Raw].load + bytes(room)
    frame[IP].flags = ip_fields.get("flags", "DF")
    del frame[IP].len, frame[IP].chksum
    if UDP in frame:
        del frame[UDP].len, frame[UDP].chksum
    elif TCP in frame:
        del frame[TCP].chksum
    return Send(Ether(bytes(frame)), send.port, send.via)


def frag_needed(send: Send, mtu: int) -> Packet:
    return gateway_answer(send, gateway_of(send.port).gateway, 3, 4, mtu)


a_1400 = sized(a_udp, 1400)
a_1401 = sized(a_udp, 1401)
a_1401_no_df = sized(a_udp, 1401, flags=0)
# (a test run takes frames up to about 3.5 kB: two segments each)
a_gso = sized(out(A, tcp(20000, 80, "PA") / Raw(b"x")), 40 + 2 * 1448)
a_gso_small = sized(out(A, tcp(20000, 80, "PA") / Raw(b"x")), 40 + 2 * 1348)
d_big_reply = sized(out(D, udp(53, 5555) / Raw(b"x"), dst=CLIENT), 1401)
a_vpn_1281 = sized(out(A, udp(20000, 53), dst=VPN_SERVER), 1281)
server_1500 = sized(inbound(udp(53, 20000)), 1500)

MTU_CASES = [
    Case("snat_fits_the_uplink_mtu", a_1400, "redirect", NEIGH, SNAT_NEW, to_uplink(a_1400, src=UPLINK_IP),
         host=SMALL_UPLINK, mtus=UPLINK_1400),
    Case("snat_too_big_for_the_uplink", a_1401, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_1401, 1400), host=SMALL_UPLINK, mtus=UPLINK_1400),
    Case("snat_tracked_too_big_for_the_uplink", a_1401, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_1401, 1400), given=(a_udp,), host=SMALL_UPLINK, mtus=UPLINK_1400),
    # fastnet cannot fragment: without DF the sender learns the MTU the same way
    Case("snat_too_big_without_df", a_1401_no_df, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_1401_no_df, 1400), host=SMALL_UPLINK, mtus=UPLINK_1400),
    # a GSO super-packet: its segments (IP + TCP headers + gso_size) are what must fit
    Case("snat_gso_segments_too_big", a_gso, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_gso, 1400), given=(a_syn,), host=SMALL_UPLINK, mtus=UPLINK_1400, gso_size=1448),
    Case("snat_gso_segments_fit", a_gso_small, "redirect", NEIGH, CT, to_uplink(a_gso_small, src=UPLINK_IP),
         given=(a_syn,), host=SMALL_UPLINK, mtus=UPLINK_1400, gso_size=1348),
    # the uplink's MTU unknown to the program: it asks the kernel for every packet
    Case("snat_too_big_uplink_mtu_unknown", a_1401, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_1401, 1400), host=host(uplink_mtu=0), mtus=UPLINK_1400),
    Case("dnat_reply_too_big_for_the_uplink", d_big_reply, "redirect", [("egress", D.ifindex)], ("fwd_frag_needed",),
         frag_needed(d_big_reply, 1400), given=(client_syn,), host=SMALL_UPLINK, mtus=UPLINK_1400),
    Case("snat_too_big_for_a_second_route", a_vpn_1281, "redirect", [("egress", A.ifindex)], ("fwd_frag_needed",),
         frag_needed(a_vpn_1281, 1280), mtus=((VPN_IFINDEX, 1280),)),
    # into a container nothing is checked: the veth takes it, as the host's stack would
    Case("reply_into_a_container_is_not_checked", server_1500, "redirect", peer(A), CT,
         into(A, server_1500, dst=A.ipv4), given=(a_udp,), host=SMALL_UPLINK, mtus=UPLINK_1400),
]

CASES = [
    # -- SNAT: a container's new flow to the outside leaves from the uplink address --
    Case("snat_tcp_syn", a_syn, "redirect", NEIGH, SNAT_NEW, to_uplink(a_syn, src=UPLINK_IP)),
    Case("snat_udp", a_udp, "redirect", NEIGH, SNAT_NEW, to_uplink(a_udp, src=UPLINK_IP)),
    Case("snat_udp_zero_checksum", a_udp_no_csum, "redirect", NEIGH, SNAT_NEW, to_uplink(a_udp_no_csum, src=UPLINK_IP)),
    Case("snat_icmp_echo", a_ping, "redirect", NEIGH, SNAT_NEW, to_uplink(a_ping, src=UPLINK_IP)),
    Case("snat_ip_options", a_syn_options, "redirect", NEIGH, SNAT_NEW, to_uplink(a_syn_options, src=UPLINK_IP)),
    Case("snat_from_other_network", d_udp, "redirect", NEIGH, SNAT_NEW, to_uplink(d_udp, src=UPLINK_IP)),
    Case("snat_first_fragment", out(A, udp(20000, 53), flags="MF"), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(20000, 53), flags="MF"), src=UPLINK_IP)),
    Case("snat_ttl_2_leaves_with_1", out(A, udp(20000, 53), ttl=2), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(20000, 53), ttl=2), src=UPLINK_IP)),
    # a wildcard published port is the host's only on the host's addresses
    Case("snat_to_published_port_of_other_host", out(A, tcp(20000, 7005), dst=NOT_HOST), "redirect", NEIGH,
         SNAT_NEW, to_uplink(out(A, tcp(20000, 7005), dst=NOT_HOST), src=UPLINK_IP)),
    Case("snat_second_packet", a_syn, "redirect", NEIGH, CT, to_uplink(a_syn, src=UPLINK_IP), given=(a_syn,)),
    # -- the external port: the container's own when it is in the SNAT range and nobody holds it --
    # a port of the host's ephemeral range is never kept: the host's own connections use those
    Case("snat_port_in_host_ephemeral_range_moves", out(A, tcp(EPHEMERAL, 80)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, tcp(EPHEMERAL, 80)), src=UPLINK_IP, sport=2000), host=ONE_SNAT_PORT),
    Case("snat_udp_port_in_host_ephemeral_range_moves", out(A, udp(EPHEMERAL, 53)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(EPHEMERAL, 53)), src=UPLINK_IP, sport=2000), host=ONE_SNAT_PORT),
    Case("snat_icmp_identifier_outside_range_moves", out(A, ping(EPHEMERAL)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, ping(EPHEMERAL)), src=UPLINK_IP, sport=2000), host=ONE_SNAT_PORT),
    # one external port per container endpoint, whatever it talks to (endpoint-independent mapping)
    Case("snat_mapping_reused_for_another_server", out(A, tcp(EPHEMERAL, 80), dst=OTHER_SERVER), "redirect", NEIGH,
         SNAT_NEW, to_uplink(out(A, tcp(EPHEMERAL, 80), dst=OTHER_SERVER), src=UPLINK_IP, sport=2000),
         given=(out(A, tcp(EPHEMERAL, 80)),), host=ONE_SNAT_PORT),
    # ... and never one another endpoint's mapping holds, even towards another server (no port overloading)
    Case("snat_port_taken_then_range", out(B, tcp(2000, 80)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(B, tcp(2000, 80)), src=UPLINK_IP, sport=2001), given=(out(A, tcp(2000, 80)),),
         host=TWO_SNAT_PORTS),
    Case("snat_port_held_by_another_endpoint", out(B, tcp(2000, 80), dst=OTHER_SERVER), "redirect", NEIGH,
         SNAT_NEW, to_uplink(out(B, tcp(2000, 80), dst=OTHER_SERVER), src=UPLINK_IP, sport=2001),
         given=(out(A, tcp(2000, 80)),), host=TWO_SNAT_PORTS),
    # ... nor one a socket of the host holds (bound before; ports it picks itself are in its own range)
    Case("snat_port_held_by_a_host_udp_socket", out(A, udp(2000, 53)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(2000, 53)), src=UPLINK_IP, sport=2001), host=TWO_SNAT_PORTS,
         host_sockets=((IPPROTO_UDP, 2000),)),
    Case("snat_port_held_by_a_host_tcp_listener", out(A, tcp(2000, 80)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, tcp(2000, 80)), src=UPLINK_IP, sport=2001), host=TWO_SNAT_PORTS,
         host_sockets=((IPPROTO_TCP, 2000),)),
    Case("snat_port_held_by_the_host_other_protocol", out(A, udp(2000, 53)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(2000, 53)), src=UPLINK_IP, sport=2000), host=TWO_SNAT_PORTS,
         host_sockets=((IPPROTO_TCP, 2000),)),
    # ... nor a published one
    Case("snat_port_published_moves", out(A, udp(5353, 53)), "redirect", NEIGH, SNAT_NEW,
         to_uplink(out(A, udp(5353, 53)), src=UPLINK_IP, sport=5354), host=host(snat_ports=(5353, 5354))),
    drop("snat_exhausted", out(B, tcp(2000, 80)), "drop_snat_exhausted", given=(out(A, tcp(2000, 80)),),
         host=ONE_SNAT_PORT),
    # -- replies from outside to the uplink address and a translated port --
    Case("reply_tcp_synack", server_synack, "redirect", peer(A), CT, into(A, server_synack, dst=A.ipv4),
         given=(a_syn,)),
    Case("reply_udp", server_udp, "redirect", peer(A), CT, into(A, server_udp, dst=A.ipv4), given=(a_udp,)),
    Case("reply_udp_zero_checksum", server_udp_no_csum, "redirect", peer(A), CT,
         into(A, server_udp_no_csum, dst=A.ipv4), given=(a_udp_no_csum,)),
    Case("reply_icmp_echo", server_pong, "redirect", peer(A), CT, into(A, server_pong, dst=A.ipv4), given=(a_ping,)),
    Case("reply_icmp_echo_moved_identifier", inbound(ping(2000, reply=True)), "redirect", peer(A), CT,
         into(A, inbound(ping(2000, reply=True)), dst=A.ipv4, dport=EPHEMERAL), given=(out(A, ping(EPHEMERAL)),),
         host=ONE_SNAT_PORT),
    Case("reply_ip_options", server_synack_options, "redirect", peer(A), CT,
         into(A, server_synack_options, dst=A.ipv4), given=(a_syn,)),
    Case("reply_to_range_port", inbound(tcp(80, 2001, "SA")), "redirect", peer(B), CT,
         into(B, inbound(tcp(80, 2001, "SA")), dst=B.ipv4, dport=2000),
         given=(out(A, tcp(2000, 80)), out(B, tcp(2000, 80))), host=TWO_SNAT_PORTS),
    Case("reply_to_kept_port_despite_range", inbound(tcp(80, 2000, "SA")), "redirect", peer(A), CT,
         into(A, inbound(tcp(80, 2000, "SA")), dst=A.ipv4),
         given=(out(A, tcp(2000, 80)), out(B, tcp(2000, 80))), host=TWO_SNAT_PORTS),
    Case("reply_to_moved_ephemeral_port", inbound(tcp(80, 2000, "SA")), "redirect", peer(A), CT,
         into(A, inbound(tcp(80, 2000, "SA")), dst=A.ipv4, dport=EPHEMERAL),
         given=(out(A, tcp(EPHEMERAL, 80)),), host=ONE_SNAT_PORT),
    Case("reply_to_other_network", inbound(udp(123, 8005)), "redirect", peer(D), CT,
         into(D, inbound(udp(123, 8005)), dst=D.ipv4), given=(d_udp,)),
    host_bound("reply_from_other_server", inbound(tcp(80, 20000, "SA"), src=OTHER_SERVER), given=(a_syn,)),
    # an echo *request* with the identifier of A's mapping is not a reply: the host answers it
    host_bound("echo_request_with_a_containers_identifier", inbound(ping(0x1234)), given=(a_ping,)),
    host_bound("echo_request_with_a_containers_identifier_other_sender", inbound(ping(0x1234), src=CLIENT),
               given=(a_ping,)),
    host_bound("echo_reply_of_a_moved_identifier_to_its_old_value", inbound(ping(EPHEMERAL, reply=True)),
               given=(out(A, ping(EPHEMERAL)),), host=ONE_SNAT_PORT),
    host_bound("reply_from_other_port", inbound(tcp(81, 20000, "SA")), given=(a_syn,)),
    host_bound("reply_other_protocol", inbound(udp(80, 20000)), given=(a_syn,)),
    host_bound("reply_to_other_host_address", inbound(tcp(80, 20000, "SA"), dst=SECOND_IP), given=(a_syn,)),
    # -- DNAT: a published port, from outside; the client's address is kept --
    Case("dnat_tcp", client_syn, "redirect", peer(D), DNAT_NEW, into(D, client_syn, dst=D.ipv4, dport=8005)),
    Case("dnat_range_first", inbound(tcp(5555, 7000), src=CLIENT), "redirect", peer(D), DNAT_NEW,
         into(D, inbound(tcp(5555, 7000), src=CLIENT), dst=D.ipv4, dport=8000)),
    Case("dnat_range_last", inbound(tcp(5555, 7099), src=CLIENT), "redirect", peer(D), DNAT_NEW,
         into(D, inbound(tcp(5555, 7099), src=CLIENT), dst=D.ipv4, dport=8099)),
    Case("dnat_wildcard_second_address", client_syn_second, "redirect", peer(D), DNAT_NEW,
         into(D, client_syn_second, dst=D.ipv4, dport=8005)),
    Case("dnat_wildcard_gateway_address", inbound(tcp(5555, 7005), src=CLIENT, dst=FRONT.gateway), "redirect",
         peer(D), DNAT_NEW, into(D, inbound(tcp(5555, 7005), src=CLIENT, dst=FRONT.gateway), dst=D.ipv4, dport=8005)),
    Case("dnat_ip_options", client_syn_options, "redirect", peer(D), DNAT_NEW,
         into(D, client_syn_options, dst=D.ipv4, dport=8005)),
    Case("dnat_udp_on_its_address", client_dns, "redirect", peer(B), DNAT_NEW,
         into(B, client_dns, dst=B.ipv4, dport=53)),
    Case("dnat_udp_zero_checksum", client_dns_no_csum, "redirect", peer(B), DNAT_NEW,
         into(B, client_dns_no_csum, dst=B.ipv4, dport=53)),
    Case("dnat_second_packet", client_syn, "redirect", peer(D), CT, into(D, client_syn, dst=D.ipv4, dport=8005),
         given=(client_syn,)),
    # a new inbound TCP flow starts with a SYN: anything else untracked is the host's (say, the
    # server's answers to a host process whose ephemeral port is in a published range)
    host_bound("dnat_tcp_synack_is_the_hosts", inbound(tcp(5555, 7005, "SA"), src=CLIENT)),
    host_bound("dnat_tcp_data_is_the_hosts", inbound(tcp(5555, 7005, "PA"), src=CLIENT)),
    host_bound("dnat_tcp_rst_is_the_hosts", inbound(tcp(5555, 7005, "R"), src=CLIENT)),
    host_bound("dnat_tcp_syn_fin_is_the_hosts", inbound(tcp(5555, 7005, "SF"), src=CLIENT)),
    host_bound("dnat_range_last_plus_one", inbound(tcp(5555, 7100), src=CLIENT)),
    host_bound("dnat_range_first_minus_one", inbound(tcp(5555, 6999), src=CLIENT)),
    host_bound("dnat_other_protocol", inbound(udp(5555, 7005), src=CLIENT)),
    host_bound("dnat_wildcard_not_a_host_address", inbound(tcp(5555, 7005), src=CLIENT, dst=NOT_HOST)),
    host_bound("dnat_address_specific_other_address", inbound(udp(5555, 5353), src=CLIENT, dst=SECOND_IP)),
    host_bound("dnat_local_only_port_on_uplink_address", inbound(tcp(5555, 9000), src=CLIENT)),
    drop("dnat_local_only_loopback", inbound(tcp(5555, 9000), src=CLIENT, dst=LOOPBACK), "drop_loopback_dst"),
    # only TCP and UDP have ports to publish: fn_pub_ports says so before any trie is asked
    host_bound("dnat_icmp_service", inbound(ping(7), src=CLIENT), services=(*SERVICES, PING_SERVICE)),
    # a published port's flow starts with its client's SYN
    host_bound("dnat_tcp_ack_without_flow", inbound(tcp(5555, 7005, "A"), src=CLIENT)),
    host_bound("dnat_tcp_syn_ack_without_flow", inbound(tcp(5555, 7005, "SA"), src=CLIENT)),
    # both published ports lead to D:8005: the second flow's reply tuple is the first's
    drop("dnat_reply_tuple_taken", inbound(tcp(5555, 9005), src=CLIENT, dst=SECOND_IP),
         "drop_ct_insert", given=(client_syn,), services=(*SERVICES, WEB_AGAIN)),
    # -- the backend's replies leave from the published address and port --
    Case("dnat_reply", d_synack, "redirect", NEIGH, CT, to_uplink(d_synack, src=UPLINK_IP, sport=7005),
         given=(client_syn,)),
    Case("dnat_reply_second_address", d_synack, "redirect", NEIGH, CT, to_uplink(d_synack, src=SECOND_IP, sport=7005),
         given=(client_syn_second,)),
    Case("dnat_reply_ip_options", d_synack_options, "redirect", NEIGH, CT,
         to_uplink(d_synack_options, src=UPLINK_IP, sport=7005), given=(client_syn,)),
    Case("dnat_reply_udp", b_dns_answer, "redirect", NEIGH, CT, to_uplink(b_dns_answer, src=UPLINK_IP, sport=5353),
         given=(client_dns,)),
    Case("dnat_reply_udp_zero_checksum", b_dns_answer_no_csum, "redirect", NEIGH, CT,
         to_uplink(b_dns_answer_no_csum, src=UPLINK_IP, sport=5353), given=(client_dns_no_csum,)),
    # -- hairpin: a container to a published port of the host, from the backend's gateway --
    # (the client's port follows the SNAT rules: the replies come to a host address)
    Case("hairpin_port_in_host_ephemeral_range_moves", out(A, tcp(EPHEMERAL, 7005), dst=UPLINK_IP), "redirect",
         peer(D), DNAT_NEW, into(D, out(A, tcp(EPHEMERAL, 7005), dst=UPLINK_IP), src=BACK.gateway, dst=D.ipv4,
                                 sport=2000, dport=8005), host=ONE_SNAT_PORT),
    Case("hairpin_port_held_by_a_host_socket", out(A, tcp(2000, 7005), dst=UPLINK_IP), "redirect", peer(D), DNAT_NEW,
         into(D, out(A, tcp(2000, 7005), dst=UPLINK_IP), src=BACK.gateway, dst=D.ipv4, sport=2001, dport=8005),
         host=TWO_SNAT_PORTS, host_sockets=((IPPROTO_TCP, 2000),)),
    Case("hairpin_uplink_address", a_hairpin, "redirect", peer(D), DNAT_NEW,
         into(D, a_hairpin, src=BACK.gateway, dst=D.ipv4, dport=8005)),
    Case("hairpin_own_gateway_address", out(A, tcp(20000, 7005), dst=FRONT.gateway), "redirect", peer(D), DNAT_NEW,
         into(D, out(A, tcp(20000, 7005), dst=FRONT.gateway), src=BACK.gateway, dst=D.ipv4, dport=8005)),
    Case("hairpin_same_network", a_hairpin_dns, "redirect", peer(B), DNAT_NEW,
         into(B, a_hairpin_dns, src=FRONT.gateway, dst=B.ipv4, dport=53)),
    Case("hairpin_to_itself", out(D, tcp(20000, 7005), dst=UPLINK_IP), "redirect", peer(D), DNAT_NEW,
         into(D, out(D, tcp(20000, 7005), dst=UPLINK_IP), src=BACK.gateway, dst=D.ipv4, dport=8005)),
    Case("hairpin_reply", d_hairpin_synack, "redirect", peer(A), CT,
         into(A, d_hairpin_synack, src=UPLINK_IP, dst=A.ipv4, sport=7005), given=(a_hairpin,)),
    Case("hairpin_reply_same_network", b_hairpin_dns_answer, "redirect", peer(A), CT,
         into(A, b_hairpin_dns_answer, src=UPLINK_IP, dst=A.ipv4, sport=5353), given=(a_hairpin_dns,)),
    # -- hairpin to another container's SNAT mapping (RFC 4787 REQ-9): A's flow to a STUN server
    # maps A:20000 to UPLINK_IP:20000; B (or D, on another network) sends there and reaches A,
    # from its own mapping, and A's answer reaches it back --
    Case("hairpin_to_snat_mapping_udp", b_to_a_mapping, "redirect", peer(A), SNAT_HAIRPIN_NEW,
         into(A, b_to_a_mapping, src=UPLINK_IP, dst=A.ipv4, sport=21000), given=(a_stun,)),
    Case("hairpin_to_snat_mapping_from_another_network", out(D, udp(21000, 20000), dst=UPLINK_IP), "redirect",
         peer(A), SNAT_HAIRPIN_NEW, into(A, out(D, udp(21000, 20000), dst=UPLINK_IP), src=UPLINK_IP, dst=A.ipv4),
         given=(a_stun,)),
    Case("hairpin_to_snat_mapping_reply", a_to_b_mapping, "redirect", peer(B), CT,
         into(B, a_to_b_mapping, src=UPLINK_IP, dst=B.ipv4, sport=20000), given=(a_stun, b_to_a_mapping)),
    Case("hairpin_to_snat_mapping_tcp_syn", out(B, tcp(21000, 20000), dst=UPLINK_IP), "redirect", peer(A),
         SNAT_HAIRPIN_NEW, into(A, out(B, tcp(21000, 20000), dst=UPLINK_IP), src=UPLINK_IP, dst=A.ipv4),
         given=(a_syn,)),
    # the sender's external port follows its own mapping (here moved out of the ephemeral range)
    Case("hairpin_to_snat_mapping_from_a_moved_port", out(B, udp(EPHEMERAL, 20000), dst=UPLINK_IP), "redirect",
         peer(A), SNAT_HAIRPIN_NEW, into(A, out(B, udp(EPHEMERAL, 20000), dst=UPLINK_IP), src=UPLINK_IP, dst=A.ipv4,
                                         sport=19999), given=(a_stun,), host=host(snat_ports=(19999, 20000))),
    host_bound("hairpin_to_snat_mapping_tcp_ack", out(B, tcp(21000, 20000, "A"), dst=UPLINK_IP), given=(a_syn,)),
    host_bound("hairpin_to_snat_mapping_other_protocol", out(B, tcp(21000, 20000), dst=UPLINK_IP), given=(a_stun,)),
    host_bound("hairpin_to_snat_mapping_other_address", out(B, udp(21000, 20000), dst=SECOND_IP), given=(a_stun,)),
    host_bound("hairpin_to_snat_mapping_icmp_echo_reply", out(B, ping(0x1234, reply=True), dst=UPLINK_IP),
               given=(a_ping,)),
    # a container answering a host process connected to it from an ephemeral port that is in
    # a published range: the SYN-ACK and the data go to that process, not to the published one
    host_bound("hairpin_synack_to_a_host_process", out(A, tcp(80, 7005, "SA"), dst=FRONT.gateway)),
    host_bound("hairpin_data_to_a_host_process", out(A, tcp(80, 7005, "PA"), dst=UPLINK_IP)),
    # a port published on 127.0.0.1 is for host processes only; 127/8 is never routed
    drop("hairpin_local_only", out(A, tcp(20000, 9000), dst=LOOPBACK), "drop_martian_dst"),
    # -- from a container, to the host itself or untranslatable: the host stack decides --
    host_bound("container_to_host_unpublished_port", out(A, tcp(20000, 22), dst=UPLINK_IP)),
    host_bound("container_to_published_port_other_protocol", out(A, udp(20000, 7005), dst=UPLINK_IP)),
    host_bound("container_to_address_specific_port_other_address", out(A, udp(20000, 5353), dst=SECOND_IP)),
    host_bound("container_to_peer_via_gateway", out(A, udp(20000, 53), dst=B.ipv4)),
    # untranslatable: the host's when addressed to it, never out with a private source
    drop("container_non_first_fragment", out(A, Raw(bytes(16)), proto=17, frag=100), "drop_fragment"),
    host_bound("container_non_first_fragment_to_the_host", out(A, Raw(bytes(16)), proto=17, frag=100, dst=UPLINK_IP)),
    drop("container_other_protocol", out(A, Raw(bytes(16)), proto=132), "drop_nat_proto"),
    host_bound("container_other_protocol_to_the_host", out(A, Raw(bytes(16)), proto=132, dst=UPLINK_IP)),
    host_bound("container_other_protocol_to_its_gateway", out(A, Raw(bytes(16)), proto=47, dst=FRONT.gateway)),
    drop("container_icmp_error_about_no_flow",
         out(A, ICMP(type=3, code=3) / IP(src=str(SERVER), dst=str(A.ipv4)) / UDP(sport=53, dport=20001)),
         "drop_icmp_error"),
    host_bound("container_icmp_error_to_the_host",
               out(A, ICMP(type=3, code=3) / IP(src=str(UPLINK_IP), dst=str(A.ipv4)) / UDP(sport=22, dport=20001),
                   dst=UPLINK_IP)),
    drop("container_icmp_not_echo", out(A, ICMP(type=13)), "drop_nat_proto"),
    host_bound("container_icmp_not_echo_to_the_host", out(A, ICMP(type=13), dst=UPLINK_IP)),
    drop("container_tcp_header_truncated", out(A, Raw(bytes(10)), proto=6), "drop_malformed_l4"),
    drop("container_udp_length_zero", out(A, UDP(sport=20000, dport=53, len=0) / Raw(b"fastnet")),
         "drop_malformed_l4"),
    drop("container_udp_length_beyond_ip", out(A, UDP(sport=20000, dport=53, len=200) / Raw(b"fastnet")),
         "drop_malformed_l4"),
    host_bound("uplink_udp_length_zero_not_translated",
               inbound(UDP(sport=5555, dport=5353, len=0) / Raw(b"fastnet"), src=CLIENT)),
    host_bound("internal_to_own_gateway", out(F, udp(20000, 53), dst=INTERNAL.gateway)),
    host_bound("internal_to_own_subnet", out(F, udp(20000, 53), dst="10.0.4.3")),
    drop("internal_to_outside", out(F, udp(20000, 53)), "drop_internal"),
    drop("internal_to_host_uplink_address", out(F, udp(20000, 53), dst=UPLINK_IP), "drop_internal"),
    # -- from the uplink: drops, and the host's own traffic --
    drop("uplink_to_container_address", inbound(tcp(5555, 8005), src=CLIENT, dst=D.ipv4), "drop_direct_access"),
    drop("uplink_to_container_address_icmp", inbound(ping(1), dst=A.ipv4), "drop_direct_access"),
    drop("uplink_to_loopback", inbound(udp(5555, 53), dst=LOOPBACK), "drop_loopback_dst"),
    drop("uplink_to_loopback_net", inbound(udp(5555, 53), dst="127.0.0.53"), "drop_loopback_dst"),
    # a container's source from outside: never a client, never a reply; to the host it is the
    # host's to judge (its reverse-path filter)
    drop("uplink_from_container_address_to_published_port", inbound(tcp(20000, 7005), src=A.ipv4),
         "drop_uplink_spoof"),
    drop("uplink_from_container_address_matching_its_flow", inbound(tcp(20000, 80, "A"), src=A.ipv4, dst=SERVER),
         "drop_uplink_spoof", given=(a_syn,)),
    host_bound("uplink_from_container_address_to_the_host", inbound(tcp(20000, 22), src=A.ipv4)),
    host_bound("uplink_unknown_flow", inbound(tcp(5555, 22), src=CLIENT)),
    host_bound("uplink_ping_to_host", inbound(ping(1))),
    host_bound("uplink_non_first_fragment", inbound(Raw(bytes(16)), proto=17, frag=100)),
    host_bound("uplink_other_protocol", inbound(Raw(bytes(16)), proto=47)),
    host_bound("uplink_tcp_header_truncated", inbound(Raw(bytes(10)), proto=6)),
    host_bound("uplink_arp", Send(Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff")
                                  / ARP(hwsrc=ROUTER_MAC, psrc="198.51.100.254", pdst=str(UPLINK_IP)))),
    host_bound("uplink_ipv6", Send(Ether(src=ROUTER_MAC, dst="33:33:00:00:00:02") / IPv6(dst="ff02::2")
                                   / ICMPv6ND_RS())),
    host_bound("uplink_ipv4_ihl_4", inbound(udp(5555, 53), ihl=4)),
    host_bound("uplink_ipv4_total_length_beyond_frame", inbound(udp(5555, 53), len=100)),
    *ICMP_ERROR_CASES,
    *MARTIAN_SOURCE_CASES,
    *PARSING_CASES,
    *ROUTING_CASES,
    *FRAGMENT_CASES,
    *MTU_CASES,
]


def params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


def delta(before: dict, after: dict) -> dict:
    keys = before.keys() | after.keys()
    diff = {k: tuple(a - b for a, b in zip(after.get(k, (0, 0)), before.get(k, (0, 0)))) for k in keys}
    return {k: v for k, v in diff.items() if v != (0, 0)}


@pytest.mark.parametrize("case", params(CASES))
def test_nat(nat, case: Case):
    nat.configure(case.host, case.services)
    nat.datapath.mtus = dict(case.mtus)
    for earlier in case.given:
        assert run(nat, earlier).verdict == "redirect", "a packet this case builds on was not translated"
    frame = bytes(case.send.frame)
    expected_output = frame if case.output == UNCHANGED else bytes(case.output)
    before = nat.counters()

    with host_sockets(case.host_sockets):
        result = run(nat, case.send, linear=case.linear, vlan=case.vlan, gso_size=case.gso_size)

    assert (result.verdict, result.redirects) == (case.verdict, case.redirects)
    assert result.output.hex() == expected_output.hex()
    assert result.pulled == case.pulled
    assert delta(before, nat.counters()) == {(case.send.prog, c): (1, len(frame)) for c in case.counters}


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# ---- conntrack: entries, states, timeouts, expiry -------------------------------------------------

# Distinct short timeouts (seconds), so each check shows which one the datapath applied.
SHORT = {"tcp_syn": 11, "tcp_established": 22, "tcp_half_closed": 7, "tcp_closing": 3, "udp": 4, "icmp": 5}


@dataclass(frozen=True)
class Entry:
    """What a test expects of one conntrack entry (one direction of a flow)."""

    orig: tuple  # (saddr, sport, daddr, dport) as packets arrive
    translated: tuple  # as they leave
    reply: bool
    kind: str  # snat | dnat | hairpin


def entries(nat: Nat) -> dict[tuple, CtRecord]:
    """{(orig, translated, reply, kind): record} of every conntrack entry."""
    return {(r.orig, r.translated, r.reply, r.kind): r for r in nat.conntrack()}


def key(e: Entry) -> tuple:
    """e in the shape of an entries() key."""
    def tuple_of(t):
        return (IPv4Address(t[0]), t[1], IPv4Address(t[2]), t[3])
    return (tuple_of(e.orig), tuple_of(e.translated), e.reply, e.kind)


@dataclass(frozen=True)
class Flow:
    id: str
    first: Send
    reply: Send
    entries: tuple[Entry, Entry]  # the forward direction, then the reply direction
    new_timeout: str  # SHORT key of an unconfirmed flow
    confirmed_timeout: str
    handshake_ack: Send | None = None  # TCP: the client's ACK, which confirms (the SYN-ACK does not)


FLOWS = [
    Flow("snat_tcp", a_syn, server_synack,
         (Entry((A.ipv4, 20000, SERVER, 80), (UPLINK_IP, 20000, SERVER, 80), False, "snat"),
          Entry((SERVER, 80, UPLINK_IP, 20000), (SERVER, 80, A.ipv4, 20000), True, "snat")),
         "tcp_syn", "tcp_established", out(A, tcp(20000, 80, "A"))),
    Flow("snat_udp", a_udp, server_udp,
         (Entry((A.ipv4, 20000, SERVER, 53), (UPLINK_IP, 20000, SERVER, 53), False, "snat"),
          Entry((SERVER, 53, UPLINK_IP, 20000), (SERVER, 53, A.ipv4, 20000), True, "snat")),
         "udp", "udp"),
    Flow("snat_icmp_echo", a_ping, server_pong,  # the identifier: the request's sport, the reply's dport
         (Entry((A.ipv4, 0x1234, SERVER, 0), (UPLINK_IP, 0x1234, SERVER, 0), False, "snat"),
          Entry((SERVER, 0, UPLINK_IP, 0x1234), (SERVER, 0, A.ipv4, 0x1234), True, "snat")),
         "icmp", "icmp"),
    Flow("dnat_tcp", client_syn, d_synack,
         (Entry((CLIENT, 5555, UPLINK_IP, 7005), (CLIENT, 5555, D.ipv4, 8005), False, "dnat"),
          Entry((D.ipv4, 8005, CLIENT, 5555), (UPLINK_IP, 7005, CLIENT, 5555), True, "dnat")),
         "tcp_syn", "tcp_established", inbound(tcp(5555, 7005, "A"), src=CLIENT)),
    Flow("dnat_udp", client_dns, b_dns_answer,
         (Entry((CLIENT, 5555, UPLINK_IP, 5353), (CLIENT, 5555, B.ipv4, 53), False, "dnat"),
          Entry((B.ipv4, 53, CLIENT, 5555), (UPLINK_IP, 5353, CLIENT, 5555), True, "dnat")),
         "udp", "udp"),
    Flow("hairpin_tcp", a_hairpin, d_hairpin_synack,
         (Entry((A.ipv4, 20000, UPLINK_IP, 7005), (BACK.gateway, 20000, D.ipv4, 8005), False, "hairpin"),
          Entry((D.ipv4, 8005, BACK.gateway, 20000), (UPLINK_IP, 7005, A.ipv4, 20000), True, "hairpin")),
         "tcp_syn", "tcp_established", out(A, tcp(20000, 7005, "A"), dst=UPLINK_IP)),
]


@pytest.mark.parametrize("flow", FLOWS, ids=[f.id for f in FLOWS])
def test_new_flow_is_unconfirmed_until_its_first_reply(nat, flow: Flow):
    """Both entries of a new flow are unconfirmed (state new, the short timeout for new flows of
    the host config); the first reply confirms both (established, the longer one) — for TCP the
    client's ACK of the SYN-ACK, so that answered spoofed SYNs stay unconfirmed."""
    nat.configure(host(**SHORT))
    t0 = nat.now
    assert run(nat, flow.first).verdict == "redirect"
    ct = entries(nat)
    assert set(ct) == {key(e) for e in flow.entries}
    for r in ct.values():
        assert (r.confirmed, r.state, r.created_ns) == (False, "new", t0)
        assert r.expires_ns == t0 + SHORT[flow.new_timeout] * NSEC

    t1 = nat.advance(1)
    assert run(nat, flow.reply).verdict == "redirect"
    if flow.handshake_ack is not None:
        assert {(r.confirmed, r.state) for r in entries(nat).values()} == {(False, "new")}
        assert run(nat, flow.handshake_ack).verdict == "redirect"
    ct = entries(nat)
    assert set(ct) == {key(e) for e in flow.entries}
    for r in ct.values():
        assert (r.confirmed, r.state, r.created_ns) == (True, "established", t0)
        assert r.expires_ns == t1 + SHORT[flow.confirmed_timeout] * NSEC


def states(nat: Nat) -> dict[bool, tuple[str, int]]:
    """{reply direction?: (state, expires_ns)} of the one flow in conntrack."""
    records = nat.conntrack()
    assert len(records) == 2 and all(r.confirmed for r in records)
    return {r.reply: (r.state, r.expires_ns) for r in records}


def test_tcp_fin_in_both_directions_closes_with_the_short_timeout(nat):
    nat.configure(host(**SHORT))
    for send in (a_syn, server_synack, out(A, tcp(20000, 80, "A")), inbound(tcp(80, 20000, "PA"))):
        assert run(nat, send).verdict == "redirect"
    established = nat.now + SHORT["tcp_established"] * NSEC
    assert states(nat) == {False: ("established", established), True: ("established", established)}

    t1 = nat.advance(2)
    assert run(nat, out(A, tcp(20000, 80, "FA"))).verdict == "redirect"
    # half-closed: the server may still send; the whole flow takes the half-closed timeout
    # (test_conntrack.py: traffic either way refreshes it)
    assert states(nat) == {False: ("half-closed", t1 + 7 * NSEC), True: ("half-closed", t1 + 7 * NSEC)}

    t2 = nat.advance(1)
    assert run(nat, inbound(tcp(80, 20000, "FA"))).verdict == "redirect"
    assert states(nat) == {False: ("closing", t2 + 3 * NSEC), True: ("closing", t2 + 3 * NSEC)}
    assert run(nat, out(A, tcp(20000, 80, "A"))).verdict == "redirect"  # the last ACK: no refresh
    assert states(nat) == {False: ("closing", t2 + 3 * NSEC), True: ("closing", t2 + 3 * NSEC)}

    nat.advance(3 + 1)
    assert nat.expire() == 2
    assert nat.conntrack() == []
    late = run(nat, inbound(tcp(80, 20000, "A")))
    assert (late.verdict, late.redirects) == ("ok", [])


@pytest.mark.parametrize("rst", [out(A, tcp(20000, 80, "R")), inbound(tcp(80, 20000, "R"))],
                         ids=["from_container", "from_server"])
def test_tcp_rst_closes_both_directions(nat, rst: Send):
    nat.configure(host(**SHORT))
    for send in (a_syn, server_synack, a_ack):
        run(nat, send)
    t1 = nat.advance(1)
    assert run(nat, rst).verdict == "redirect"
    assert states(nat) == {False: ("closed", t1 + 3 * NSEC), True: ("closed", t1 + 3 * NSEC)}


@pytest.mark.parametrize("flow", FLOWS, ids=[f.id for f in FLOWS])
def test_expired_flow_is_removed_and_forgotten(nat, flow: Flow):
    """Nothing expires before its deadline; past it, the agent's GC removes both entries and
    the reply is no longer translated."""
    nat.configure(host(**SHORT))
    run(nat, flow.first)
    timeout = SHORT[flow.new_timeout]
    nat.advance(timeout)
    assert nat.expire() == 0
    nat.advance(0.001)
    assert nat.expire() == 2
    assert nat.conntrack() == []
    late = run(nat, flow.reply)
    assert not set(entries(nat)) & {key(e) for e in flow.entries}, "the expired flow came back"
    if flow.reply.port is None:
        assert (late.verdict, late.redirects) == ("ok", [])


def test_traffic_refreshes_both_directions_of_a_flow(nat):
    nat.configure(host(**SHORT))
    run(nat, a_udp)
    run(nat, server_udp)
    t1 = nat.advance(3)
    run(nat, a_udp)
    run(nat, server_udp)
    assert states(nat) == {False: ("established", t1 + 4 * NSEC), True: ("established", t1 + 4 * NSEC)}
    nat.advance(3)  # past the first deadline, before the refreshed one
    assert nat.expire() == 0
    assert run(nat, server_udp).redirects == peer(A)


def test_refresh_is_rate_limited(nat):
    """A confirmed entry's deadline moves only when it would move by more than
    FN_CT_REFRESH_INTERVAL (1 s): fewer map writes."""
    nat.configure(host(**SHORT))
    run(nat, a_udp)
    run(nat, server_udp)
    t0 = nat.now
    nat.advance(1)
    run(nat, a_udp)
    assert states(nat)[False] == ("established", t0 + 4 * NSEC)
    t2 = nat.advance(0.5)
    run(nat, a_udp)
    assert states(nat)[False] == ("established", t2 + 4 * NSEC)


def test_one_way_traffic_keeps_the_whole_flow(nat):
    nat.configure(host(**SHORT))
    run(nat, a_udp)
    run(nat, server_udp)  # confirmed; both entries expire at t0 + 4 s
    for _ in range(3):  # the container keeps sending, every 2 s; the server is silent
        nat.advance(2)
        assert run(nat, a_udp).redirects == NEIGH
        nat.expire()
    assert len(nat.conntrack()) == 2
    assert run(nat, server_udp).redirects == peer(A)


def test_tcp_tuple_reopened_after_rst_becomes_established(nat):
    nat.configure(host(**SHORT))
    for send in (a_syn, server_synack, inbound(tcp(80, 20000, "R"))):
        run(nat, send)
    t1 = nat.advance(1)
    for send in (a_syn, server_synack, out(A, tcp(20000, 80, "A"))):  # the same tuple, again
        assert run(nat, send).verdict == "redirect"
    established = t1 + SHORT["tcp_established"] * NSEC
    assert states(nat) == {False: ("established", established), True: ("established", established)}


# ---- port collisions ----------------------------------------------------------------------------

COLLIDING = {  # the request from source port 20000; the server's reply to a port; that reply delivered
    "tcp": (tcp(20000, 80), lambda port: tcp(80, port, "SA"), {"dport": 20000}),
    "udp": (udp(20000, 53), lambda port: udp(53, port), {"dport": 20000}),
    "icmp_echo": (ping(20000), lambda port: ping(port, reply=True), {"dport": 20000}),  # a reply's identifier
}


def translated_sport(result: RunResult) -> int:
    l4 = IP(result.output[14:]).payload
    return l4.id if isinstance(l4, ICMP) else l4.sport


@pytest.mark.parametrize("proto", COLLIDING)
def test_same_source_port_to_the_same_server_gets_distinct_ports(nat, proto: str):
    """A keeps 20000; B and C, sending from 20000 to the same server and port, get other
    ports of the SNAT range; each reply reaches the container whose flow it belongs to."""
    request, reply, back = COLLIDING[proto]
    ports = {}
    for container in (A, B, C):
        send = out(container, request.copy())
        result = run(nat, send)
        port = ports[container] = translated_sport(result)
        assert (result.verdict, result.redirects) == ("redirect", NEIGH)
        assert result.output.hex() == bytes(to_uplink(send, src=UPLINK_IP, sport=port)).hex()
    assert ports[A] == 20000
    assert len(set(ports.values())) == 3
    assert all(SNAT_PORTS[0] <= ports[c] <= SNAT_PORTS[1] for c in (B, C))

    for container in (C, A, B):
        answer = inbound(reply(ports[container]))
        result = run(nat, answer)
        assert (result.verdict, result.redirects) == ("redirect", peer(container))
        assert result.output.hex() == bytes(into(container, answer, dst=container.ipv4, **back)).hex()
    request_len, reply_len = len(out(A, request.copy()).frame), len(inbound(reply(20000)).frame)
    assert nat.counters() == {(PROG, "fwd_snat"): (3, 3 * request_len), (PROG, "fwd_ct"): (3, 3 * request_len),
                              (UPLINK_PROG, "fwd_ct"): (3, 3 * reply_len)}


def test_hairpin_clients_with_the_same_source_port_get_distinct_ports(nat):
    """Hairpinned, both clients come from the backend's gateway: the second one's port moves."""
    first, second = out(A, tcp(20000, 7005), dst=UPLINK_IP), out(B, tcp(20000, 7005), dst=UPLINK_IP)
    run(nat, first)
    result = run(nat, second)
    port = translated_sport(result)
    assert port != 20000 and SNAT_PORTS[0] <= port <= SNAT_PORTS[1]
    assert result.output.hex() == bytes(into(D, second, src=BACK.gateway, dst=D.ipv4, sport=port, dport=8005)).hex()

    for client, client_port in ((B, port), (A, 20000)):
        answer = out(D, tcp(8005, client_port, "SA"), dst=BACK.gateway)
        result = run(nat, answer)
        assert (result.verdict, result.redirects) == ("redirect", peer(client))
        assert result.output.hex() == bytes(into(client, answer, src=UPLINK_IP, dst=client.ipv4, sport=7005,
                                                 dport=20000)).hex()


# ---- SNAT mappings (fn_nat_maps): one external port per container endpoint -------------------------

def mappings(nat: Nat) -> set[tuple]:
    """Both sides of every SNAT mapping: (proto, keyed by the external side?, key, value)."""
    return {(m.proto, m.external, m.key, m.value) for m in nat.maps.nat_maps()}


def mapping(proto: str, container: PortRecord, port: int, external_port: int) -> set[tuple]:
    return {(proto, False, (container.ipv4, port), (UPLINK_IP, external_port)),
            (proto, True, (UPLINK_IP, external_port), (container.ipv4, port))}


def test_an_endpoint_keeps_its_external_port_for_every_destination(nat):
    """RFC 4787 REQ-1 (endpoint-independent mapping) with a port that must move: A's port of the
    host's ephemeral range gets one external port, the same towards every server."""
    nat.configure(host(snat_ports=(2000, 2999)))
    ports = set()
    for server in (SERVER, OTHER_SERVER, NOT_HOST):
        for l4 in (udp(EPHEMERAL, 53), udp(EPHEMERAL, 123)):
            result = run(nat, out(A, l4, dst=server))
            assert result.redirects == NEIGH
            ports.add(translated_sport(result))
    (port,) = ports
    assert 2000 <= port <= 2999
    assert mappings(nat) == mapping("udp", A, EPHEMERAL, port)


def test_a_mapping_outside_a_new_snat_range_is_not_reused(nat):
    """`up` recomputes the SNAT range from ip_local_port_range: an endpoint whose mapping's port
    is no longer in it gets a port of the new range for its next flow."""
    nat.configure(host(snat_ports=(2000, 2000)))
    assert translated_sport(run(nat, out(A, udp(EPHEMERAL, 53)))) == 2000
    nat.configure(host(snat_ports=(3000, 3000)))
    assert translated_sport(run(nat, out(A, udp(EPHEMERAL, 53), dst=OTHER_SERVER))) == 3000


def test_a_mapping_lives_while_a_flow_uses_it(nat):
    """The agent's GC deletes a mapping once no tracked flow uses it and no flow took it for the
    grace period; until then the port stays the endpoint's (B cannot have it)."""
    nat.configure(host(snat_ports=(2000, 2000), **SHORT))
    t0 = nat.now
    assert translated_sport(run(nat, out(A, udp(EPHEMERAL, 53)))) == 2000
    grace = 10 * NSEC
    nat.advance(SHORT["udp"] + 1)
    assert nat.expire() == 2 and nat.conntrack() == []
    assert nat.maps.nat_maps_expire(nat.now, grace) == 0  # within the grace period
    assert run(nat, out(B, udp(EPHEMERAL, 53))).verdict == "shot"  # drop_snat_exhausted: 2000 is A's
    nat.advance(t0 + grace - nat.now)
    assert nat.maps.nat_maps_expire(nat.now, grace) == 2
    assert mappings(nat) == set()
    assert translated_sport(run(nat, out(B, udp(EPHEMERAL, 53)))) == 2000
    assert mappings(nat) == mapping("udp", B, EPHEMERAL, 2000)


def test_a_mapping_in_use_is_never_collected(nat):
    nat.configure(host(snat_ports=(2000, 2000), **SHORT))
    run(nat, out(A, udp(EPHEMERAL, 53)))
    for _ in range(20):  # a minute of replies, one every 3 s, GC in between
        nat.advance(3)
        assert run(nat, inbound(udp(53, 2000))).redirects == peer(A)
        nat.expire()
        assert nat.maps.nat_maps_expire(nat.now, 10 * NSEC) == 0
    assert mappings(nat) == mapping("udp", A, EPHEMERAL, 2000)


def test_two_containers_punch_through_each_others_mapping(nat):
    """RFC 4787 REQ-9 with both ends sending first (UDP hole punching as ICE does it): A and B
    learn their mappings from a STUN server, then each sends to the other's. It is one flow:
    each side's packets reach the other from the sender's mapping, whoever started."""
    b_stun = out(B, udp(21000, 3478))
    for send in (a_stun, b_stun):
        assert run(nat, send).redirects == NEIGH
    before = nat.counters()
    first = run(nat, a_to_b_mapping)
    assert first.redirects == peer(B)
    assert first.output.hex() == bytes(into(B, a_to_b_mapping, src=UPLINK_IP, dst=B.ipv4)).hex()
    second = run(nat, b_to_a_mapping)
    assert second.redirects == peer(A)
    assert second.output.hex() == bytes(into(A, b_to_a_mapping, src=UPLINK_IP, dst=A.ipv4)).hex()
    assert delta(before, nat.counters()) == {
        (PROG, "fwd_snat_hairpin"): (1, len(a_to_b_mapping.frame)),
        (PROG, "fwd_ct"): (2, len(a_to_b_mapping.frame) + len(b_to_a_mapping.frame)),
    }
    hairpin = {(r.orig, r.translated) for r in nat.conntrack() if r.kind == "hairpin"}
    assert hairpin == {
        ((A.ipv4, 20000, UPLINK_IP, 21000), (UPLINK_IP, 20000, B.ipv4, 21000)),
        ((B.ipv4, 21000, UPLINK_IP, 20000), (UPLINK_IP, 21000, A.ipv4, 20000)),
    }


def test_conntrack_flush_forgets_the_mappings(nat):
    run(nat, a_udp)
    assert mappings(nat) == mapping("udp", A, 20000, 20000)
    nat.maps.conntrack_flush()
    assert mappings(nat) == set()


def assert_checksums_valid(frame: bytes) -> None:
    """The IP and transport checksums of frame are what scapy computes from scratch."""
    p = Ether(frame)
    del p[IP].chksum
    del p[IP].payload.chksum
    assert bytes(Ether(bytes(p))).hex() == frame.hex()


# ---- TTL ------------------------------------------------------------------------------------------

INTO_CONTAINERS = [  # (given, the packet delivered into a container)
    pytest.param((a_syn,), server_synack, id="snat_reply"),
    pytest.param((), client_syn, id="dnat"),
    pytest.param((), a_hairpin, id="hairpin"),
    pytest.param((a_hairpin,), d_hairpin_synack, id="hairpin_reply"),
]


@pytest.mark.parametrize(("given", "send"), INTO_CONTAINERS)
def test_ttl_is_decremented_into_containers(nat, given, send: Send):
    for earlier in given:
        run(nat, earlier)
    result = run(nat, send)
    assert result.verdict == "redirect"
    assert IP(result.output[14:]).ttl == send.frame[IP].ttl - 1
    assert_checksums_valid(result.output)


TTL_EXPIRES = [  # (given, a packet with TTL 1 that would be routed, who answers, its port)
    pytest.param((a_syn, server_synack), out(A, tcp(20000, 80, "A"), ttl=1), FRONT.gateway, A, id="tracked_flow"),
    pytest.param((), out(A, udp(20001, 33434), ttl=1), FRONT.gateway, A, id="new_flow"),
    pytest.param((client_syn,), out(D, tcp(8005, 5555, "SA"), dst=CLIENT, ttl=1), BACK.gateway, D, id="dnat_reply"),
    pytest.param((), inbound(tcp(5555, 7005), src=CLIENT, ttl=1), UPLINK_IP, None, id="dnat_from_outside"),
]


@pytest.mark.parametrize(("given", "send", "gateway", "port"), TTL_EXPIRES)
def test_the_gateway_answers_an_expiring_ttl(nat, given, send: Send, gateway, port):
    """A packet that would be routed but has TTL 1 gets the gateway's time exceeded (no flow
    is created for it); traceroute's first hop answers without the host routing anything."""
    for earlier in given:
        run(nat, earlier)
    flows_before = len(nat.conntrack())
    before = nat.counters()
    result = run(nat, send)
    back_out = port.ifindex if port else UPLINK_IFINDEX
    assert (result.verdict, result.redirects) == ("redirect", [("egress", back_out)])
    assert result.output.hex() == bytes(time_exceeded(send, gateway)).hex()
    assert delta(before, nat.counters()) == {(send.prog, "fwd_ttl_exceeded"): (1, len(send.frame))}
    assert len(nat.conntrack()) == flows_before


# ---- what the uplink must not reach -----------------------------------------------------------------


@pytest.mark.parametrize(("given", "spoofed"), [
    pytest.param((a_hairpin,), inbound(tcp(20000, 7005, "A"), src=A.ipv4), id="into_hairpin_backend"),
    pytest.param((a_syn,), inbound(tcp(20000, 80, "A"), src=A.ipv4, dst=SERVER), id="reflected_by_snat"),
])
def test_uplink_packet_with_a_container_source_is_not_translated(nat, given, spoofed: Send):
    for earlier in given:
        run(nat, earlier)
    before = nat.counters()
    result = run(nat, spoofed)
    assert result.redirects == []
    assert (UPLINK_PROG, "fwd_ct") not in delta(before, nat.counters())
