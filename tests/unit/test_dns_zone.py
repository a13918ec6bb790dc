"""The resolver's pure parts: which names a container sees (zone), and what one query becomes
(responder: local answer, NXDOMAIN, forward, FORMERR, drop). Specs come from real configs."""
from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from fastnet.control.config import parse_config
from fastnet.control.dns import resolvconf
from fastnet.control.dns.responder import render, respond
from fastnet.control.dns.zone import Zone
from fastnet.control.overlaysync import Remote
from fastnet.control.spec import build

DEMO = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
  back: {subnet: 10.90.2.0/24}
  vault: {subnet: 10.90.3.0/24, internal: true}
containers:
  web:
    networks:
      front: {ipv4_address: 10.90.1.10, aliases: [www, pool]}
  web2:
    networks:
      front: {ipv4_address: 10.90.1.11, aliases: [pool]}
  api:
    networks:
      back: {ipv4_address: 10.90.2.20}
      front: {ipv4_address: 10.90.1.20}
  db:
    networks:
      back: {ipv4_address: 10.90.2.30, aliases: [store]}
  safe:
    networks: [vault]
  mixed:
    networks: [vault, back]
  solo: {}
  solo2: {}
"""
OTHER = """
name: other
networks:
  front: {subnet: 10.80.1.0/24}
containers:
  far:
    networks:
      front: {ipv4_address: 10.80.1.5, aliases: [remote]}
"""


@pytest.fixture
def zone() -> Zone:
    return Zone([build(parse_config(DEMO), None), build(parse_config(OTHER), None)])


def a(zone, asker, name):
    return [str(x) for x in zone.lookup(zone.views[f"demo/{asker}"], name).addresses]


def test_names_and_aliases_of_shared_networks(zone):
    assert a(zone, "api", "web") == ["10.90.1.10"]
    assert a(zone, "api", "WWW.") == ["10.90.1.10"]
    assert a(zone, "api", "store") == ["10.90.2.30"]
    assert a(zone, "web", "web") == ["10.90.1.10"]  # itself


def test_first_shared_network_in_interface_order_answers(zone):
    # api is on back first, then front; db shares back only, web front only
    assert a(zone, "api", "api") == ["10.90.2.20"]
    assert a(zone, "web", "api") == ["10.90.1.20"]
    assert a(zone, "db", "api") == ["10.90.2.20"]


def test_name_dot_network(zone):
    assert a(zone, "api", "api.front") == ["10.90.1.20"]
    assert a(zone, "api", "api.back") == ["10.90.2.20"]
    assert a(zone, "api", "www.front") == ["10.90.1.10"]
    assert zone.lookup(zone.views["demo/api"], "web.back").nxdomain


def test_not_shared_is_nxdomain_not_forwarded(zone):
    web = zone.views["demo/web"]
    for name in ("db", "store", "db.back", "far", "remote", "far.front", "solo"):
        found = zone.lookup(web, name)
        assert found.nxdomain and not found.addresses, name
    assert not zone.lookup(web, "example.com").local


OVERLAY = """
name: shop
uplink: up0
store: http://10.99.0.254:2379
networks:
  mesh: {driver: overlay, subnet: 10.60.0.0/24}
  other: {driver: overlay, subnet: 10.61.0.0/24}
containers:
  m1: {networks: [mesh]}
  o1: {networks: [other]}
