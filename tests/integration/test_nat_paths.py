"""Addresses, routes and sizes on the NAT paths: martian sources from the uplink, ICMP errors
from the wrong side, frames the parser must not trust, SNAT by the host's routing, IP
fragments and path MTU.

   project paths (module host)
   front 10.93.1.0/24 (gateway 10.93.1.1)        back 10.93.2.0/24 (gateway 10.93.2.1)
     a   b  publish 8053:53/udp, 8080:80            c
      \\  |                                           |
       +-+------- HOST: fn_from_container on every port ------+
                                                              |
   HOST  up0 198.51.100.1/24 (fn_from_uplink) ==== veth ==== WORLD up0 198.51.100.2/24
                                                             (clients, servers, scapy)

   Tests that change the host's routing or MTUs build their own host (drawn where they are).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import socket
import struct
import time
from contextlib import closing

import pytest
from harness import (
    HOST_UPLINK_IP,
    UPLINK,
    WORLD_UPLINK_IP,
    Capture,
    EchoServer,
    containers,
    far_network,
    flows,
    in_netns,
    l2socket,
    mac_for,
    make_socket,
    marker,
    moved,
    netns,
    queue_icmp_errors,
    run,
    sysctl,
    tcp_echo,
    udp_echo,
    udp_stream,
    uplink_mac,
    wait_for_icmp_error,
    wait_until,
)
from scapy.all import ICMP, IP, TCP, UDP, Dot1Q, Ether, IPerror, Raw

FRONT_GW, BACK_GW = "10.93.1.1", "10.93.2.1"

PATHS = """\
name: paths
networks:
  front:
    subnet: 10.93.1.0/24
  back:
    subnet: 10.93.2.0/24
containers:
  a:
    networks: [front]
  b:
    networks: [front]
    publish:
      - "8053:53/udp"
      - "8080:80"
  c:
    networks: [back]
"""


@pytest.fixture(scope="module")
def paths(module_host):
    # WORLD and HOST answer every probe: no ICMP rate limit to make a retry flaky.
    for ns in (module_host.world_path, module_host.netns_path):
        sysctl(ns, "net.ipv4.icmp_ratelimit", 0)
    module_host.up(PATHS)
    return module_host, containers(module_host, "paths")


def from_world(host, *frames) -> None:
    """Send Ethernet frames from WORLD's up0 to HOST's."""
    with closing(l2socket(host.world_path, UPLINK)) as sk:
        for f in frames:
            sk.send(f)


def world_frame(host, ip: IP, l4) -> Ether:
    return Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host)) / ip / l4


# -- martian sources from the uplink ----------------------------------------------------------
MARTIANS = {
    "host address": HOST_UPLINK_IP,
    "gateway": FRONT_GW,
    "unassigned fastnet address": "10.93.2.77",
    "loopback": "127.0.0.1",
    "zero net": "0.1.2.3",
    "multicast": "224.0.0.5",
    "limited broadcast": "255.255.255.255",
    "uplink subnet broadcast": "198.51.100.255",
}


def test_martian_sources_never_reach_a_published_port(paths):
    """Each martian source sends a datagram to b's published port: none reaches b, each is
    counted; a datagram from an ordinary client sent after them arrives."""
    host, c = paths
    before = host.counters("b", "fn_from_uplink")
    marks = {name: marker("martian") for name in MARTIANS}
    ok_mark = marker("client")
    with EchoServer(c["b"].netns, "udp", port=53), Capture({"b": (c["b"].netns, "eth0")}) as cap:
        frames = [world_frame(host, IP(src=src, dst=HOST_UPLINK_IP), UDP(sport=41000, dport=8053) / Raw(marks[name]))
                  for name, src in MARTIANS.items()]
        from_world(host, *frames, world_frame(host, IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP),
                                              UDP(sport=41000, dport=8053) / Raw(ok_mark)))
        cap.wait_for("b", ok_mark)
        reached = [name for name, m in marks.items() if cap.seen("b", m)]
    assert reached == [], f"martian sources reached the container: {reached}"
    assert moved(before, host.counters("b", "fn_from_uplink"))["drop_martian_src"] == len(MARTIANS)


def test_the_fib_device_keeps_forwarding_when_ip_forward_is_written(paths):
    """Writing net.ipv4.ip_forward resets every device's forwarding; the agent sets the FIB
    device's again, and the routing checks go on working (an unassigned fastnet address is
    known as martian only through the FIB)."""
    host, c = paths
    link = next(l for l in host.links() if l["ifname"] == "fastnet-fib")
    assert (link["ifalias"], link["operstate"]) == ("fastnet:-host/fib", "DOWN")
    assert json.loads(host.sh("ip", "-j", "addr", "show", "dev", "fastnet-fib").stdout)[0]["addr_info"] == []
    forwarding = "/proc/sys/net/ipv4/conf/fastnet-fib/forwarding"
    assert host.sh("cat", forwarding).stdout.strip() == "1"
    old = sysctl(host.netns_path, "net.ipv4.ip_forward", 1)
    try:
        sysctl(host.netns_path, "net.ipv4.ip_forward", 0)
    finally:
        sysctl(host.netns_path, "net.ipv4.ip_forward", old)
    wait_until(lambda: host.sh("cat", forwarding).stdout.strip() == "1", timeout=5, what="forwarding=1 again")
    before = host.counters("b", "fn_from_uplink")
    from_world(host, world_frame(host, IP(src="10.93.2.78", dst=HOST_UPLINK_IP), UDP(sport=41001, dport=8053)))
    wait_until(lambda: moved(before, host.counters("b", "fn_from_uplink"))["drop_martian_src"] == 1,
               timeout=3, what="drop_martian_src")


# -- ICMP errors count only from where the flow's peer is ---------------------------------------
def from_container(ctr, gateway: str, *packets) -> None:
    """Send IP packets from a container's eth0 to its gateway's MAC, as scapy built them."""
    eth = Ether(src=ctr.mac(next(iter(ctr.nets))), dst=mac_for(gateway))
    with closing(l2socket(ctr.netns, "eth0")) as sk:
        for p in packets:
            sk.send(eth / p)


def snat_port(host, ctr_ip: str, sport: int) -> int:
    """The port a container's UDP flow from sport leaves the uplink with."""
    (f,) = flows(host, "udp", "snat", src=ctr_ip, sport=sport)
    return f["reply"]["dport"]


