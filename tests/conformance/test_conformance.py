"""Conformance: the same packets through both backends (see testbed.py for the topology and
conformance.py for what each case expects, with the documented differences).

Each test observes one behaviour, reduces it to a small value and hands it to
`record.expect(value)`, which asserts it against EXPECT[case][backend] and fills the matrix."""
from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPOption_NOP, Raw, fragment
from scapy.layers.inet import IPerror, UDPerror

from checks import dst, ip_bytes, problems, src
from harness import (
    BLOCKED,
    HOST_UPLINK_IP,
    WORLD_UPLINK_IP,
    EchoServer,
    far_network,
    make_socket,
    marker,
    netns,
    run,
    tcp_echo,
    udp_echo,
    udp_stream,
)
from testbed import GW, HOST_IP2, WORLD2_IP
from testbed import IP as ADDR, has, quiet, send, taps

BCAST = "ff:ff:ff:ff:ff:ff"


def frame(env, frm: str, to_ip: str, l4, *, dst_mac: str | None = None, src_ip: str | None = None, ttl: int = 64, **ipkw):
    """An Ethernet frame from container frm (or "world") to to_ip: to the peer's MAC when to_ip
    is a container of frm's network, else to frm's gateway (WORLD: to HOST's uplink)."""
    if frm == "world":
        eth = Ether(src=env.mac("world"), dst=dst_mac or env.mac("host"))
        s = src_ip or WORLD_UPLINK_IP
    else:
        peer = next((n for n, ip in ADDR.items() if ip == to_ip), None)
        same = peer is not None and env.c[peer].nets.keys() == env.c[frm].nets.keys()
        eth = Ether(src=env.mac(frm), dst=dst_mac or (env.mac(peer) if same else env.gw_mac(frm)))
        s = src_ip or ADDR[frm]
    return eth / IP(src=s, dst=to_ip, ttl=ttl, **ipkw) / l4


def udp_to(port: int, mark: bytes, sport: int = 40000, **kw):
    return UDP(sport=sport, dport=port, **kw) / Raw(mark)


# =============================================================================================
# L2
# =============================================================================================
def _arp_reply(env, target: str):
    with taps(env, "a") as t:
        send(env, "a", Ether(src=env.mac("a"), dst=BCAST) / ARP(op=1, hwsrc=env.mac("a"), psrc=ADDR["a"], pdst=target))
        got = t["a"].wait(lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == target)
    return (got[0][ARP].hwsrc, got[0][ARP].pdst, got[0][Ether].dst) if got else "no reply"


def test_arp_gateway(env, record):
    record.expect(_arp_reply(env, GW["front"]))


def test_arp_peer(env, record):
    record.expect(_arp_reply(env, ADDR["b"]))


def test_unicast_same_network_ttl_unchanged(env, record):
    m = marker("uni")
    with taps(env, "b", "c", "d", "world") as t:
        send(env, "a", frame(env, "a", ADDR["b"], udp_to(5000, m)))
        got = t["b"].wait(has(m))
        quiet(0.3)
        others = [n for n in ("c", "d", "world") if t[n].match(has(m))]
    obs = "not delivered"
    if got:
        p = got[0]
        obs = (p[Ether].src, p[IP].src, p[IP].ttl, problems(ip_bytes(p)), others)
    record.expect(obs)


def test_broadcast_stays_in_its_network(env, record):
    m = marker("bcast")
    with taps(env, "b", "c", "d", "world") as t:
        send(env, "a", Ether(src=env.mac("a"), dst=BCAST) / IP(src=ADDR["a"], dst="255.255.255.255") / udp_to(5001, m))
        t["b"].wait(has(m))
        quiet(0.3)
        record.expect(sorted(n for n in t if t[n].match(has(m))))


def _l2_probe(env, frm_frame, mark) -> str:
    with taps(env, "b", "c", "world") as t:
        send(env, "a", frm_frame)
        got = t["b"].wait(has(mark), timeout=1.0)
        quiet(0.2)
        assert not t["c"].match(has(mark)) and not t["world"].match(has(mark)), "leaked out of its network"
    return "delivered" if got else "dropped"


def test_unknown_unicast_mac(env, record):
    m = marker("unknown")
    f = Ether(src=env.mac("a"), dst="02:fa:0a:5a:01:63") / IP(src=ADDR["a"], dst=ADDR["b"]) / udp_to(5002, m)
    record.expect(_l2_probe(env, f, m))


def test_spoofed_source_mac(env, record):
    m = marker("smac")
    f = Ether(src="02:00:00:00:00:99", dst=env.mac("b")) / IP(src=ADDR["a"], dst=ADDR["b"]) / udp_to(5003, m)
    record.expect(_l2_probe(env, f, m))


def test_spoofed_source_ip(env, record):
    m1, m2 = marker("sip-peer"), marker("sip-world")
    with taps(env, "b", "world") as t:
        send(env, "a", frame(env, "a", ADDR["b"], udp_to(5004, m1), src_ip="10.90.1.99"))
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5004, m2), src_ip="10.90.1.99"))
        t["b"].wait(has(m1), timeout=1.0)
        t["world"].wait(has(m2), timeout=1.0)
        w = t["world"].match(has(m2))
        record.expect((bool(t["b"].match(has(m1))), w[0][IP].src if w else None))


def test_vlan_tagged_frame(env, record):
    m = marker("vlan")
    f = Ether(src=env.mac("a"), dst=env.mac("b")) / Dot1Q(vlan=5) / IP(src=ADDR["a"], dst=ADDR["b"]) / udp_to(5005, m)
    record.expect(_l2_probe(env, f, m))


