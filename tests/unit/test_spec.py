"""The desired spec: deterministic names and addresses, stable across runs."""
from ipaddress import IPv4Address

from fastnet.control.config import parse_config
from fastnet.control.spec import build, host_ifname, link_alias, mac_for

BASE = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
  back: {subnet: 10.90.2.0/24}
  vault: {subnet: 10.90.3.0/24, internal: true}
containers:
  web:
    networks:
      front: {ipv4_address: 10.90.1.10, aliases: [www]}
  api:
    networks: [front, back]
  safe:
    networks: [vault, back]
  solo: {}
"""


def test_names_addresses_and_macs():
    spec = build(parse_config(BASE), None)
    api = spec.containers["api"]
    assert [(i.network, i.ifname, str(i.ipv4)) for i in api.interfaces] == [
        ("front", "eth0", "10.90.1.2"),
        ("back", "eth1", "10.90.2.2"),
    ]
    web = spec.containers["web"].interfaces[0]
    assert web.ipv4 == IPv4Address("10.90.1.10") and web.aliases == ("www",)
    assert web.mac == "02:fa:0a:5a:01:0a"
    assert spec.networks["front"].gateway_mac == "02:fa:0a:5a:01:01"
    assert spec.containers["solo"].interfaces[0].network == "bridge"
    assert str(spec.containers["solo"].interfaces[0].ipv4) == "172.17.0.2"
    assert web.host_ifname == host_ifname("demo", "web", "front")
    assert len(web.host_ifname) <= 15 and web.host_ifname.startswith("demo-")
    assert web.alias == link_alias("demo", "web", "front") == "fastnet:demo/web/front"


def test_default_route_skips_internal_networks():
    spec = build(parse_config(BASE), None)
    safe = {i.network: i for i in spec.containers["safe"].interfaces}
    assert not safe["vault"].default_route and safe["back"].default_route
    api = spec.containers["api"].interfaces
    assert [i.default_route for i in api] == [True, False]


def test_network_ids_are_unique_and_stable():
    first = build(parse_config(BASE), None)
    ids = {n: s.net_id for n, s in first.networks.items()}
    assert len(set(ids.values())) == len(ids)
    edited = BASE.replace("  back: {subnet: 10.90.2.0/24}\n", "").replace("[front, back]", "[front]")
    edited = edited.replace("[vault, back]", "[vault]")
    second = build(parse_config(edited), first)
    assert second.networks["front"].net_id == ids["front"]
    assert second.networks["vault"].net_id == ids["vault"]


def test_addresses_and_interface_names_survive_edits():
    first = build(parse_config(BASE), None)
    # a new container sorted before api must not take api's address
    edited = BASE.replace("  solo: {}", "  aaa:\n    networks: [front]\n  solo: {}")
    second = build(parse_config(edited), first)
    assert second.containers["api"].interfaces[0].ipv4 == first.containers["api"].interfaces[0].ipv4
    assert second.containers["aaa"].interfaces[0].ipv4 == IPv4Address("10.90.1.3")
    # removing api's first network keeps eth1 as the name of its remaining interface
    third = build(parse_config(BASE.replace("[front, back]", "[back]")), first)
    assert [(i.network, i.ifname) for i in third.containers["api"].interfaces] == [("back", "eth1")]


def test_mac_for():
    assert mac_for(IPv4Address("172.17.0.1")) == "02:fa:ac:11:00:01"


MTU = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
  big: {subnet: 10.90.4.0/24, mtu: 9000}
  lan: {driver: macvlan, parent: eth0, subnet: 192.168.1.0/24}
containers:
  api:
    networks: [front, big, lan]
"""


def mtus(spec, container="api"):
    return {i.network: i.mtu for i in spec.containers[container].interfaces}


def test_interfaces_take_the_network_mtu_else_the_uplinks():
    spec = build(parse_config(MTU), None, default_mtu=1400)
    assert mtus(spec) == {"front": 1400, "big": 9000, "lan": None}
    assert (spec.networks["front"].mtu, spec.networks["big"].mtu) == (None, 9000)


def test_a_changed_uplink_mtu_does_not_change_existing_interfaces():
    first = build(parse_config(MTU), None, default_mtu=1400)
    again = build(parse_config(MTU + "  new:\n    networks: [front]\n"), first, default_mtu=1500)
    assert mtus(again) == mtus(first)
    assert mtus(again, "new") == {"front": 1500}


def test_a_changed_network_mtu_changes_its_interfaces():
    first = build(parse_config(MTU), None, default_mtu=1400)
    edited = build(parse_config(MTU.replace("mtu: 9000", "mtu: 8000")), first, default_mtu=1400)
    assert mtus(edited) == {"front": 1400, "big": 8000, "lan": None}
    # without its mtu the network takes the uplink's again
    dropped = build(parse_config(MTU.replace(", mtu: 9000", "")), first, default_mtu=1500)
    assert mtus(dropped)["big"] == 1500


def test_state_without_mtus_keeps_them_unset():
    """State written before `mtu:` has none: its interfaces keep the kernel's default."""
    first = build(parse_config(MTU), None, default_mtu=None)
    assert mtus(first) == {"front": None, "big": 9000, "lan": None}
    assert mtus(build(parse_config(MTU), first, default_mtu=1400))["front"] is None