def test_a_container_cannot_send_errors_for_another_networks_flow(paths):
    """c (back) talks to WORLD; a (front) sends a port unreachable that quotes c's datagram as
    it left the uplink, to the address c's replies come to. It must not reach c: the first
    error c's socket sees is WORLD's own, when WORLD's port closes."""
    host, c = paths
    before = host.counters("a")
    srv = EchoServer(host.world_path, "udp")
    s = make_socket(c["c"].netns, socket.SOCK_DGRAM)
    with s:
        s.bind(("0.0.0.0", 26200))
        queue_icmp_errors(s)
        s.connect((WORLD_UPLINK_IP, srv.port))
        s.settimeout(2)
        s.send(b"hello")
        assert s.recv(100) == b"hello"
        port = snat_port(host, c["c"].ip("back"), 26200)
        forged = (IP(src=c["a"].ip("front"), dst=HOST_UPLINK_IP) / ICMP(type=3, code=3)
                  / IP(src=HOST_UPLINK_IP, dst=WORLD_UPLINK_IP, ttl=63) / UDP(sport=port, dport=srv.port) / Raw(b"hello"))
        from_container(c["a"], FRONT_GW, forged)
        srv.close()  # WORLD's port closes: its own port unreachable comes next
        s.send(b"anyone?")
        err = wait_for_icmp_error(s, timeout=3)
    assert err is not None and (err.icmp_type, err.offender) == (3, WORLD_UPLINK_IP), err
    assert moved(before, host.counters("a"))["fwd_icmp_error"] == 0


def test_a_container_cannot_send_errors_out_for_another_flow(paths):
    """a sends a fragmentation needed quoting c's flow as WORLD sent it, to WORLD: it is
    dropped, never sent out of the uplink with a's private source."""
    host, c = paths
    with EchoServer(host.world_path, "udp") as srv:
        assert udp_echo(c["c"].netns, WORLD_UPLINK_IP, srv.port, bind=26201) == "ok"
        before = host.counters("a")
        forged = (IP(src=c["a"].ip("front"), dst=WORLD_UPLINK_IP) / ICMP(type=3, code=4, nexthopmtu=1400)
                  / IP(src=WORLD_UPLINK_IP, dst=c["c"].ip("back"), ttl=63) / UDP(sport=srv.port, dport=26201))
        mark = marker("after")
        with Capture({"world": (host.world_path, UPLINK)}) as cap:
            from_container(c["a"], FRONT_GW, forged, IP(src=c["a"].ip("front"), dst=WORLD_UPLINK_IP)
                           / UDP(sport=26202, dport=9) / Raw(mark))
            cap.wait_for("world", mark)
            leaked = [p.summary() for p in cap.frames["world"] if ICMP in p]
    assert leaked == []
    assert moved(before, host.counters("a"))["drop_icmp_error"] == 1


