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
          6, 5, "networks.lan.internal", "internal is only for bridge and overlay networks")


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


# ---------------------------------------------------------------- overlay


def test_overlay_takes_the_store_and_leaves_room_for_vxlan():
    cfg = parse("""\
        store: http://10.0.0.5:2379/
        networks:
          mesh: {driver: overlay, subnet: 10.60.0.0/16}
        containers:
          web: {networks: [mesh]}
        """)
    assert (cfg.store, cfg.vxlan_port) == ("http://10.0.0.5:2379", 4789)
    mesh = cfg.networks["mesh"]
    assert (mesh.driver, mesh.sized, mesh.mtu_overhead, mesh.gateway) == ("overlay", True, 50, IPv4Address("10.60.0.1"))


def test_overlay_without_store_names_the_key():
    fails("networks:\n  mesh: {driver: overlay, subnet: 10.60.0.0/16}\n", 2, 18, "networks.mesh.driver",
          "needs 'store:'", "etcd URL")


def test_store_must_be_an_http_url():
    fails("store: 10.0.0.5:2379\n", 1, 8, "store", "invalid store URL", "http://10.0.0.5:2379")
    fails("store: http://10.0.0.5:2379/v3/kv\n", 1, 8, "store", "invalid store URL")


def test_vxlan_port_is_a_port():
    cfg = parse("store: http://127.0.0.1:2379\nvxlan_port: 8472\n")
    assert cfg.vxlan_port == 8472
    fails("vxlan_port: 70000\n", 1, 13, "vxlan_port")


def test_overlay_has_no_parent():
    fails("store: http://127.0.0.1:2379\nnetworks:\n  mesh: {driver: overlay, subnet: 10.60.0.0/16, parent: up0}\n",
          3, 49, "networks.mesh.parent", "parent is only for macvlan and ipvlan networks")
