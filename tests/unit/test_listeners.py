"""Which host sockets a published port conflicts with (control/listeners.py: Linux's bind
rules between IPv4 and IPv6, wildcard and specific addresses), how the owner of one is named,
and which ports the iptables backend's agent holds (control/reservations.py). No root: the
sockets are described, not dumped; the only real socket is this process's own, unbound."""
from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address

import pytest

from fastnet.control import reservations
from fastnet.control.config import PortMapping, parse_config
from fastnet.control.listeners import ANY, Listener, conflicts, covered, holder, owner, published_index
from fastnet.control.spec import build


def mapping(publish: str) -> PortMapping:
    """One publish entry as the config parses it."""
    config = parse_config(f'containers:\n  web:\n    publish: ["{publish}"]\n')
    return config.containers["web"].publish[0]


def sock(address: str, port: int = 8080, proto: str = "tcp", v6only: bool = False) -> Listener:
    return Listener(proto, address, port, v6only, inode=1)


@pytest.mark.parametrize("address, v6only, held", [
    ("0.0.0.0", False, ANY),
    ("192.0.2.1", False, IPv4Address("192.0.2.1")),
    ("::", False, ANY),  # dual-stack: every IPv4 address too
    ("::", True, None),
    ("::ffff:127.0.0.1", False, IPv4Address("127.0.0.1")),
    ("::ffff:0.0.0.0", False, ANY),
    ("::1", False, None),
    ("2001:db8::1", False, None),
])
def test_the_ipv4_address_a_socket_holds(address, v6only, held):
    assert sock(address, v6only=v6only).ipv4 == held


@pytest.mark.parametrize("publish, s, expected", [
    ("8080:80", sock("127.0.0.1"), True),  # every address overlaps each one
    ("8080:80", sock("0.0.0.0"), True),
    ("127.0.0.1:8080:80", sock("0.0.0.0"), True),  # a wildcard socket overlaps each address
    ("127.0.0.1:8080:80", sock("127.0.0.1"), True),
    ("127.0.0.1:8080:80", sock("192.0.2.1"), False),  # two specific addresses only when equal
    ("127.0.0.1:8080:80", sock("::ffff:127.0.0.1"), True),
    ("8080:80", sock("::"), True),
    ("8080:80", sock("::", v6only=True), False),
    ("8080:80", sock("::1"), False),
    ("8080:80/udp", sock("0.0.0.0"), False),  # other protocol
    ("8080:80", sock("0.0.0.0", port=8081), False),  # other port
    ("8070-8090:8070-8090", sock("0.0.0.0"), True),  # inside a range
    ("8081-8090:8081-8090", sock("0.0.0.0"), False),
])
def test_conflicts_follow_linux_bind_rules(publish, s, expected):
    assert conflicts(mapping(publish), s) is expected


def test_a_socket_where_a_port_is_already_published_is_covered():
    index = published_index([mapping("8080:80"), mapping("127.0.0.1:9000-9001:9000-9001/udp")])
    assert covered(sock("0.0.0.0"), index)  # a reservation of 8080 on every address
    assert covered(sock("192.0.2.1"), index)  # bound next to it: the bind hooks would refuse it
    assert covered(sock("127.0.0.1", 9001, "udp"), index)
    assert not covered(sock("192.0.2.1", 9001, "udp"), index)  # not where 9001 is published
    assert not covered(sock("0.0.0.0", 9000, "udp"), index)  # a wildcard over the published address
    assert not covered(sock("127.0.0.1", 9000, "tcp"), index)
    assert not covered(sock("::", v6only=True), index)


def test_the_owner_of_a_socket_is_found_by_its_inode():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        inode = os.fstat(s.fileno()).st_ino
        with open("/proc/self/comm") as f:
            assert owner(inode) == (os.getpid(), f.read().strip())
        found = holder(Listener("udp", "127.0.0.1", 5353, False, inode))
        assert found == f"by {owner(inode)[1]} (pid {os.getpid()}, bound to 127.0.0.1:5353)"


def test_a_socket_without_a_visible_owner_says_so():
    assert holder(Listener("tcp", "::", 22, False, inode=0)) == (
        "(listening on [::]:22; no process fastnet can see holds the socket)"
    )


def test_the_agent_holds_every_port_of_iptables_projects_only():
    def spec(backend: str, publish: list[str]):
        entries = ", ".join(f'"{p}"' for p in publish)
        text = f"name: p{backend[:3]}\nbackend: {backend}\ncontainers:\n  web:\n    publish: [{entries}]\n"
        return build(parse_config(text), None)

    specs = [spec("iptables", ["8080:80", "127.0.0.1:9000-9002:9000-9002/udp"]), spec("ebpf", ["7000:70"])]
    assert reservations.wanted(specs) == {
        ("tcp", "0.0.0.0", 8080),
        ("udp", "127.0.0.1", 9000), ("udp", "127.0.0.1", 9001), ("udp", "127.0.0.1", 9002),
    }