def test_link_local_multicast(env, record):
    out = {}
    for name, mac in (("stp 01:80:c2:00:00:00", "01:80:c2:00:00:00"), ("lldp 01:80:c2:00:00:0e", "01:80:c2:00:00:0e")):
        m = marker("ll")
        out[name] = _l2_probe(env, Ether(src=env.mac("a"), dst=mac) / Raw(b"\0" * 20 + m), m)
    record.expect(out)


def test_unicast_to_own_mac(env, record):
    m = marker("own")
    with taps(env, "a", "b") as t:
        send(env, "a", Ether(src=env.mac("a"), dst=env.mac("a")) / IP(src=ADDR["a"], dst=ADDR["a"]) / udp_to(5006, m))
        back = t["a"].wait(has(m), timeout=1.0)
        assert not t["b"].match(has(m))
    record.expect("reflected back to the sender" if back else "dropped")


# =============================================================================================
# L3
# =============================================================================================
def test_ttl_routed_once_through_snat(env, record):
    m = marker("ttl")
    with taps(env, "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5010, m, sport=20010), ttl=64))
        got = t["world"].wait(has(m))
    p = got[0] if got else None
    record.expect(p and (p[IP].src, p[UDP].sport, p[IP].ttl, bytes(p[Raw]) == m, problems(ip_bytes(p))))


def test_ttl_expiry_at_gateway(env, record):
    m = marker("ttl1")
    with taps(env, "a", "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5011, m, sport=40011), ttl=1))
        err = t["a"].wait(lambda p: ICMP in p and p[ICMP].type in (3, 11) and m in bytes(p[ICMP].payload) or (IPerror in p and p[UDPerror].sport == 40011), timeout=1.5)
        leaked = bool(t["world"].match(has(m)))
    obs = {"world received it": leaked}
    if err:
        e = err[0]
        obs["icmp to sender"] = (e[ICMP].type, e[ICMP].code, e[IP].src, e[IPerror].src, e[UDPerror].sport)
    else:
        obs["icmp to sender"] = None
    record.expect(obs)


def test_ip_options_pass(env, record):
    opts = [IPOption_NOP()] * 4
    out = {}
    for to, tap in ((ADDR["b"], "b"), (WORLD_UPLINK_IP, "world")):
        m = marker("opt")
        with taps(env, tap) as t:
            send(env, "a", frame(env, "a", to, udp_to(5012, m, sport=40012), options=opts))
            got = t[tap].wait(has(m))
        p = got[0] if got else None
        out[tap] = p and (p[IP].ihl, bytes(p[IP])[20:24].hex(), p[IP].ttl, bytes(p[Raw]) == m, problems(ip_bytes(p)))
    record.expect(out)


def _recv_datagram(sock, timeout=2.0):
    sock.settimeout(timeout)
    try:
        return sock.recvfrom(65535)
    except socket.timeout:
        return None


def test_fragments_through_dnat(env, record):
    payload = marker("frag-dnat") + os.urandom(3000)
    srv = make_socket(env.ns("b"), socket.SOCK_DGRAM)
    with srv, taps(env, "b") as t:
        srv.bind(("0.0.0.0", 53))
        pkt = IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP, id=0x4321) / UDP(sport=41020, dport=8053) / Raw(payload)
        frags = fragment(pkt, fragsize=1000)
        send(env, "world", *[Ether(src=env.mac("world"), dst=env.mac("host")) / f for f in frags])
        got = _recv_datagram(srv)
        seen = t["b"].match(lambda p: IP in p and p[IP].src == WORLD_UPLINK_IP and p[IP].proto == 17)
    record.expect({
        "fragments sent": len(frags),
        "container got the datagram": bool(got and got[0] == payload and got[1] == (WORLD_UPLINK_IP, 41020)),
        "fragments reaching the container": len(seen),
    })


def test_fragments_through_snat(env, record):
    payload = marker("frag-snat") + os.urandom(3000)
    srv = make_socket(env.ns("world"), socket.SOCK_DGRAM)
    with srv, taps(env, "world") as t:
        srv.bind(("0.0.0.0", 6021))
        pkt = IP(src=ADDR["a"], dst=WORLD_UPLINK_IP, id=0x4322) / UDP(sport=21021, dport=6021) / Raw(payload)
        frags = fragment(pkt, fragsize=1000)
        send(env, "a", *[Ether(src=env.mac("a"), dst=env.gw_mac("a")) / f for f in frags])
        got = _recv_datagram(srv)
        seen = t["world"].match(lambda p: IP in p and p[IP].id == 0x4322)
    record.expect({
        "fragments sent": len(frags),
        "world got the datagram": bool(got and got[0] == payload and got[1] == (HOST_UPLINK_IP, 21021)),
        "fragments reaching world (src)": sorted({p[IP].src for p in seen}),
    })


def test_pmtu_fragmentation_needed_through_nat(env, record):
    with far_network(env.host, 1280):
        with taps(env, "a") as t:
            m = marker("pmtu")
            send(env, "a", frame(env, "a", "203.0.113.2", ICMP(id=0x5151, seq=1) / Raw(m + b"x" * 1400), flags="DF"))
            got = t["a"].wait(lambda p: ICMP in p and p[ICMP].type == 3 and p[ICMP].code == 4)
    p = got[0] if got else None
    record.expect(p and {
        "outer": (p[IP].src, p[IP].dst),
        "next-hop mtu": p[ICMP].nexthopmtu,
        "quoted": (p[IPerror].src, p[IPerror].dst),
        "well formed": problems(ip_bytes(p)),
    })


# =============================================================================================
# NAT (RFC 4787 / RFC 5382)
# =============================================================================================
def test_nat_mapping_endpoint_independence(env, record):
    sport = 41030
    with taps(env, "world") as t:
        marks = []
        for to, dport in ((WORLD_UPLINK_IP, 5030), (WORLD_UPLINK_IP, 5031), (WORLD2_IP, 5030)):
            m = marker("eim")
            marks.append(m)
            send(env, "a", frame(env, "a", to, udp_to(dport, m, sport=sport)))
        for m in marks:
            t["world"].wait(has(m))
        ports = [t["world"].match(has(m))[0][UDP].sport if t["world"].match(has(m)) else None for m in marks]
    record.expect("endpoint-independent" if len(set(ports)) == 1 and None not in ports else f"dependent {ports}")


def test_nat_mapping_under_contention(env, record):
    """RFC 4787 mapping behaviour where port preservation cannot hide it: b holds external port
    21200 towards WORLD2:5200; a then uses source port 21200 towards WORLD:5200 (a free tuple) and
    towards WORLD2:5200 (taken by b). Endpoint-independent mapping would reuse a's first external
    port for both destinations; "dependent" means a's mapping depends on the remote."""
    sport = 21200
    mb, m1, m2 = marker("cont-b"), marker("cont-a1"), marker("cont-a2")
    with taps(env, "world") as t:
        send(env, "b", frame(env, "b", WORLD2_IP, udp_to(5200, mb, sport=sport)))
        t["world"].wait(has(mb))
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5200, m1, sport=sport)))
        t["world"].wait(has(m1))
        send(env, "a", frame(env, "a", WORLD2_IP, udp_to(5200, m2, sport=sport)))
        t["world"].wait(has(m2))
        ports = {k: (t["world"].match(has(m))[0][UDP].sport if t["world"].match(has(m)) else None)
                 for k, m in (("b -> world2", mb), ("a -> world", m1), ("a -> world2", m2))}
    assert None not in ports.values(), ports
    record.expect({
        "b -> world2 keeps its port": ports["b -> world2"] == sport,
        "a -> world keeps its port": ports["a -> world"] == sport,
        "a's mapping": "endpoint-independent" if ports["a -> world"] == ports["a -> world2"] else "endpoint-dependent",
    })


