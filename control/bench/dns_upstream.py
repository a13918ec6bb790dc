"""A small authoritative DNS server standing in for the host's upstream resolver, in the
bench's (and the tests') world namespace: names under ZONE answer an A record, anything else
is NXDOMAIN. UDP and TCP, dnspython for every message; it counts what it was asked.

    python -m fastnet.control.bench.dns_upstream ADDRESS [PORT]   (serves until SIGTERM)
"""
from __future__ import annotations

import socket
import struct
import sys
import threading
from collections import Counter

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

ZONE = "example.test."
ANSWER = "192.0.2.80"


def answer(wire: bytes, asked: Counter) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    q = query.question[0]
    asked[q.name.to_text().lower()] += 1
    if q.name.is_subdomain(dns.name.from_text(ZONE)):
        if q.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", ANSWER))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


class Upstream:
    """Serves on an already bound UDP and listening TCP socket (made in any namespace)."""

    def __init__(self, udp: socket.socket, tcp: socket.socket):
        self.udp, self.tcp = udp, tcp
        self.asked: Counter = Counter()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._serve_udp, self._serve_tcp)]
        for s in (udp, tcp):
            s.settimeout(0.2)
        for t in self._threads:
            t.start()

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.udp.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            reply = answer(wire, self.asked)
            if reply is not None:
                self.udp.sendto(reply, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    prefix = _recv_exactly(conn, 2)
                    wire = _recv_exactly(conn, struct.unpack("!H", prefix)[0])
                    reply = answer(wire, self.asked)
                    if reply is None:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, EOFError):
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self.udp.close()
        self.tcp.close()


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def bind(address: str, port: int = 53) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, port))
    tcp.listen(64)
    return udp, tcp


def main() -> int:
    import signal

    address, port = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 53
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # before the threads start: they inherit it
    server = Upstream(*bind(address, port))
    signal.sigwait(stop)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
