"""The host's resolvers, as its /etc/resolv.conf names them, asked in order.

The agent forwards from the host's own network namespace (where resolv.conf is valid, a
loopback resolver such as 127.0.0.53 included). Each upstream gets UPSTREAM_TIMEOUT; a
timeout, an unreachable port, a SERVFAIL or a REFUSED moves on to the next one (up to three,
as glibc). UDP queries go out over UDP (a truncated answer goes back as is, and the client
retries over TCP), TCP queries over TCP.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

MAX_UPSTREAMS = 3
UPSTREAM_TIMEOUT = 1.0
RETRY_RCODES = (dns.rcode.SERVFAIL, dns.rcode.REFUSED)
_ids = random.SystemRandom()


def parse_resolv_conf(text: str) -> list[str]:
    """The first three `nameserver` addresses (IPv4 and IPv6; scope ids and junk skipped)."""
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and "%" not in fields[1]:
            try:
                servers.append(str(ip_address(fields[1])))
            except ValueError:
                continue
    return servers[:MAX_UPSTREAMS]


@dataclass
class Upstreams:
    servers: list[str]
    timeout: float = UPSTREAM_TIMEOUT
    port: int = 53

    @classmethod
    def from_file(cls, path: Path = Path("/etc/resolv.conf")) -> "Upstreams":
        try:
            return cls(parse_resolv_conf(path.read_text()))
        except OSError:
            return cls([])

    async def query(self, query: dns.message.Message, tcp: bool) -> dns.message.Message | None:
        """The first good answer, else the last SERVFAIL/REFUSED seen, else None. The query
        goes out under a fresh random id (the client's own id is not trusted to be
        unpredictable) and the answer comes back under the client's id."""
        client_id = query.id
        last = None
        for server in self.servers:
            query.id = _ids.randrange(1 << 16)
            try:
                if tcp:
                    answer = await dns.asyncquery.tcp(query, server, timeout=self.timeout, port=self.port)
                else:
                    answer = await dns.asyncquery.udp(query, server, timeout=self.timeout, port=self.port,
                                                       ignore_unexpected=True)
            except (dns.exception.DNSException, OSError, EOFError):
                continue
            finally:
                query.id = client_id
            answer.id = client_id
            if answer.rcode() in RETRY_RCODES:
                last = answer
                continue
            return answer
        return last