def test_uplink_packet_with_container_source(env, record):
    """WORLD sends to a published port with a container's address as source (spoofed)."""
    m = marker("uplink-spoof")
    with taps(env, "b") as t:
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, udp_to(8053, m, sport=41210), src_ip=ADDR["a"]))
        got = t["b"].wait(has(m), timeout=1.0)
    record.expect(f"delivered from {got[0][IP].src}" if got else "dropped")


def test_nat_port_preservation(env, record):
    """A container's source port is kept when it is free: by both backends for a port outside
    the host's ip_local_port_range; one inside it the eBPF datapath never keeps (the host's own
    connections take their source ports from that range; README: NAT)."""
    lo, hi = _local_port_range(env)
    out = {}
    for label, sport in (("outside ip_local_port_range", 21040), ("inside ip_local_port_range", 41040)):
        m = marker("pp")
        with taps(env, "world") as t:
            send(env, "a", frame(env, "a", WORLD_UPLINK_IP, TCP(sport=sport, dport=5040, flags="S") / Raw(m)))
            got = t["world"].wait(has(m))
        port = got[0][TCP].sport if got else None
        where = "kept" if port == sport else "outside ip_local_port_range" if port and not lo <= port <= hi else port
        out[label] = got and (got[0][IP].src, where)
    record.expect(out)


def test_host_socket_and_container_on_the_same_port(env, record):
    """The host and container a talk to WORLD's UDP echo server from the same port of the host's
    ip_local_port_range, a first, then the other way round: each gets its own replies."""
    out = {}
    for order, port in ((("a", "host"), 41300), (("host", "a"), 41310)):
        with EchoServer(env.ns("world"), "udp") as srv:
            socks = {}
            try:
                for who in order:
                    socks[who] = make_socket(env.ns(who), socket.SOCK_DGRAM)
                    socks[who].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    socks[who].bind(("0.0.0.0", port))
                    udp_stream("", WORLD_UPLINK_IP, srv.port, count=1, sock=socks[who])
                out[" then ".join(order)] = {who: udp_stream("", WORLD_UPLINK_IP, srv.port, count=10, sock=socks[who])
                                             for who in (*order, *order)}
            finally:
                for s in socks.values():
                    s.close()
    record.expect(out)


def _local_port_range(env) -> tuple[int, int]:
    lo, hi = run("ip", "netns", "exec", env.host.name, "sysctl", "-n", "net.ipv4.ip_local_port_range").stdout.split()
    return int(lo), int(hi)