# -- frames the parser must not trust ---------------------------------------------------------
def test_a_tagged_frame_from_the_uplink_is_not_translated(paths):
    """An 802.1Q-tagged frame (another VLAN: the stack moves the tag out of the frame before
    TC) to b's published port stays with the host; the same frame untagged reaches b."""
    host, c = paths
    before = host.counters("b", "fn_from_uplink")
    tagged_mark, plain_mark = marker("tagged"), marker("plain")
    udp = lambda mark: IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP) / UDP(sport=41002, dport=8053) / Raw(mark)
    eth = Ether(src=uplink_mac(host, host.world), dst=uplink_mac(host))
    with Capture({"b": (c["b"].netns, "eth0")}) as cap:
        from_world(host, eth / Dot1Q(vlan=42) / udp(tagged_mark), eth / udp(plain_mark))
        cap.wait_for("b", plain_mark)
        assert not cap.seen("b", tagged_mark), "a frame of VLAN 42 was translated into b"
    assert moved(before, host.counters("b", "fn_from_uplink"))["fwd_uplink_host"] >= 1


def test_a_syn_hidden_in_ethernet_padding_opens_no_flow(paths):
    """An IP header whose total length ends before its TCP header, followed by a SYN to b's
    published port where a receiver sees Ethernet padding: no flow, nothing reaches b."""
    host, c = paths
    syn = bytes(TCP(sport=41003, dport=8080, flags="S", seq=1))
    hidden = IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP, proto=6, len=20) / Raw(syn)
    with Capture({"b": (c["b"].netns, "eth0")}) as cap:
        mark = marker("after")
        from_world(host, world_frame(host, hidden, Raw(b"")),
                   world_frame(host, IP(src=WORLD_UPLINK_IP, dst=HOST_UPLINK_IP), UDP(sport=41003, dport=8053) / Raw(mark)))
        cap.wait_for("b", mark)
        assert not [p for p in cap.frames["b"] if TCP in p and p[TCP].sport == 41003], "the hidden SYN reached b"
    assert flows(host, "tcp", sport=41003) == []


def test_untranslatable_packets_never_leave_with_a_private_source(paths):
    """With the host forwarding (ip_forward written after `up` turns every port's forwarding
    on), a packet the NAT cannot translate (SCTP here) from a to WORLD is dropped, not routed
    out with a's private address; a's ordinary traffic still leaves translated."""
    host, c = paths
    before = host.counters("a")
    old = sysctl(host.netns_path, "net.ipv4.ip_forward", 1)
    try:
        sctp_mark, udp_mark = marker("sctp"), marker("udp")
        with Capture({"world": (host.world_path, UPLINK)}) as cap:
            from_container(c["a"], FRONT_GW, IP(src=c["a"].ip("front"), dst=WORLD_UPLINK_IP, proto=132) / Raw(sctp_mark),
                           IP(src=c["a"].ip("front"), dst=WORLD_UPLINK_IP) / UDP(sport=26203, dport=9) / Raw(udp_mark))
            (seen,) = cap.wait_for("world", udp_mark)
            assert seen[IP].src == HOST_UPLINK_IP
            assert not cap.seen("world", sctp_mark), "SCTP left the host with a private source"
    finally:
        sysctl(host.netns_path, "net.ipv4.ip_forward", old)
    assert moved(before, host.counters("a"))["drop_nat_proto"] == 1


FRAGS_TAP = """\
name: linear
uplink: tap0
networks:
  front:
    subnet: 10.94.1.0/24
containers:
  b:
    networks: [front]
    publish: ["8053:53/udp"]
"""
TAP_HOST_IP, TAP_PEER_IP, TAP_PEER_MAC = "192.0.2.1", "192.0.2.2", "02:00:00:00:c0:02"
# linux/if_tun.h
TUNSETIFF, IFF_TAP, IFF_NO_PI, IFF_NAPI, IFF_NAPI_FRAGS = 0x400454CA, 0x0002, 0x1000, 0x0010, 0x0020


