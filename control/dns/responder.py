"""One query, as wire bytes, to what the resolver does with it: answer here, forward, or drop.

Pure (no sockets); every query is parsed by dnspython. A message too broken to parse is
answered FORMERR when its header is whole and it claims to be a query, and dropped otherwise
(answering responses or fragments would let two resolvers bounce packets forever).
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from .zone import View, Zone

TTL = 0  # answers change the moment `up`/`down` returns: nobody may cache them
HEADER = struct.Struct("!HH")  # id, flags: all a FORMERR needs from a message that does not parse
HEADER_LEN = 12
UDP_DEFAULT_PAYLOAD = 512
TCP_MAX = 65535


@dataclass
class Outcome:
    kind: str  # "local", "nxdomain", "forward", "refused", "formerr", "malformed"
    response: dns.message.Message | None = None  # to send back now
    query: dns.message.Message | None = None  # parsed query (for "forward", and to render replies)
    wire: bytes | None = None  # a reply that exists only as bytes (FORMERR)


def respond(zone: Zone, view: View, wire: bytes) -> Outcome:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return Outcome("malformed")
    if query.opcode() != dns.opcode.QUERY:
        return Outcome("refused", _reply(query, dns.rcode.NOTIMP), query)
    if len(query.question) != 1:
        return Outcome("formerr", _reply(query, dns.rcode.FORMERR), query)
    question = query.question[0]
    if question.rdclass == dns.rdataclass.IN:
        if question.rdtype == dns.rdatatype.PTR:
            found = zone.reverse(view, question.name.to_text())
        else:
            found = zone.lookup(view, question.name.to_text())
        if found.nxdomain:
            return Outcome("nxdomain", _reply(query, dns.rcode.NXDOMAIN), query)
        if found.known:
            response = _reply(query, dns.rcode.NOERROR)
            response.flags |= dns.flags.AA
            if question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY) and found.addresses:
                response.answer.append(
                    dns.rrset.from_rdata_list(question.name, TTL, [_a_record(str(a)) for a in found.addresses])
                )
            elif question.rdtype == dns.rdatatype.PTR and found.ptr:
                response.answer.append(dns.rrset.from_text(question.name, TTL, "IN", "PTR", found.ptr))
            # any other type of a known name (AAAA, MX, ...): NOERROR with no answer
            return Outcome("local", response, query)
    if not view.forward:
        # Docker's answer when it may not forward (internal networks): nothing leaves the host.
        return Outcome("refused", _reply(query, dns.rcode.SERVFAIL), query)
    return Outcome("forward", query=query)


@functools.lru_cache(maxsize=4096)
def _a_record(address: str) -> dns.rdata.Rdata:
    """Parsing an address into rdata is most of a local answer's cost: done once per address."""
    return dns.rdata.from_text("IN", "A", address)


def _reply(query: dns.message.Message, rcode: int) -> dns.message.Message:
    response = dns.message.make_response(query, recursion_available=True)
    response.set_rcode(rcode)
    return response


def _formerr(wire: bytes) -> Outcome:
    if len(wire) < HEADER_LEN:  # not even a whole header
        return Outcome("malformed")
    qid, flags = HEADER.unpack_from(wire)
    if flags & dns.flags.QR:
        return Outcome("malformed")
    reply = dns.message.Message(id=qid)
    reply.flags = dns.flags.QR | (flags & dns.flags.RD) | dns.flags.RA
    reply.set_rcode(dns.rcode.FORMERR)
    return Outcome("formerr", wire=reply.to_wire())


def render(response: dns.message.Message, query: dns.message.Message | None, tcp: bool) -> bytes:
    """The reply's bytes, within what the client can take over UDP (512 bytes, or its EDNS
    payload size); a reply that does not fit goes out empty with TC set, so the client retries
    over TCP."""
    limit = TCP_MAX
    if not tcp:
        limit = max(UDP_DEFAULT_PAYLOAD, query.payload) if query is not None and query.edns >= 0 else UDP_DEFAULT_PAYLOAD
    try:
        # no shuffle: the zone already rotates the records, one step per query
        return response.to_wire(max_size=limit, want_shuffle=False)
    except dns.exception.TooBig:
        short = dns.message.make_response(query) if query is not None else dns.message.Message(id=response.id)
        short.flags |= dns.flags.TC | (response.flags & dns.flags.AA)
        short.set_rcode(response.rcode())
        return short.to_wire(max_size=limit)