def test_nat_port_collision(env, record):
    sport = 21050
    ma, mb = marker("coll-a"), marker("coll-b")
    with taps(env, "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5050, ma, sport=sport)))
        t["world"].wait(has(ma))
        send(env, "b", frame(env, "b", WORLD_UPLINK_IP, udp_to(5050, mb, sport=sport)))
        t["world"].wait(has(mb))
        pa, pb = t["world"].match(has(ma)), t["world"].match(has(mb))
    assert pa and pb, "a datagram did not reach WORLD"
    first, second = pa[0][UDP].sport, pb[0][UDP].sport
    lo, hi = _local_port_range(env)
    where = "inside ip_local_port_range" if lo <= second <= hi else "outside ip_local_port_range"
    if second < 1024:
        where = "below 1024"
    if env.backend == "iptables":
        where = "Linux's choice in 1024-65535" if second >= 1024 else where  # nf_nat picks any free port
    record.expect((first, second != first, where))


def test_nat_filtering_of_unsolicited_inbound(env, record):
    sport = 41060
    srv = make_socket(env.ns("world"), socket.SOCK_DGRAM)
    with srv, taps(env, "a") as t:
        srv.bind((WORLD_UPLINK_IP, 5060))
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5060, marker("filt-out"), sport=sport)))
        got = _recv_datagram(srv)
        assert got, "the outbound datagram did not reach WORLD"
        ext = got[1][1]
        probes = {
            "same endpoint (reply)": (WORLD_UPLINK_IP, 5060),
            "same address, other port": (WORLD_UPLINK_IP, 5061),
            "other address, same port": (WORLD2_IP, 5060),
        }
        marks = {}
        for name, (s, sp) in probes.items():
            m = marker("filt")
            marks[name] = m
            send(env, "world", frame(env, "world", HOST_UPLINK_IP, udp_to(ext, m, sport=sp), src_ip=s))
        t["a"].wait(has(marks["same endpoint (reply)"]))
        quiet(0.3)
        record.expect({name: bool(t["a"].match(has(m))) for name, m in marks.items()})


def _hairpin_peers(env, client: str):
    with EchoServer(env.ns("b"), "tcp", port=80) as tcp, EchoServer(env.ns("b"), "udp", port=53) as udp:
        r = (tcp_echo(env.ns(client), HOST_UPLINK_IP, 8080, size=4096, timeout=1.5),
             udp_echo(env.ns(client), HOST_UPLINK_IP, 8053, timeout=0.7, tries=2))
        return {"tcp": r[0], "udp": r[1], "server saw": sorted({a for a, _ in tcp.peers + udp.peers})}


def test_hairpin_to_itself(env, record):
    record.expect(_hairpin_peers(env, "b"))


def test_hairpin_from_peer_on_same_network(env, record):
    record.expect(_hairpin_peers(env, "a"))


def test_hairpin_from_another_network(env, record):
    obs = _hairpin_peers(env, "c")
    obs["tcp"] = "blocked" if obs["tcp"] in BLOCKED else obs["tcp"]
    obs["udp"] = "blocked" if obs["udp"] in BLOCKED else obs["udp"]
    record.expect(obs)


def test_hairpin_to_another_containers_snat_mapping(env, record):
    """RFC 4787 REQ-9: a sends to WORLD from port 21400 (WORLD sees a's mapping, as STUN would
    tell a); c, on another network, then sends to that mapping on HOST's address."""
    m1, m2 = marker("req9-out"), marker("req9-in")
    with taps(env, "a", "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5400, m1, sport=21400)))
        seen = t["world"].wait(has(m1))
        assert seen, "a's datagram did not reach WORLD"
        send(env, "c", frame(env, "c", HOST_UPLINK_IP, udp_to(seen[0][UDP].sport, m2, sport=21401)))
        got = t["a"].wait(has(m2), timeout=1.0)
    p = got[0] if got else None
    record.expect((p[IP].src, p[UDP].sport, p[IP].dst, p[UDP].dport) if p else "not delivered")


def test_icmp_echo_identifier_translation(env, record):
    m = marker("echo")
    with taps(env, "a", "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, ICMP(type=8, id=0x4242, seq=7) / Raw(m)))
        out = t["world"].wait(lambda p: ICMP in p and p[ICMP].type == 8 and m in bytes(p))
        back = t["a"].wait(lambda p: ICMP in p and p[ICMP].type == 0 and m in bytes(p))
    o, b = (out[0] if out else None), (back[0] if back else None)
    record.expect({
        "world sees": o and (o[IP].src, o[ICMP].id == 0x4242, problems(ip_bytes(o))),
        "reply to container": b and (b[IP].src, b[IP].dst, b[ICMP].id, b[ICMP].seq, problems(ip_bytes(b))),
    })


def test_echo_request_with_a_containers_identifier(env, record):
    """a pings WORLD; WORLD then sends HOST an echo *request* carrying the identifier a's ping
    had on the wire: HOST answers it, a never sees it."""
    m, m2 = marker("echo-id"), marker("echo-id-request")
    with taps(env, "a", "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, ICMP(type=8, id=0x4444, seq=1) / Raw(m)))
        out = t["world"].wait(lambda p: ICMP in p and p[ICMP].type == 8 and m in bytes(p))
        assert out, "a's echo request did not reach WORLD"
        assert t["a"].wait(lambda p: ICMP in p and p[ICMP].type == 0 and m in bytes(p)), "a got no reply"
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, ICMP(type=8, id=out[0][ICMP].id, seq=2) / Raw(m2)))
        answered = t["world"].wait(lambda p: ICMP in p and p[ICMP].type == 0 and m2 in bytes(p))
        quiet(0.3)
        record.expect({"a saw it": bool(t["a"].match(has(m2))), "answered by": answered[0][IP].src if answered else None})


def test_icmp_error_translation_embedded_header(env, record):
    m = marker("unreach")
    with taps(env, "a") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5999, m, sport=41070)))
        got = t["a"].wait(lambda p: ICMP in p and p[ICMP].type == 3 and UDPerror in p and p[UDPerror].sport == 41070)
    p = got[0] if got else None
    inner = bytes(p[IPerror]) if p else b""
    record.expect(p and {
        "outer": (p[IP].src, p[IP].dst, p[ICMP].type, p[ICMP].code),
        "quoted": (p[IPerror].src, p[IPerror].dst, p[UDPerror].sport, p[UDPerror].dport),
        "outer well formed": problems(ip_bytes(p)),
        "quoted ip checksum ok": __import__("scapy.utils", fromlist=["checksum"]).checksum(inner[:20]) == 0,
    })