def napi_frags_tap(ns_path: str, name: str) -> int:
    """A tap device in ns_path whose frames written with writev() arrive as a NIC's would
    with IFF_NAPI_FRAGS: the first iovec linear, every other one a page fragment."""
    with netns(ns_path):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI | IFF_NAPI | IFF_NAPI_FRAGS))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_frames(fd: int, want, timeout: float = 3.0) -> list:
    """Frames the host sends out of the tap until one satisfies want (scapy Ether each)."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            frame = Ether(os.read(fd, 65536))
            got.append(frame)
            if want(frame):
                break
    return got


def test_an_uplink_that_leaves_only_the_ethernet_header_linear(host):
    """The uplink is a tap whose frames arrive like a NIC's that keeps only the Ethernet header
    in the skb's linear part (the rest in page fragments; GRO off, which would pull what it
    reads): a datagram to b's published port still reaches b, and b's echo leaves from the
    published address and port."""
    fd = napi_frags_tap(host.netns_path, "tap0")
    try:
        host.sh("ip", "addr", "add", f"{TAP_HOST_IP}/24", "dev", "tap0")
        host.sh("ip", "link", "set", "tap0", "up")
        host.sh("ethtool", "-K", "tap0", "gro", "off")  # GRO would pull the headers it reads
        host.sh("ip", "neigh", "replace", TAP_PEER_IP, "lladdr", TAP_PEER_MAC, "dev", "tap0", "nud", "permanent")
        host.up(FRAGS_TAP)
        b = containers(host, "linear")["b"]
        tap_mac = next(l["address"] for l in host.links() if l["ifname"] == "tap0")
        payload = marker("linear")
        frame = bytes(Ether(src=TAP_PEER_MAC, dst=tap_mac) / IP(src=TAP_PEER_IP, dst=TAP_HOST_IP)
                      / UDP(sport=41004, dport=8053) / Raw(payload))
        before = host.counters("b", "fn_from_uplink")
        with EchoServer(b.netns, "udp", port=53) as srv:
            os.writev(fd, [frame[:14], frame[14:34], frame[34:]])
            echo = lambda f: UDP in f and bytes(f[UDP].payload) == payload
            frames = read_frames(fd, echo)
        assert srv.peers == [(TAP_PEER_IP, 41004)], [f.summary() for f in frames]
        (back,) = [f for f in frames if echo(f)]
        assert (back[IP].src, back[UDP].sport, back[IP].dst, back[UDP].dport) == (TAP_HOST_IP, 8053, TAP_PEER_IP, 41004)
        assert moved(before, host.counters("b", "fn_from_uplink"))["fwd_dnat"] == 1
        host.down("linear")
    finally:
        os.close(fd)


# -- SNAT by the host's routing ---------------------------------------------------------------
ROUTED = """\
name: routed
networks:
  front:
    subnet: 10.95.1.0/24
  back:
    subnet: 10.95.2.0/24
containers:
  a:
    networks: [front]
  d:
    networks: [back]
