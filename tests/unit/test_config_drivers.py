"""Config of macvlan and ipvlan networks: parent, mode, and what they cannot be combined with."""
from __future__ import annotations

from ipaddress import IPv4Address

from test_config import fails, parse


def test_macvlan_defaults_to_bridge_mode_and_first_address_as_gateway():
    cfg = parse("""\
        networks:
          lan: {driver: macvlan, parent: up0, subnet: 198.51.100.0/24}
        """)
    lan = cfg.networks["lan"]
    assert (lan.driver, lan.parent, lan.mode) == ("macvlan", "up0", "bridge")
    assert lan.gateway == IPv4Address("198.51.100.1")


def test_ipvlan_defaults_to_l2_and_takes_l3():
    cfg = parse("""\
        networks:
          a: {driver: ipvlan, parent: up0, subnet: 10.1.0.0/24}
          b: {driver: ipvlan, parent: up0, mode: l3, subnet: 10.2.0.0/24, gateway: 10.2.0.254}
        """)
    assert (cfg.networks["a"].mode, cfg.networks["b"].mode) == ("l2", "l3")
    assert cfg.networks["b"].gateway == IPv4Address("10.2.0.254")


def test_bridge_networks_have_no_parent_or_mode():
    cfg = parse("networks:\n  front: {subnet: 10.90.1.0/24}\n")
    assert (cfg.networks["front"].parent, cfg.networks["front"].mode) == (None, None)


def test_vlan_parent_is_kept_as_written():
    cfg = parse("networks:\n  lan: {driver: macvlan, parent: up0.42, subnet: 10.1.0.0/24}\n")
    assert cfg.networks["lan"].parent == "up0.42"
    cfg = parse("networks:\n  lan: {driver: macvlan, parent: br.lan, subnet: 10.1.0.0/24}\n")
    assert cfg.networks["lan"].parent == "br.lan"


def test_parent_required():
    fails("networks:\n  lan:\n    driver: macvlan\n    subnet: 10.1.0.0/24\n", 2, 3,
          "networks.lan", "parent is required for a macvlan network")


def test_subnet_required_even_for_a_network_named_bridge():
    fails("networks:\n  bridge:\n    driver: ipvlan\n    parent: up0\n", 2, 3, "networks.bridge", "subnet is required")


def test_parent_on_bridge_network():
    fails("networks:\n  front:\n    subnet: 10.1.0.0/24\n    parent: up0\n", 4, 5,
          "networks.front.parent", "only for macvlan and ipvlan networks")


def test_mode_on_bridge_network():
    fails("networks:\n  front:\n    subnet: 10.1.0.0/24\n    mode: l2\n", 4, 5,
          "networks.front.mode", "only for macvlan and ipvlan networks")


def test_mode_of_the_other_driver():
    fails("networks:\n  lan:\n    driver: macvlan\n    parent: up0\n    mode: l3\n    subnet: 10.1.0.0/24\n", 5, 11,
          "networks.lan.mode", "unknown macvlan mode 'l3'", "bridge, private, vepa, passthru")
    fails("networks:\n  lan:\n    driver: ipvlan\n    parent: up0\n    mode: vepa\n    subnet: 10.1.0.0/24\n", 5, 11,
          "networks.lan.mode", "unknown ipvlan mode 'vepa'", "l2, l3")


def test_bad_vlan_parent():
    fails("networks:\n  lan:\n    driver: macvlan\n    parent: up0.5000\n    subnet: 10.1.0.0/24\n", 4, 13,
          "networks.lan.parent", "VLAN id from 1 to 4094")
    fails("networks:\n  lan:\n    driver: macvlan\n    parent: a-very-long-interface\n    subnet: 10.1.0.0/24\n", 4, 13,
          "networks.lan.parent", "invalid interface name")


def test_internal_macvlan():
    fails("networks:\n  lan:\n    driver: macvlan\n    parent: up0\n    subnet: 10.1.0.0/24\n    internal: true\n",
          6, 5, "networks.lan.internal", "internal is only for bridge networks")


def test_two_networks_on_one_parent_with_overlapping_subnets():
    fails("""\
        networks:
          a: {driver: macvlan, parent: up0, subnet: 10.1.0.0/24}
          b: {driver: ipvlan, parent: up0, subnet: 10.1.0.128/25}
        """, 3, 44, "networks.b.subnet", "overlaps 10.1.0.0/24 of network a")


def test_no_publish_on_macvlan_or_ipvlan():
    for driver in ("macvlan", "ipvlan"):
        fails(f"""\
            networks:
              lan: {{driver: {driver}, parent: up0, subnet: 10.1.0.0/24}}
            containers:
              web:
                networks: [lan]
                publish: ["8080:80"]
            """, 6, 5, "containers.web.publish", f"default route is on {driver} network lan")


def test_publish_allowed_when_the_default_route_is_on_a_bridge_network():
    cfg = parse("""\
        networks:
          front: {subnet: 10.90.1.0/24}
          lan: {driver: macvlan, parent: up0, subnet: 10.1.0.0/24}
        containers:
          web:
            networks: [front, lan]
            publish: ["8080:80"]
        """)
    assert len(cfg.containers["web"].publish) == 1


def test_spec_and_state_keep_parent_and_mode():
    from fastnet.control import state
    from fastnet.control.spec import build

    cfg = parse("""\
        networks:
          lan: {driver: ipvlan, parent: up0, mode: l3, subnet: 10.1.0.0/24}
          mv: {driver: macvlan, parent: up0.7, subnet: 10.2.0.0/24}
        containers:
          web: {networks: [lan, mv]}
        """)
    spec = build(cfg, None)
    assert (spec.networks["lan"].parent, spec.networks["lan"].mode) == ("up0", "l3")
    assert (spec.networks["mv"].parent, spec.networks["mv"].mode) == ("up0.7", "bridge")
    st = state.ProjectState(spec=spec, ports={"web/lan": 7})
    assert state.from_json(state.to_json(st)) == st