def test_icmp_error_from_published_container(env, record):
    """WORLD -> published UDP port with nothing listening in b: b's port unreachable must reach
    WORLD from the published address, quoting the packet WORLD sent (addresses and ports)."""
    m = marker("dnat-unreach")
    with taps(env, "world") as t:
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, udp_to(8053, m, sport=41220)))
        got = t["world"].wait(lambda p: ICMP in p and p[ICMP].type == 3 and UDPerror in p and p[UDPerror].sport == 41220)
    p = got[0] if got else None
    record.expect(p and {
        "outer": (p[IP].src, p[IP].dst, p[ICMP].type, p[ICMP].code),
        "quoted": (p[IPerror].src, p[IPerror].dst, p[UDPerror].sport, p[UDPerror].dport),
        "outer well formed": problems(ip_bytes(p)),
    })


def test_ip_options_through_dnat(env, record):
    m = marker("opt-dnat")
    with taps(env, "b") as t:
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, udp_to(8053, m, sport=41221), options=[IPOption_NOP()] * 4))
        got = t["b"].wait(has(m))
    p = got[0] if got else None
    record.expect(p and (p[IP].src, p[IP].dst, p[UDP].dport, p[IP].ihl, p[IP].ttl, ip_bytes(p).endswith(m), problems(ip_bytes(p))))