"""
VPN_HOST_IP, VPN_PEER_IP, VPN_SERVER = "192.0.2.1", "192.0.2.2", "203.0.113.200"


def second_route(host) -> None:
    """A second way out of HOST, as a VPN or a second NIC gives one:

        HOST up0 198.51.100.1 ==== WORLD up0 198.51.100.2       (default route)
        HOST up1 192.0.2.1    ==== WORLD up1 192.0.2.2, lo 203.0.113.200
        HOST: 203.0.113.0/24 via 192.0.2.2 dev up1
    """
    run("ip", "-n", host.name, "link", "add", "up1", "type", "veth", "peer", "name", "up1", "netns", host.world)
    run("ip", "-n", host.name, "addr", "add", f"{VPN_HOST_IP}/24", "dev", "up1")
    run("ip", "-n", host.world, "addr", "add", f"{VPN_PEER_IP}/24", "dev", "up1")
    run("ip", "-n", host.world, "addr", "add", f"{VPN_SERVER}/32", "dev", "lo")
    for ns in (host.name, host.world):
        run("ip", "-n", ns, "link", "set", "up1", "up")
    run("ip", "-n", host.name, "route", "add", "203.0.113.0/24", "via", VPN_PEER_IP, "dev", "up1")


def test_snat_follows_the_hosts_routing(host):
    """a's flows to a server the host routes through up1 leave by up1, translated to up1's
    address (what MASQUERADE does), and their replies, arriving on up1, come back to a; flows
    to the default route still leave by the uplink."""
    second_route(host)
    try:
        host.up(ROUTED)
        a = containers(host, "routed")["a"]
        assert [f["options"]["bpf_name"] for f in host.tc_filters("up1")] == ["fn_from_route"]
        before = host.counters("a", "fn_from_route")
        with EchoServer(host.world_path, "tcp", ip=VPN_SERVER) as tcp, EchoServer(host.world_path, "udp", ip=VPN_SERVER) as udp:
            with Capture({"up1": (host.world_path, "up1")}) as cap:
                assert tcp_echo(a.netns, VPN_SERVER, tcp.port, size=256 * 1024, bind=27000) == "ok"
                assert udp_echo(a.netns, VPN_SERVER, udp.port, bind=27001) == "ok"
                assert udp_echo(a.netns, VPN_SERVER, udp.port, bind=27002) == "ok"
            assert tcp.peers == [(VPN_HOST_IP, 27000)] and set(udp.peers) == {(VPN_HOST_IP, 27001), (VPN_HOST_IP, 27002)}
            assert cap.frames["up1"], "nothing arrived through up1"
        assert moved(before, host.counters("a", "fn_from_route"))["fwd_ct"] >= 3  # SYN-ACK, data, datagrams
        with EchoServer(host.world_path, "udp") as default:
            assert udp_echo(a.netns, WORLD_UPLINK_IP, default.port, bind=27003) == "ok"
            assert default.peers[-1] == (HOST_UPLINK_IP, 27003)
        host.down("routed")
        assert host.tc_filters("up1") == []
        assert "clsact" not in host.sh("tc", "qdisc", "show", "dev", "up1").stdout
    finally:
        run("ip", "-n", host.name, "link", "del", "up1", check=False)


def test_destinations_that_are_never_routed(host):
    """From a, through the gateway: 127.0.0.11 and the network's own broadcast are martian
    (dropped), an unassigned address of the other fastnet network has no route (the gateway
    answers host unreachable); none of them leaves the host."""
    host.up(ROUTED)
    a = containers(host, "routed")["a"]
    before = host.counters("a")
    marks = {dst: marker("never") for dst in ("127.0.0.11", "10.95.1.255", "10.95.2.99")}
    ok = marker("ok")
    with Capture({"world": (host.world_path, UPLINK), "a": (a.netns, "eth0")}) as cap:
        from_container(a, "10.95.1.1", *(IP(src=a.ip("front"), dst=dst) / UDP(sport=27010, dport=53) / Raw(m)
                                         for dst, m in marks.items()),
                       IP(src=a.ip("front"), dst=WORLD_UPLINK_IP) / UDP(sport=27010, dport=9) / Raw(ok))
        cap.wait_for("world", ok)
        unreachable = lambda: [p for p in cap.frames["a"] if ICMP in p and IPerror in p and p[IPerror].dst == "10.95.2.99"]
        (answer,) = wait_until(unreachable, timeout=3, what="the gateway's answer")
        leaked = [dst for dst, m in marks.items() if cap.seen("world", m)]
    assert leaked == []
    assert (answer[IP].src, answer[ICMP].type, answer[ICMP].code) == ("10.95.1.1", 3, 1), answer.summary()
    assert moved(before, host.counters("a")) == {"drop_martian_dst": 2, "fwd_unreachable": 1, "fwd_snat": 1, "fwd_ct": 1}


# -- IP fragments -------------------------------------------------------------------------------
def test_large_udp_datagrams_through_snat_and_dnat(paths):
    """3000-byte datagrams (three fragments each at MTU 1500) from a to WORLD and back, from
    WORLD to b's published port and back, and a 2000-byte ping: every fragment is translated
    and the datagrams arrive whole."""
    host, c = paths
    before = {name: host.counters(name) for name in ("a", "b")}
    with EchoServer(host.world_path, "udp") as srv:
        assert udp_stream(c["a"].netns, WORLD_UPLINK_IP, srv.port, count=20, size=3000, bind=27100) == "ok"
        assert set(srv.peers) == {(HOST_UPLINK_IP, 27100)}
    with EchoServer(c["b"].netns, "udp", port=53) as srv:
        assert udp_stream(host.world_path, HOST_UPLINK_IP, 8053, count=20, size=3000, bind=27101) == "ok"
        assert set(srv.peers) == {(WORLD_UPLINK_IP, 27101)}
    cp = host.exec("a", "ping", "-n", "-c2", "-W2", "-s", "2000", WORLD_UPLINK_IP)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert moved(before["a"], host.counters("a"))["drop_fragment"] == 0
    assert moved(before["b"], host.counters("b", "fn_from_uplink"))["fwd_ct"] >= 20 * 3


# -- path MTU -------------------------------------------------------------------------------------
MTU_PROJECT = """\
name: mtu
networks:
  front:
    subnet: 10.96.1.0/24
  wide:
    subnet: 10.96.2.0/24
    mtu: 1500
