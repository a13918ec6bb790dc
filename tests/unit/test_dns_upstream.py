"""Forwarding: the host's resolv.conf gives up to three upstreams, asked in order; a timeout,
SERVFAIL or REFUSED moves on to the next. Real sockets on loopback addresses, answered by
dnspython-built replies."""
from __future__ import annotations

import asyncio
import socket
import threading

import dns.message
import dns.rcode
import dns.rrset
import pytest

from fastnet.control.dns.upstream import Upstreams, parse_resolv_conf



def test_parse_resolv_conf():
    text = """# comment
nameserver 10.0.0.1
nameserver   fe80::1%eth0
nameserver 2001:db8::1
nameserver 10.0.0.2
nameserver 10.0.0.3
search example.com
"""
    assert parse_resolv_conf(text) == ["10.0.0.1", "2001:db8::1", "10.0.0.2"]
    assert parse_resolv_conf("") == []


class FakeUpstream:
    """Answers every UDP query with rcode (or never, rcode=None) on address:port."""

    def __init__(self, address: str, rcode: int | None, port: int):
        self.rcode, self.asked = rcode, 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            self.asked += 1
            if self.rcode is None:
                continue
            q = dns.message.from_wire(wire)
            r = dns.message.make_response(q)
            r.set_rcode(self.rcode)
            if self.rcode == dns.rcode.NOERROR:
                r.answer.append(dns.rrset.from_text(q.question[0].name, 5, "IN", "A", "192.0.2.7"))
            self.sock.sendto(r.to_wire(), peer)

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def port() -> int:
    """A UDP port free on every address now (a fixed one would collide with a concurrent run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


@pytest.fixture
def fakes(port):
    made = []

    def make(address, rcode):
        made.append(FakeUpstream(address, rcode, port))
        return made[-1]

    yield make
    for f in made:
        f.close()


def forward(servers, port, name="x.example."):
    q = dns.message.make_query(name, "A")
    client_id = q.id
    answer = asyncio.run(Upstreams(servers, timeout=0.3, port=port).query(q, tcp=False))
    assert q.id == client_id
    return answer, client_id


def test_fails_over_on_timeout_servfail_and_refused(fakes, port):
    dead = fakes("127.0.0.2", None)
    servfail = fakes("127.0.0.3", dns.rcode.SERVFAIL)
    good = fakes("127.0.0.4", dns.rcode.NOERROR)
    answer, client_id = forward(["127.0.0.2", "127.0.0.3", "127.0.0.4"], port)
    assert answer.rcode() == dns.rcode.NOERROR and answer.id == client_id
    assert str(answer.answer[0][0]) == "192.0.2.7"
    assert (dead.asked, servfail.asked, good.asked) == (1, 1, 1)
    refused = fakes("127.0.0.5", dns.rcode.REFUSED)
    answer, _ = forward(["127.0.0.5", "127.0.0.4"], port)
    assert answer.rcode() == dns.rcode.NOERROR and refused.asked == 1


def test_first_good_answer_wins_and_nxdomain_is_an_answer(fakes, port):
    nx = fakes("127.0.0.6", dns.rcode.NXDOMAIN)
    other = fakes("127.0.0.7", dns.rcode.NOERROR)
    answer, _ = forward(["127.0.0.6", "127.0.0.7"], port)
    assert answer.rcode() == dns.rcode.NXDOMAIN and (nx.asked, other.asked) == (1, 0)


def test_all_failing_gives_the_last_failure_or_none(fakes, port):
    fakes("127.0.0.8", dns.rcode.SERVFAIL)
    fakes("127.0.0.9", None)
    answer, _ = forward(["127.0.0.8", "127.0.0.9"], port)
    assert answer.rcode() == dns.rcode.SERVFAIL
    assert forward(["127.0.0.9"], port)[0] is None
    assert forward([], port)[0] is None