class _CloseFirstServer:
    """A TCP server in WORLD that reads until the client's data arrives, answers, and closes
    first (so WORLD, not the container, holds TIME_WAIT) or with RST."""

    def __init__(self, ns, port):
        self.sock = make_socket(ns, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((WORLD_UPLINK_IP, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.peers, self._stop = [], threading.Event()
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                continue
            self.peers.append(peer)
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.sendall(conn.recv(100))

    def close(self):
        self._stop.set()
        self.t.join(2)
        self.sock.close()


def _tcp_exchange(env, port, sport, rst=False):
    s = make_socket(env.ns("a"), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(2)
    try:
        s.connect((WORLD_UPLINK_IP, port))
        s.sendall(b"hello")
        ok = s.recv(100) == b"hello"
        if rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.recv(100)  # the server's FIN
        return "ok" if ok else "mismatch"
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()


def test_tcp_rst_closes_the_mapping(env, record, request):
    """The container resets a connection; then (a) a segment of the old connection from the
    remote end, in window (the sequence numbers the remote would use next), 0.3 s later, and
    (b) a new connection from the same source port to the same server. Measured: both backends
    keep the reset flow for a short closing timeout (Linux: CLOSE, 10 s; eBPF: FN_CT_CLOSED,
    tcp_closing) in which an in-window segment is still translated, and both let the tuple be
    reused at once with the same external port."""
    srv = _CloseFirstServer(env.ns("world"), 5080)
    try:
        with taps(env, "world") as tw:
            first = _tcp_exchange(env, 5080, 21080, rst=True)
            time.sleep(0.3)
            ext = srv.peers[-1][1] if srv.peers else 21080
            segs = tw["world"].match(lambda p: TCP in p and p[TCP].sport == ext and p[TCP].dport == 5080)
        rst = [p for p in segs if p[TCP].flags.R]
        acks = [p for p in segs if p[TCP].flags.A and not p[TCP].flags.R]
        assert rst and acks, "did not see the container's RST and ACKs at WORLD"
        seq, ack = acks[-1][TCP].ack, rst[-1][TCP].seq  # what the server would send next
        m = marker("after-rst")
        with taps(env, "a") as t:
            send(env, "world", frame(env, "world", HOST_UPLINK_IP, TCP(sport=5080, dport=ext, flags="PA", seq=seq, ack=ack) / Raw(m)))
            leaked = bool(t["a"].wait(has(m), timeout=0.8))
        again = _tcp_exchange(env, 5080, 21080)
        record.expect({"first": first, "in-window segment after RST still translated": leaked, "reopened": again,
                       "external ports": [p for _, p in srv.peers]})
    finally:
        srv.close()


def test_tcp_rst_outside_the_window(env, record):
    """A connection from a to WORLD; WORLD then sends an RST with the connection's addresses
    and ports but a sequence number half the sequence space away from the one it would use
    (a blind RST). Measured: whether it reaches the container, and whether the connection
    still works after it."""
    listener = make_socket(env.ns("world"), socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((WORLD_UPLINK_IP, 5082))
    listener.listen(1)
    client = make_socket(env.ns("a"), socket.SOCK_STREAM)
    client.settimeout(2)
    try:
        with taps(env, "world") as tw:
            client.connect((WORLD_UPLINK_IP, 5082))
            server, (_, ext) = listener.accept()
            with server:
                server.settimeout(2)
                client.sendall(b"hello")
                server.sendall(server.recv(100))
                assert client.recv(100) == b"hello"
                segs = tw["world"].wait(lambda p: TCP in p and p[TCP].sport == ext and p[TCP].flags.A)
                nxt = max(p[TCP].ack for p in segs)  # the server's next sequence number
                blind = (nxt + (1 << 31)) % (1 << 32)
                with taps(env, "a") as t:
                    send(env, "world", frame(env, "world", HOST_UPLINK_IP, TCP(sport=5082, dport=ext, flags="R", seq=blind)))
                    reached = bool(t["a"].wait(lambda p: TCP in p and p[TCP].flags.R and p[TCP].seq == blind, timeout=0.8))
                client.sendall(b"again")
                server.sendall(server.recv(100))
                after = "ok" if client.recv(100) == b"again" else "mismatch"
    except OSError as exc:
        after = type(exc).__name__
    finally:
        client.close()
        listener.close()
    record.expect({"blind rst reached the container": reached, "connection after it": after})


def test_tcp_fin_then_reopen(env, record):
    srv = _CloseFirstServer(env.ns("world"), 5081)
    try:
        res = [_tcp_exchange(env, 5081, 21081) for _ in range(3)]
        record.expect({"exchanges": res, "external ports": [p for _, p in srv.peers]})
    finally:
        srv.close()


def test_udp_zero_checksum(env, record):
    m = marker("zero")
    with taps(env, "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5090, m, sport=41090, chksum=0)))
        got = t["world"].wait(has(m))
    record.expect(got and (got[0][IP].src, got[0][UDP].chksum, problems(ip_bytes(got[0]))))


def test_tcp_bad_checksum(env, record):
    m = marker("badsum")
    with taps(env, "world") as t:
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, TCP(sport=41100, dport=5100, flags="S", chksum=0x1234) / Raw(m)))
        got = t["world"].wait(has(m), timeout=1.0)
    record.expect(got and (got[0][IP].src, problems(ip_bytes(got[0]))) or "dropped")


# =============================================================================================
# Publishing
# =============================================================================================
def test_publish_tcp(env, record):
    m = marker("ptcp")
    with EchoServer(env.ns("b"), "tcp", port=80) as srv, taps(env, "b") as t:
        ok = tcp_echo(env.ns("world"), HOST_UPLINK_IP, 8080)
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, TCP(sport=41110, dport=8080, flags="S") / Raw(m)))
        got = t["b"].wait(has(m))
        p = got[0] if got else None
        record.expect({
            "echo": ok, "server saw": sorted({a for a, _ in srv.peers}),
            "syn at container": p and (p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport, p[IP].ttl, problems(ip_bytes(p))),
        })


def test_tcp_segment_without_a_flow_to_a_published_port(env, record):
    """WORLD sends the published TCP port a SYN-ACK and a data segment of no tracked connection:
    what the answers to a host process's connection from an ephemeral port inside a published
    range look like."""
    out = {}
    for (name, flags), sport in zip((("syn-ack", "SA"), ("ack with data", "PA")), (41230, 41231)):
        m = marker("nosyn")
        with taps(env, "b") as t:
            send(env, "world", frame(env, "world", HOST_UPLINK_IP,
                                     TCP(sport=sport, dport=8080, flags=flags, seq=1000, ack=2000) / Raw(m)))
            got = t["b"].wait(has(m), timeout=1.0)
        out[name] = "delivered to b" if got else "not delivered"
    record.expect(out)


def test_publish_udp(env, record):
    m = marker("pudp")
    with EchoServer(env.ns("b"), "udp", port=53) as srv, taps(env, "b") as t:
        ok = udp_echo(env.ns("world"), HOST_UPLINK_IP, 8053)
        send(env, "world", frame(env, "world", HOST_UPLINK_IP, udp_to(8053, m, sport=41111)))
        got = t["b"].wait(has(m))
        p = got[0] if got else None
        record.expect({
            "echo": ok, "server saw": sorted({a for a, _ in srv.peers}),
            "datagram at container": p and (p[IP].src, p[IP].dst, p[UDP].sport, p[UDP].dport, p[IP].ttl, problems(ip_bytes(p))),
        })


def test_publish_range(env, record):
    servers = [EchoServer(env.ns("b"), "tcp", port=7000 + i) for i in range(3)]
    try:
        res = {p: tcp_echo(env.ns("world"), HOST_UPLINK_IP, p, timeout=1) for p in (7000, 7001, 7002, 7003)}
        res[7003] = "blocked" if res[7003] in ("ECONNREFUSED", *BLOCKED) else res[7003]
        record.expect({"results": res, "connections per server": [len(s.peers) for s in servers]})
    finally:
        for s in servers:
            s.close()


def _reach(r: str) -> str:
    return "blocked" if r in ("ECONNREFUSED", *BLOCKED) else r


def test_publish_address_bound(env, record):
    with EchoServer(env.ns("b"), "tcp", port=9000), EchoServer(env.ns("b"), "tcp", port=80):
        record.expect({
            "9000 on 198.51.100.1": _reach(tcp_echo(env.ns("world"), HOST_UPLINK_IP, 9000, timeout=1)),
            "9000 on 198.51.100.4": _reach(tcp_echo(env.ns("world"), HOST_IP2, 9000, timeout=1)),
            "8080 on 198.51.100.4 (every address)": _reach(tcp_echo(env.ns("world"), HOST_IP2, 8080, timeout=1)),
        })


def test_publish_loopback_only(env, record):
    with EchoServer(env.ns("b"), "tcp", port=443) as srv:
        record.expect({
            "host 127.0.0.1:9443": _reach(tcp_echo(env.ns("host"), "127.0.0.1", 9443, timeout=1)),
            "world 198.51.100.1:9443": _reach(tcp_echo(env.ns("world"), HOST_UPLINK_IP, 9443, timeout=1)),
            "host 198.51.100.1:9443": _reach(tcp_echo(env.ns("host"), HOST_UPLINK_IP, 9443, timeout=1)),
            "server saw": sorted({a for a, _ in srv.peers}),
        })


def test_host_sockets_to_two_published_udp_ports(env, record):
    """One unconnected UDP socket of the host, IPv4 or IPv6 with IPv4-mapped addresses, sends to
    b's 8053 on HOST's address and c's 8054 on 127.0.0.1, then reads both replies: the source
    each reply shows, by the destination its datagram went to; and an IPv6 socket's TCP
    connection to ::ffff:198.51.100.1:8080."""
    out = {}
    with EchoServer(env.ns("b"), "udp", port=53), EchoServer(env.ns("c"), "udp", port=53), \
            EchoServer(env.ns("b"), "tcp", port=80):
        for family, label, prefix in ((socket.AF_INET, "ipv4", ""), (socket.AF_INET6, "ipv6-mapped", "::ffff:")):
            with netns(env.ns("host")):
                s = socket.socket(family, socket.SOCK_DGRAM)
            with s:
                s.settimeout(1.5)
                dests = {f"{prefix}{HOST_UPLINK_IP}:8053": (prefix + HOST_UPLINK_IP, 8053),
                         f"{prefix}127.0.0.1:8054": (prefix + "127.0.0.1", 8054)}
                for name, dest in dests.items():
                    s.sendto(name.encode(), dest)
                seen = {}
                try:
                    for _ in dests:
                        data, peer = s.recvfrom(100)
                        seen[data.decode()] = f"{peer[0]}:{peer[1]}"
                except OSError as exc:
                    seen["error"] = type(exc).__name__
                out[label] = seen
        with netns(env.ns("host")):
            t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        with t:
            t.settimeout(2)
            try:
                t.connect((f"::ffff:{HOST_UPLINK_IP}", 8080))
                t.sendall(b"hello")
                out["tcp ::ffff:198.51.100.1:8080"] = (t.recv(5) == b"hello", "%s:%s" % t.getpeername()[:2])
            except OSError as exc:
                out["tcp ::ffff:198.51.100.1:8080"] = type(exc).__name__
    record.expect(out)


def test_unpublished_port_unreachable(env, record):
    with EchoServer(env.ns("b"), "tcp", port=81) as srv, EchoServer(env.ns("b"), "udp", port=54) as usrv:
        record.expect({
            "tcp 81": _reach(tcp_echo(env.ns("world"), HOST_UPLINK_IP, 81, timeout=1)),
            "udp 54": _reach(udp_echo(env.ns("world"), HOST_UPLINK_IP, 54, timeout=0.5, tries=1)),
            "server saw": srv.peers + usrv.peers,
        })


def test_direct_container_address_unreachable(env, record):
    with EchoServer(env.ns("b"), "tcp", port=80) as srv, EchoServer(env.ns("b"), "udp", port=53) as usrv, taps(env, "b", "d") as t:
        run("ip", "-n", env.host.world, "route", "add", "10.90.0.0/16", "via", HOST_UPLINK_IP)
        try:
            m = marker("direct")
            send(env, "world", frame(env, "world", ADDR["d"], udp_to(5120, m)))
            res = {
                "tcp b:80": _reach(tcp_echo(env.ns("world"), ADDR["b"], 80, timeout=1)),
                "udp b:53": _reach(udp_echo(env.ns("world"), ADDR["b"], 53, timeout=0.5, tries=1)),
                "udp d (internal)": "delivered" if t["d"].wait(has(m), timeout=0.5) else "blocked",
                "server saw": srv.peers + usrv.peers,
            }
        finally:
            run("ip", "-n", env.host.world, "route", "del", "10.90.0.0/16", check=False)
    record.expect(res)


# =============================================================================================
# Isolation
# =============================================================================================
def test_isolation_between_networks(env, record):
    ma, mc = marker("iso-ac"), marker("iso-ca")
    with taps(env, "a", "c") as t, EchoServer(env.ns("c"), "tcp", port=80) as sc, EchoServer(env.ns("a"), "tcp", port=80) as sa:
        send(env, "a", frame(env, "a", ADDR["c"], udp_to(5130, ma)))
        send(env, "c", frame(env, "c", ADDR["a"], udp_to(5130, mc)))
        tcp_ac = _reach(tcp_echo(env.ns("a"), ADDR["c"], 80, timeout=1))
        tcp_ca = _reach(tcp_echo(env.ns("c"), ADDR["a"], 80, timeout=1))
        quiet(0.2)
        record.expect({
            "udp a->c": bool(t["c"].match(has(ma))), "udp c->a": bool(t["a"].match(has(mc))),
            "tcp a->c": tcp_ac, "tcp c->a": tcp_ca, "servers saw": sc.peers + sa.peers,
        })


def test_internal_network_reaches_nothing_outside(env, record):
    marks = {}
    with taps(env, "a", "c", "world") as t:
        for to in (WORLD_UPLINK_IP, ADDR["a"], ADDR["c"]):
            m = marker("internal")
            marks[to] = m
            send(env, "d", frame(env, "d", to, udp_to(5140, m)))
        quiet(0.6)
        record.expect({
            "to world": bool(t["world"].match(has(marks[WORLD_UPLINK_IP]))),
            "to a (front)": bool(t["a"].match(has(marks[ADDR["a"]]))),
            "to c (back)": bool(t["c"].match(has(marks[ADDR["c"]]))),
            "tcp to world": _reach(tcp_echo(env.ns("d"), WORLD_UPLINK_IP, 9, timeout=1)),
        })


# =============================================================================================
# Malformed input
# =============================================================================================
def _malformed(env, frm: str, to_ip: str, dport: int, proto: str):
    """Malformed frames, each IPv4 one carrying its own IP id (0x7a00 + n) so that what
    arrives can be told apart. Returns {kind: frame bytes}."""
    l4 = (lambda m: UDP(sport=41150, dport=dport) / Raw(m)) if proto == "udp" else (lambda m: TCP(sport=41150, dport=dport, flags="S") / Raw(m))
    ok = lambda i, m, **kw: bytes(frame(env, frm, to_ip, l4(m), id=0x7A00 + i, **kw))  # noqa: E731
    out = {}
    base = ok(0, b"x" * 16)
    # (an Ethernet header shorter than 14 bytes cannot be sent: the kernel refuses it with EINVAL)
    out["ethernet header only"] = base[:14]
    out["truncated ip header"] = base[: 14 + 12]
    b = bytearray(ok(2, b"ihl" * 8))
    b[14] = 0x44  # IHL 4
    out["ihl < 5"] = bytes(b)
    p = frame(env, frm, to_ip, l4(b"len" * 8), id=0x7A03)
    p[IP].len = 1000
    out["total length > frame"] = bytes(p)
    b = bytearray(ok(4, b"ver" * 8))
    b[14] = 0x65  # version 6 in an IPv4 ethertype
    out["bad version"] = bytes(b)
    ip = bytes(frame(env, frm, to_ip, TCP(sport=41150, dport=dport, flags="S"), id=0x7A05))
    out["truncated tcp header"] = bytes(frame(env, frm, to_ip, Raw(ip[34:42]), id=0x7A05, proto=6))
    out["truncated udp header"] = bytes(frame(env, frm, to_ip, Raw(b"\xa0\xbe\x1f"), id=0x7A06, proto=17))
    out["zero-length udp"] = bytes(frame(env, frm, to_ip, UDP(sport=41150, dport=dport, len=0) / Raw(b"zero" * 4), id=0x7A07))
    return out


KIND_BY_ID = {0x7A00 + i: k for i, k in enumerate(
    ["ethernet header only", "truncated ip header", "ihl < 5", "total length > frame", "bad version",
     "truncated tcp header", "truncated udp header", "zero-length udp"])}


def _arrivals(tap, sent: dict[str, bytes]) -> dict:
    """What arrived of the malformed frames (told apart by IP id): for each kind, whether the
    packet came unmodified (bridged) or rewritten, its addresses, and what is malformed in it."""
    sent_ip = {k: ip_bytes(v) for k, v in sent.items()}
    found = {}
    for p in tap.match(lambda p: ip_bytes(p) is not None and len(ip_bytes(p)) >= 6 and int.from_bytes(ip_bytes(p)[4:6], "big") in KIND_BY_ID):
        ipb = ip_bytes(p)
        kind = KIND_BY_ID[int.from_bytes(ipb[4:6], "big")]
        how = "unmodified" if sent_ip.get(kind) is not None and ipb[: len(sent_ip[kind])] == sent_ip[kind] else "rewritten"
        addrs = f"{src(ipb)} -> {dst(ipb)}" if len(ipb) >= 20 else "?"
        bad = problems(ipb)
        found[kind] = f"{how} {addrs}" + (f", malformed ({', '.join(bad)})" if bad else "")
    return found


ZERO_UDP = "zero-length udp"


def _malformed_from_container(env):
    frames = _malformed(env, "a", WORLD_UPLINK_IP, 5150, "udp")
    frames_b = _malformed(env, "a", ADDR["b"], 5150, "udp")
    with taps(env, "world", "b") as t:
        send(env, "a", *frames.values(), *frames_b.values())
        quiet(0.8)
        to_world, to_b = _arrivals(t["world"], frames), _arrivals(t["b"], frames_b)
        m = marker("after-malformed")
        send(env, "a", frame(env, "a", WORLD_UPLINK_IP, udp_to(5151, m, sport=41151)))
        after = t["world"].wait(has(m))
    return to_world, to_b, bool(after) and problems(ip_bytes(after[0])) == []


def test_malformed_from_container(env, record):
    to_world, to_b, after = _malformed_from_container(env)
    to_world.pop(ZERO_UDP, None), to_b.pop(ZERO_UDP, None)
    record.expect({"to world (via SNAT)": to_world, "to b (bridged)": to_b, "normal traffic afterwards": after})


def test_zero_length_udp_from_container(env, record):
    to_world, to_b, _ = _malformed_from_container(env)
    record.expect({"to world (via SNAT)": to_world.get(ZERO_UDP, "dropped"), "to b (bridged)": to_b.get(ZERO_UDP, "dropped")})


def _malformed_from_world(env):
    frames = _malformed(env, "world", HOST_UPLINK_IP, 8053, "udp")
    frames_t = {k: v for k, v in _malformed(env, "world", HOST_UPLINK_IP, 8080, "tcp").items()
                if k in ("total length > frame", "truncated tcp header")}
    with taps(env, "b") as t:
        send(env, "world", *frames.values(), *frames_t.values())
        quiet(0.8)
        arrived = _arrivals(t["b"], {**frames, **frames_t})
    with EchoServer(env.ns("b"), "udp", port=53):
        after = udp_echo(env.ns("world"), HOST_UPLINK_IP, 8053)
    return arrived, after


def test_malformed_from_world(env, record):
    arrived, after = _malformed_from_world(env)
    arrived.pop(ZERO_UDP, None)
    record.expect({"at b": arrived, "normal traffic afterwards": after})


def test_zero_length_udp_from_world(env, record):
    arrived, _ = _malformed_from_world(env)
    record.expect(arrived.get(ZERO_UDP, "dropped"))