containers:
  a:
    networks: [front]
  w:
    networks: [wide]
    publish: ["8080:8080"]
"""
FAR_IP = "203.0.113.2"


def link_mtu(ns_path: str, ifname: str) -> int:
    return json.loads(in_netns(ns_path, "ip", "-j", "link", "show", ifname).stdout)[0]["mtu"]


def test_path_mtu_through_an_uplink_of_mtu_1400(host):
    """The uplink and WORLD's end of it have MTU 1400; FAR, behind WORLD, has 1500 (so it
    offers TCP segments of 1460 bytes):

        a (front: the uplink's MTU, 1400)  w (wide: mtu 1500)
        HOST up0 1400 ==== WORLD up0 1400, far0 1500 ==== FAR 203.0.113.2

    a's interface takes the uplink's MTU. w's packets too big for the uplink are answered by
    its gateway with "fragmentation needed" (MTU 1400): w's 1 MiB TCP transfers to FAR and
    from FAR through its published port work both ways, and a 1472-byte ping with DF gets
    the answer instead of vanishing in the uplink."""
    for ns in (host.name, host.world):
        run("ip", "-n", ns, "link", "set", UPLINK, "mtu", "1400")
    host.up(MTU_PROJECT)
    c = containers(host, "mtu")
    a, w = c["a"], c["w"]
    assert (link_mtu(a.netns, "eth0"), link_mtu(w.netns, "eth0")) == (1400, 1500)
    assert (link_mtu(host.netns_path, a.nets["front"]["host_ifname"]),
            link_mtu(host.netns_path, w.nets["wide"]["host_ifname"])) == (1400, 1500)
    before = host.counters("w")
    with far_network(host, mtu=1500) as far:
        # Without segmentation offloads each of w's segments is a packet that WORLD's end of
        # the uplink refuses (veth checks its peer's MTU); with them w sends GSO super-packets,
        # which a veth passes whatever their segments' size (a NIC would cut them to the
        # segment size and lose them). fastnet must answer both. Between the rounds w and FAR
        # forget the path MTUs they learnt (FAR would else offer w segments that fit).
        for offloads in ("off", "on"):
            for ns in (w.netns, far):
                in_netns(ns, "ip", "route", "flush", "cache")
            in_netns(w.netns, "ethtool", "-K", "eth0", "tso", offloads, "gso", offloads)
            with EchoServer(far, "tcp") as srv:
                assert tcp_echo(a.netns, FAR_IP, srv.port, size=1 << 20) == "ok"
                assert tcp_echo(w.netns, FAR_IP, srv.port, size=1 << 20) == "ok", f"offloads {offloads}"
            for ns in (w.netns, far):
                in_netns(ns, "ip", "route", "flush", "cache")
            with EchoServer(w.netns, "tcp", port=8080):
                assert tcp_echo(far, HOST_UPLINK_IP, 8080, size=1 << 20) == "ok", f"offloads {offloads}"
        in_netns(w.netns, "ip", "route", "flush", "cache")
        cp = host.exec("w", "ping", "-n", "-c2", "-i0.2", "-W1", "-M", "do", "-s", "1472", FAR_IP)
        text = cp.stdout + cp.stderr
        assert cp.returncode != 0 and ("mtu = 1400" in text or "mtu=1400" in text), text
    assert moved(before, host.counters("w"))["fwd_frag_needed"] >= 2