"""


def test_containers_of_other_hosts_are_named_only_on_their_network():
    spec = build(parse_config(OVERLAY), None)
    spec = dataclasses.replace(spec, networks={k: dataclasses.replace(n, vni=4096 + i)
                                               for i, (k, n) in enumerate(sorted(spec.networks.items()))})
    host2 = IPv4Address("10.99.0.2")
    z = Zone([spec], [Remote("mesh", IPv4Address("10.60.0.9"), host2, "02:fa:0a:3c:00:09", "m2", ("cache",)),
                      Remote("other", IPv4Address("10.61.0.9"), host2, "02:fa:0a:3d:00:09", "o2")])
    m1 = z.views["shop/m1"]
    assert [str(x) for x in z.lookup(m1, "m2").addresses] == ["10.60.0.9"]
    assert [str(x) for x in z.lookup(m1, "cache.mesh").addresses] == ["10.60.0.9"]
    assert [str(x) for x in z.lookup(z.views["shop/o1"], "o2").addresses] == ["10.61.0.9"]
    for name in ("o2", "o2.other", "o1"):  # another network's, this host's or another's: never forwarded
        found = z.lookup(m1, name)
        assert found.nxdomain and not found.addresses, name
    assert not z.lookup(m1, "example.com").local


def test_dotted_names_of_other_projects_do_not_shadow_real_domains():
    other = OTHER.replace("aliases: [remote]", "aliases: [remote, example.com]")
    z = Zone([build(parse_config(DEMO), None), build(parse_config(other), None)])
    web = z.views["demo/web"]
    assert not z.lookup(web, "example.com").local  # forwarded
    assert z.lookup(web, "remote").nxdomain
    assert z.lookup(z.views["other/far"], "example.com").addresses  # its own network sees it


def test_network_modes():
    text = DEMO.replace("  solo: {}\n", "  solo: {}\n  h: {network_mode: host}\n  n: {network_mode: none}\n"
                        "  side: {network_mode: \"container:web\"}\n")
    z = Zone([build(parse_config(text), None)])
    assert "demo/web" in z.views and z.views["demo/web"].container == "web"  # not taken over by side
    assert "" not in z.views  # host mode: the host's own resolv.conf, no resolver
    none = z.views["demo/n"]
    assert none.networks == () and not none.forward  # no network: nothing resolves, nothing leaves
    for name in ("side", "h", "n"):
        assert z.lookup(z.views["demo/api"], name).nxdomain  # no endpoint, no address


def test_default_bridge_gives_no_names(zone):
    solo = zone.views["demo/solo"]
    assert solo.networks == () and solo.forward
    assert zone.lookup(solo, "solo2").nxdomain
    assert zone.lookup(solo, "solo").nxdomain


def test_round_robin_rotates_every_address(zone):
    api = zone.views["demo/api"]
    seen = [tuple(str(x) for x in zone.lookup(api, "pool").addresses) for _ in range(4)]
    assert seen[0] != seen[1] and seen[0] == seen[2] and seen[1] == seen[3]
    assert sorted(seen[0]) == sorted(seen[1]) == ["10.90.1.10", "10.90.1.11"]


def test_reverse(zone):
    api, web = zone.views["demo/api"], zone.views["demo/web"]
    assert zone.reverse(api, "10.1.90.10.in-addr.arpa.").ptr == "web.front."
    assert zone.reverse(api, "30.2.90.10.in-addr.arpa").ptr == "db.back."
    assert zone.reverse(web, "30.2.90.10.in-addr.arpa").nxdomain  # not shared
    assert zone.reverse(web, "5.1.80.10.in-addr.arpa").nxdomain  # another project's
    assert not zone.reverse(web, "8.8.8.8.in-addr.arpa").local
    assert not zone.reverse(web, "1.2.in-addr.arpa").local


def test_forwarding_only_with_a_non_internal_network(zone):
    assert not zone.views["demo/safe"].forward
    assert zone.views["demo/mixed"].forward
    assert zone.views["demo/web"].forward


# -- responder -------------------------------------------------------------------------------
def ask(zone, asker, name, rdtype="A", **kw):
    q = dns.message.make_query(name, rdtype, **kw)
    return q, respond(zone, zone.views[f"demo/{asker}"], q.to_wire())


def test_local_answer(zone):
    q, out = ask(zone, "api", "web.front")
    assert out.kind == "local"
    r = dns.message.from_wire(render(out.response, out.query, tcp=False))
    assert r.id == q.id and r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert [str(x) for x in r.answer[0]] == ["10.90.1.10"] and r.answer[0].ttl == 0


def test_rendering_keeps_the_rotation(zone):
    orders = []
    for _ in range(2):
        _, out = ask(zone, "api", "pool")
        r = dns.message.from_wire(render(out.response, out.query, tcp=False))
        orders.append([str(x) for x in r.answer[0]])
    assert orders[0] == orders[1][::-1]


def test_aaaa_of_a_known_name_is_empty_noerror(zone):
    _, out = ask(zone, "api", "web", "AAAA")
    assert out.kind == "local" and out.response.rcode() == dns.rcode.NOERROR and not out.response.answer


def test_nxdomain_and_forward(zone):
    _, out = ask(zone, "web", "db")
    assert out.kind == "nxdomain" and out.response.rcode() == dns.rcode.NXDOMAIN
    _, out = ask(zone, "web", "www.example.com")
    assert out.kind == "forward" and out.response is None and out.query is not None


def test_internal_only_gets_servfail_not_forward(zone):
    _, out = ask(zone, "safe", "www.example.com")
    assert out.kind == "refused" and out.response.rcode() == dns.rcode.SERVFAIL
    _, out = ask(zone, "mixed", "www.example.com")
    assert out.kind == "forward"


def test_ptr_answer(zone):
    _, out = ask(zone, "api", "10.1.90.10.in-addr.arpa", "PTR")
    assert out.kind == "local" and out.response.answer[0][0].target.to_text() == "web.front."


def test_malformed_queries(zone):
    view = zone.views["demo/api"]
    wire = dns.message.make_query("web", "A").to_wire()
    assert respond(zone, view, b"\x12\x34\x01").kind == "malformed"  # no whole header: dropped
    cut = respond(zone, view, wire[:-3])  # truncated question: FORMERR under the query's id
    assert cut.kind == "formerr"
    reply = dns.message.from_wire(cut.wire)
    assert reply.id == int.from_bytes(wire[:2], "big") and reply.rcode() == dns.rcode.FORMERR
    assert reply.flags & dns.flags.QR
    response = dns.message.make_response(dns.message.make_query("web", "A")).to_wire()
    assert respond(zone, view, response).kind == "malformed"  # never answer a response
    assert respond(zone, view, response[:-2]).kind == "malformed"
    two = dns.message.make_query("web", "A")
    two.question.append(dns.message.make_query("www", "A").question[0])
    assert respond(zone, view, two.to_wire()).response.rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("web", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert respond(zone, view, notify.to_wire()).response.rcode() == dns.rcode.NOTIMP


def test_too_big_for_udp_is_truncated(zone):
    many = DEMO.replace("  solo: {}\n", "".join(
        f"  n{i}:\n    networks:\n      front: {{aliases: [crowd]}}\n" for i in range(60)) + "  solo: {}\n")
    big = Zone([build(parse_config(many), None)])
    q = dns.message.make_query("crowd", "A")
    out = respond(big, big.views["demo/api"], q.to_wire())
    udp = dns.message.from_wire(render(out.response, out.query, tcp=False))
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = dns.message.from_wire(render(out.response, out.query, tcp=True))
    assert len(tcp.answer[0]) == 60


def test_resolv_conf_names_the_resolver_and_keeps_search():
    text = resolvconf.content("nameserver 10.0.0.1\nsearch corp.example lab.example\n")
    assert "nameserver 127.0.0.11\n" in text and "nameserver 10.0.0.1" not in text
    assert "search corp.example lab.example\n" in text and "options ndots:0\n" in text


def test_redirect_ruleset_maps_port_53_both_ways():
    from fastnet.control.backends.iptables import resolver_ruleset as ruleset

    text = ruleset(40001, 40002)
    assert "ip daddr 127.0.0.11 udp dport 53 udp dport set 40001" in text
    assert "ip daddr 127.0.0.11 tcp dport 53 tcp dport set 40002" in text
    assert "ip saddr 127.0.0.11 udp sport 40001 udp sport set 53" in text
    assert "ip saddr 127.0.0.11 tcp sport 40002 tcp sport set 53" in text
    assert "nat" not in text and " ct " not in text  # stateless: no conntrack in the container
