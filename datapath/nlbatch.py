"""Several rtnetlink requests sent in one datagram, for the hot path of `up`.

Why: each `IPRoute.addr()/link()/route()/neigh()` call costs 0.2-0.35 ms of pyroute2's Python
(request filters, its event loop, parsing the answer) for a few µs of kernel work, and wiring
a container takes a dozen of them. pyroute2's own `nlm_request_batch` sends a list of
messages in one sendmsg and reads every acknowledgement: about half the cost. The kernel runs
the messages of one datagram in order, each to completion, exactly as if they had been sent
one by one, so a message may depend on an earlier one (a route's prefsrc on the address
added just before it).

The messages are pyroute2's own classes filled with the fields and attributes its
high-level calls would send, in the same order: the bytes are those of the call each one
replaces (tests/unit/test_nlbatch.py compares them; the `ip` command each one matches is in
its docstring). Nothing here encodes netlink by hand; datapath/tc.py builds its qdisc and filter
messages with the same `message()`.

The first failing request raises its NetlinkError, like the call it replaces; the later
messages of the batch were still run by the kernel, which is harmless on the paths that use
this: a failure there rolls back by deleting the link (and the namespace), which takes
addresses, routes, neighbours and the qdisc with it.
"""
from __future__ import annotations

import socket

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, nlmsg
from pyroute2.netlink.rtnl import RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
CHANGE = NLM_F_REQUEST | NLM_F_ACK
RT_TABLE_MAIN = 254
RTN_UNICAST = 1
RTPROT_STATIC = 4  # what pyroute2 (and `ip route add`) give a route that names no protocol
RT_SCOPE_UNIVERSE = 0


def send(ipr: IPRoute, messages: list[nlmsg]) -> None:
    """Send the messages in one datagram and wait for every acknowledgement; raises the first
    error. `ipr` is a synchronous IPRoute: its loop runs the batch of its asyncio core."""
    async def run() -> None:
        async for _ in ipr.asyncore.nlm_request_batch(messages):
            pass
    ipr.asyncore.event_loop.run_until_complete(run())


def message(cls: type[nlmsg], msg_type: int, msg_flags: int, attrs: list, fields: dict) -> nlmsg:
    """A message of pyroute2's class `cls`: its own fields, attributes and netlink header."""
    msg = cls()
    for name, value in fields.items():
        msg[name] = value
    msg["attrs"] = attrs
    msg["header"] = {"type": msg_type, "flags": msg_flags}
    return msg


def addr_add(index: int, address: str, prefixlen: int) -> ifaddrmsg:
    """`ip addr add ADDRESS/PREFIXLEN dev INDEX` (IPv4, no broadcast, as pyroute2's addr())."""
    return message(ifaddrmsg, RTM_NEWADDR, CREATE, [("IFA_ADDRESS", address), ("IFA_LOCAL", address)],
                    {"family": socket.AF_INET, "prefixlen": prefixlen, "index": index})


def link_up(index: int) -> ifinfmsg:
    """`ip link set dev INDEX up`."""
    return message(ifinfmsg, RTM_NEWLINK, CHANGE, [], {"index": index, "flags": IFF_UP, "change": IFF_UP})


def route_replace(dst: str, dst_len: int, oif: int, gateway: str | None = None, scope: int = RT_SCOPE_UNIVERSE,
                  prefsrc: str | None = None, proto: int = RTPROT_STATIC) -> rtmsg:
    """`ip route replace DST/DST_LEN [via GATEWAY] dev OIF [scope] [src PREFSRC] [proto]` in
    the main table."""
    attrs = [("RTA_DST", dst)] if dst_len else []
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    attrs.append(("RTA_OIF", oif))
    if prefsrc is not None:
        attrs.append(("RTA_PREFSRC", prefsrc))
    return message(rtmsg, RTM_NEWROUTE, REPLACE, attrs, {
        "family": socket.AF_INET, "dst_len": dst_len, "table": RT_TABLE_MAIN, "proto": proto, "scope": scope,
        "type": RTN_UNICAST,
    })


def neigh_replace(ifindex: int, dst: str, lladdr: str, state: int) -> ndmsg:
    """`ip neigh replace DST lladdr LLADDR dev IFINDEX nud STATE`."""
    return message(ndmsg, RTM_NEWNEIGH, REPLACE, [("NDA_DST", dst), ("NDA_LLADDR", lladdr)],
                    {"family": socket.AF_INET, "ifindex": ifindex, "state": state})
