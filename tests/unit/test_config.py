"""Tests for fastnet.control.config: the project file contract and its error messages."""

from __future__ import annotations

import dataclasses
import pickle
import textwrap
from importlib.resources import files
from ipaddress import IPv4Address, IPv4Network

import pytest
from config_checks import rejects

from fastnet.control.config import (
    DEFAULT_NETWORK,
    Attachment,
    ConfigError,
    PortMapping,
    load_config,
    parse_config,
)


def parse(text: str):
    return parse_config(textwrap.dedent(text), "demo.yaml")


def fails(text: str, line: int, col: int, path: str, *fragments: str) -> ConfigError:
    """Assert that ``text`` is rejected at line:col with ``path`` and message fragments."""
    return rejects(text, "demo.yaml", line, col, path, *fragments)


NETS = """\
    networks:
      front:
        subnet: 10.90.1.0/24
      back:
        subnet: 10.90.2.0/24
"""


# ---------------------------------------------------------------- valid files


def test_bundled_demo_example():
    cfg = load_config(str(files("fastnet.control") / "examples" / "demo.yaml"))
    assert cfg.name == "demo"
    assert cfg.uplink is None
    assert cfg.backend == "ebpf"
    assert list(cfg.networks) == ["front", "back", "bridge"]
    assert cfg.networks["front"].subnet == IPv4Network("10.90.1.0/24")
    assert cfg.networks["back"].gateway == IPv4Address("10.90.2.1")
    assert list(cfg.containers) == ["web", "api", "db", "solo"]
    web = cfg.containers["web"]
    assert web.attachments == (Attachment("front", IPv4Address("10.90.1.10"), ("www",)),)
    assert web.command == ("python3", "-m", "http.server", "80")
    assert web.publish == ()
    assert [a.network for a in cfg.containers["api"].attachments] == ["front", "back"]
    assert [a.network for a in cfg.containers["db"].attachments] == ["back"]
    assert cfg.containers["solo"].attachments == (Attachment(DEFAULT_NETWORK, None, ()),)


def test_defaults():
    cfg = parse("containers: {}\n")
    assert (cfg.name, cfg.uplink, cfg.backend, cfg.source) == ("fastnet", None, "ebpf", "demo.yaml")
    assert cfg.networks == {} and cfg.containers == {}


def test_top_level_settings():
    cfg = parse("""\
        name: my-proj.1
        uplink: enp0s31f6
        backend: iptables
    """)
    assert (cfg.name, cfg.uplink, cfg.backend) == ("my-proj.1", "enp0s31f6", "iptables")


def test_network_settings_and_defaults():
    cfg = parse("""\
        networks:
          front:
            driver: bridge
            subnet: 10.90.1.0/24
            gateway: 10.90.1.254
            internal: true
          back:
            subnet: 10.90.2.0/30
        containers:
          a:
            networks: [front, back]
    """)
    front, back = cfg.networks["front"], cfg.networks["back"]
    assert (front.name, front.driver, front.gateway, front.internal) == (
        "front", "bridge", IPv4Address("10.90.1.254"), True,
    )
    assert (back.driver, back.gateway, back.internal) == ("bridge", IPv4Address("10.90.2.1"), False)


def test_defined_networks_exist_even_unused_and_bridge_only_when_used():
    cfg = parse(NETS + """\
    containers:
      a:
        networks: [front]
    """)
    assert list(cfg.networks) == ["front", "back"]


def test_empty_network_list_forms_join_bridge():
    cfg = parse("""\
        containers:
          a: {}
          b:
          c:
            networks: []
          d:
            networks: {}
          e:
            networks:
    """)
    assert list(cfg.networks) == ["bridge"]
    bridge = cfg.networks["bridge"]
    assert (bridge.subnet, bridge.gateway) == (IPv4Network("172.17.0.0/16"), IPv4Address("172.17.0.1"))
    for container in cfg.containers.values():
        assert container.attachments == (Attachment("bridge", None, ()),)
        assert container.command is None and container.publish == ()


def test_bridge_named_explicitly_is_created_last():
    cfg = parse(NETS + """\
    containers:
      a:
        networks: [bridge, front]
    """)
    assert list(cfg.networks) == ["front", "back", "bridge"]
    assert [a.network for a in cfg.containers["a"].attachments] == ["bridge", "front"]


def test_bridge_subnet_override_keeps_file_order():
    cfg = parse("""\
        networks:
          bridge:
            subnet: 10.50.0.0/16
          front:
            subnet: 172.17.0.0/16
        containers:
          a: {}
    """)
    assert list(cfg.networks) == ["bridge", "front"]
    assert cfg.networks["bridge"].subnet == IPv4Network("10.50.0.0/16")
    assert cfg.networks["bridge"].gateway == IPv4Address("10.50.0.1")


def test_bridge_defined_without_subnet_uses_default():
    cfg = parse("networks:\n  bridge: {internal: true}\n")
    assert cfg.networks["bridge"].subnet == IPv4Network("172.17.0.0/16")
    assert cfg.networks["bridge"].internal is True


def test_attachment_mapping_form():
    cfg = parse(NETS + """\
    containers:
      web:
        networks:
          back:
          front: {ipv4_address: 10.90.1.10, aliases: [www, web-1]}
      api:
        networks: {front: {}}
    """)
    assert cfg.containers["web"].attachments == (
        Attachment("back", None, ()),
        Attachment("front", IPv4Address("10.90.1.10"), ("www", "web-1")),
    )
    assert cfg.containers["api"].attachments == (Attachment("front", None, ()),)


def test_aliases_may_be_shared():
    cfg = parse(NETS + """\
    containers:
      a: {networks: {front: {aliases: [svc]}}}
      b: {networks: {front: {aliases: [svc]}}}
    """)
    assert cfg.containers["b"].attachments[0].aliases == ("svc",)


def test_static_address_on_implicit_bridge():
    cfg = parse("containers:\n  a:\n    networks: {bridge: {ipv4_address: 172.17.0.9}}\n")
    assert cfg.containers["a"].attachments[0].ipv4_address == IPv4Address("172.17.0.9")


def test_command_as_string_is_split_like_a_shell():
    cfg = parse("""\
        containers:
          a:
            command: sh -c 'echo "hi there"'
    """)
    assert cfg.containers["a"].command == ("sh", "-c", 'echo "hi there"')


def test_publish_entries_are_parsed():
    cfg = parse("""\
        containers:
          a:
            publish:
              - 8080:80
              - "127.0.0.1:5000-5001:6000-6001/udp"
              - 53:53/udp
              - 0.0.0.0:443:8443/tcp
    """)
    assert cfg.containers["a"].publish == (
        PortMapping(None, 8080, 8080, 80, 80, "tcp"),
        PortMapping(IPv4Address("127.0.0.1"), 5000, 5001, 6000, 6001, "udp"),
        PortMapping(None, 53, 53, 53, 53, "udp"),
        PortMapping(IPv4Address("0.0.0.0"), 443, 443, 8443, 8443, "tcp"),
    )


def test_name_length_limits_are_inclusive():
    cfg = parse(f"""\
        name: {"p" * 12}
        uplink: {"u" * 15}
        networks:
          {"n" * 32}: {{subnet: 10.1.0.0/16}}
        containers:
          {"c" * 32}: {{networks: [{"n" * 32}]}}
    """)
    assert cfg.name == "p" * 12 and list(cfg.containers) == ["c" * 32]


def test_smallest_subnet_is_slash_30():
    cfg = parse("networks:\n  tiny:\n    subnet: 10.1.1.0/30\n")
    assert cfg.networks["tiny"].gateway == IPv4Address("10.1.1.1")


def test_yaml_anchors_and_merge_keys_work():
    cfg = parse("""\
        networks:
          front: &base
            subnet: 10.1.0.0/16
            internal: true
          back:
            <<: *base
            subnet: 10.2.0.0/16
    """)
    assert cfg.networks["back"].internal is True
    assert cfg.networks["back"].subnet == IPv4Network("10.2.0.0/16")


def test_config_is_frozen():
    cfg = parse(NETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.networks["front"].subnet = IPv4Network("10.0.0.0/8")  # type: ignore[misc]


def test_load_config_reads_files(tmp_path):
    path = tmp_path / "proj.yaml"
    path.write_text("name: proj\n")
    cfg = load_config(path)
    assert cfg.name == "proj" and cfg.source == str(path)

    path.write_text("name: Proj\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:1:7: name: invalid project name 'Proj'")


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line is None
    assert str(info.value).startswith(f"{path}: cannot read the file:")


def test_config_error_attributes_and_pickling():
    err = fails("networks:\n  front:\n    subent: 1\n", 3, 5, "networks.front", "unknown key 'subent'")
    assert (err.source, err.problem) == ("demo.yaml", "unknown key 'subent' (did you mean 'subnet'?)")
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# ---------------------------------------------------------------- subnets


def test_duplicate_subnet():
    fails("""\
        networks:
          front:
            subnet: 10.90.1.0/24
          back:
            subnet: 10.90.1.0/24
    """, 5, 13, "networks.back.subnet", "10.90.1.0/24 is already used by network front")


def test_overlapping_subnets():
    fails("""\
        networks:
          front:
            subnet: 10.90.1.0/24
          mid:
            subnet: 10.80.0.0/16
          back:
            subnet: 10.90.0.0/16
    """, 7, 13, "networks.back.subnet", "10.90.0.0/16 overlaps 10.90.1.0/24 of network front")


def test_overlap_with_implicit_bridge_is_reported_at_the_user_network():
    fails("""\
        networks:
          front:
            subnet: 172.17.3.0/24
        containers:
          solo: {}
    """, 3, 13, "networks.front.subnet",
        "172.17.3.0/24 overlaps 172.17.0.0/16 of the default network 'bridge' (used by container solo)")


def test_no_overlap_error_when_bridge_is_unused():
    cfg = parse("networks:\n  front:\n    subnet: 172.17.3.0/24\ncontainers:\n  a: {networks: [front]}\n")
    assert list(cfg.networks) == ["front"]


def test_overlap_with_overridden_bridge():
    fails("""\
        networks:
          bridge:
            subnet: 10.50.0.0/16
          front:
            subnet: 10.50.7.0/24
    """, 5, 13, "networks.front.subnet", "10.50.7.0/24 overlaps 10.50.0.0/16 of network bridge")


@pytest.mark.parametrize("subnet", ["10.90.1.0/31", "10.90.1.1/32"])
def test_subnet_too_small(subnet):
    fails(f"networks:\n  front:\n    subnet: {subnet}\n", 3, 13, "networks.front.subnet",
          "subnet too small: needs at most /30")


def test_subnet_with_host_bits():
    fails("networks:\n  front:\n    subnet: 10.90.1.5/24\n", 3, 13, "networks.front.subnet",
          "10.90.1.5/24 has host bits set", "network address would be 10.90.1.0/24")


@pytest.mark.parametrize(("subnet", "fragment"), [
    ("10.90.1.0", "has no prefix length"),
    ("10.90.300.0/24", "is not an IPv4 subnet in CIDR form"),
    ("fd00::/64", "IPv4 only"),
    ("10.90.1.0/33", "is not an IPv4 subnet"),
])
def test_malformed_subnet(subnet, fragment):
    fails(f"networks:\n  front:\n    subnet: {subnet}\n", 3, 13, "networks.front.subnet", fragment)


def test_subnet_must_be_a_string():
    fails("networks:\n  front:\n    subnet: [10.0.0.0/8]\n", 3, 13, "networks.front.subnet",
          "expected a subnet like 10.90.1.0/24, got a list")


def test_subnet_is_required_for_user_networks():
    fails("""\
        networks:
          front:
            subnet: 10.90.1.0/24
          back:
            internal: true
    """, 4, 3, "networks.back", "subnet is required")


def test_subnet_required_for_null_network():
    fails("networks:\n  back:\n", 2, 3, "networks.back", "subnet is required")


# ---------------------------------------------------------------- gateways


@pytest.mark.parametrize(("gateway", "fragment"), [
    ("10.90.2.1", "gateway 10.90.2.1 is outside subnet 10.90.1.0/24"),
    ("10.90.1.0", "gateway 10.90.1.0 is the network address of 10.90.1.0/24"),
    ("10.90.1.255", "gateway 10.90.1.255 is the broadcast address of 10.90.1.0/24"),
    ("10.90.1", "'10.90.1' is not an IPv4 address"),
])
def test_bad_gateway(gateway, fragment):
    fails(f"""\
        networks:
          front:
            subnet: 10.90.1.0/24
            gateway: {gateway}
    """, 4, 14, "networks.front.gateway", fragment)


# ---------------------------------------------------------------- static addresses


@pytest.mark.parametrize(("address", "fragment"), [
    ("10.90.2.10", "10.90.2.10 is outside subnet 10.90.1.0/24 (network front)"),
    ("10.90.1.0", "10.90.1.0 is the network address of 10.90.1.0/24 (network front)"),
    ("10.90.1.255", "10.90.1.255 is the broadcast address of 10.90.1.0/24 (network front)"),
    ("10.90.1.1", "10.90.1.1 is the gateway of network front"),
    ("fe80::1", "is not an IPv4 address (IPv6 is not supported)"),
])
def test_bad_static_address(address, fragment):
    fails(NETS + f"""\
    containers:
      web:
        networks:
          front:
            ipv4_address: {address}
    """, 10, 23, "containers.web.networks.front.ipv4_address", fragment)


def test_duplicate_static_address_on_one_network():
    fails(NETS + """\
    containers:
      web:
        networks:
          front: {ipv4_address: 10.90.1.10}
      api:
        networks:
          back: {ipv4_address: 10.90.2.10}
          front: {ipv4_address: 10.90.1.10}
    """, 13, 29, "containers.api.networks.front.ipv4_address",
        "10.90.1.10 is already assigned to container web on network front")


def test_same_address_on_different_networks_is_fine():
    cfg = parse("""\
        networks:
          one: {subnet: 10.1.0.0/24}
        containers:
          a: {networks: {one: {ipv4_address: 10.1.0.5}}}
          b: {networks: {bridge: {ipv4_address: 172.17.0.5}}}
    """)
    assert len(cfg.containers) == 2


# ---------------------------------------------------------------- references


def test_unknown_network_in_list():
    fails(NETS + """\
    containers:
      web:
        networks: [front, nope]
    """, 8, 23, "containers.web.networks", "unknown network 'nope' (known: front, back, bridge)")


def test_unknown_network_in_mapping():
    fails(NETS + """\
    containers:
      web:
        networks:
          front:
          nope: {ipv4_address: 10.0.0.1}
    """, 10, 7, "containers.web.networks", "unknown network 'nope'")


def test_duplicate_network_in_list():
    fails(NETS + """\
    containers:
      web:
        networks:
          - back
          - front
          - back
    """, 11, 9, "containers.web.networks", "network 'back' is listed twice")


# ---------------------------------------------------------------- keys and types


@pytest.mark.parametrize(("text", "line", "col", "path", "fragment"), [
    ("nmae: x\n", 1, 1, "", "unknown key 'nmae' (did you mean 'name'?)"),
    ("name: x\nzzz: 1\n", 2, 1, "",
     "unknown key 'zzz' (valid keys: name, uplink, backend, networks, containers, conntrack, "
     "publish_ephemeral_ports, store, vxlan_port)"),
    ("networks:\n  front:\n    subnet: 10.1.0.0/16\n    subent: 1\n", 4, 5, "networks.front",
     "unknown key 'subent' (did you mean 'subnet'?)"),
    ("containers:\n  web:\n    network: [a]\n", 3, 5, "containers.web",
     "unknown key 'network' (did you mean 'networks'?)"),
    ("containers:\n  web:\n    networks:\n      bridge: {ipv4_adress: 172.17.0.2}\n", 4, 16,
     "containers.web.networks.bridge", "unknown key 'ipv4_adress' (did you mean 'ipv4_address'?)"),
])
def test_unknown_keys(text, line, col, path, fragment):
    fails(text, line, col, path, fragment)


@pytest.mark.parametrize(("text", "line", "col", "path", "fragment"), [
    ("networks: 5\n", 1, 11, "networks", "expected a mapping, got number 5"),
    ("containers: [web]\n", 1, 13, "containers", "expected a mapping, got a list"),
    ("containers:\n  web: hello\n", 2, 8, "containers.web", "expected a mapping, got string 'hello'"),
    ("networks:\n  front: [1]\n", 2, 10, "networks.front", "expected a mapping, got a list"),
    ("containers:\n  web:\n    networks: 5\n", 3, 15, "containers.web.networks",
     "expected a list of network names or a mapping of network name to settings, got number 5"),
    ("containers:\n  web:\n    networks: [front, 7]\n", 3, 23, "containers.web.networks",
     "expected a string, got number 7 (put it in quotes)"),
    ("containers:\n  web:\n    command: 5\n", 3, 14, "containers.web.command",
     "expected a list of strings or one command string, got number 5"),
    ("containers:\n  web:\n    command: [sleep, 10]\n", 3, 22, "containers.web.command",
     "expected a string, got number 10 (put it in quotes)"),
    ("containers:\n  web:\n    publish: '8080:80'\n", 3, 14, "containers.web.publish",
     "expected a list, got string '8080:80'"),
    ("networks:\n  front:\n    subnet: 10.1.0.0/16\n    internal: yes\n", 4, 15, "networks.front.internal",
     "expected true or false, got string 'yes'"),
    ("containers:\n  web:\n    networks:\n      bridge: {aliases: www}\n", 4, 25,
     "containers.web.networks.bridge.aliases", "expected a list, got string 'www'"),
    ("name: 2020-01-01\n", 1, 7, "name", "expected a string, got date 2020-01-01"),
    ("name:\n", 1, 1, "name", "expected a string, got null"),
    ("uplink: 5\n", 1, 9, "uplink", "expected a string, got number 5"),
])
def test_wrong_types(text, line, col, path, fragment):
    fails(text, line, col, path, fragment)


def test_non_string_key():
    fails("networks:\n  10: {subnet: 10.1.0.0/16}\n", 2, 3, "networks",
          "keys must be strings, got number 10; put the key in quotes")


def test_quoted_numeric_name_is_fine():
    cfg = parse("networks:\n  '10': {subnet: 10.1.0.0/16}\n")
    assert list(cfg.networks) == ["10"]


# ---------------------------------------------------------------- names


NAME_RULE = "use lowercase letters, digits, '_', '.' and '-', starting with a letter or digit"


@pytest.mark.parametrize(("text", "line", "col", "path", "fragments"), [
    ("name: Demo\n", 1, 7, "name", ("invalid project name 'Demo'", NAME_RULE, "^[a-z0-9][a-z0-9_.-]*$")),
    ("name: abcdefghijklm\n", 1, 7, "name",
     ("project name 'abcdefghijklm' is too long: 13 characters, at most 12",)),
    ("name: ''\n", 1, 7, "name", ("invalid project name ''",)),
    ("networks:\n  -front: {subnet: 10.1.0.0/16}\n", 2, 3, "networks.-front",
     ("invalid network name '-front'", NAME_RULE)),
    ("networks:\n  " + "n" * 33 + ": {subnet: 10.1.0.0/16}\n", 2, 3, "networks." + "n" * 33,
     ("is too long: 33 characters, at most 32",)),
    ("containers:\n  my web: {}\n", 2, 3, "containers.my web", ("invalid container name 'my web'",)),
    ("containers:\n  \"web\\n\": {}\n", 2, 3, "containers.'web\\n'", ("invalid container name 'web\\n'",)),
    ("containers:\n  " + "c" * 33 + ": {}\n", 2, 3, "containers." + "c" * 33,
     ("container name", "at most 32")),
    ("containers:\n  web:\n    networks:\n      bridge: {aliases: [ok, Www]}\n", 4, 30,
     "containers.web.networks.bridge.aliases", ("invalid alias name 'Www'", NAME_RULE)),
])
def test_invalid_names(text, line, col, path, fragments):
    fails(text, line, col, path, *fragments)


@pytest.mark.parametrize("uplink", ["eth0/1", "'eth 0'", "abcdefghijklmnop", "''", "'..'", "eth0:1"])
def test_invalid_uplink(uplink):
    fails(f"uplink: {uplink}\n", 1, 9, "uplink", "invalid interface name",
          "needs 1 to 15 characters and no '/', ':' or whitespace")


def test_invalid_backend():
    fails("backend: nftables\n", 1, 10, "backend", "unknown backend 'nftables': choose one of ebpf, iptables")


def test_unsupported_driver():
    fails("networks:\n  front:\n    driver: weave\n    subnet: 10.1.0.0/16\n", 3, 13,
          "networks.front.driver", "unknown driver 'weave'", "bridge, macvlan, ipvlan, overlay")


# ---------------------------------------------------------------- commands


def test_empty_command():
    fails("containers:\n  web:\n    command: []\n", 3, 14, "containers.web.command", "command is empty")


def test_unsplittable_command():
    fails("containers:\n  web:\n    command: echo 'oops\n", 3, 14, "containers.web.command",
          "cannot split the command into words (No closing quotation)")


# ---------------------------------------------------------------- publish


@pytest.mark.parametrize(("entry", "fragment"), [
    ("80", 'publish entries must be strings like "8080:80", got number 80'),
    ("'80'", "invalid port mapping '80': expected [IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]"),
    ("8080:80/sctp", "invalid port mapping '8080:80/sctp'"),
    ("0:80", "invalid port mapping '0:80': port 0 is outside 1-65535"),
    ("8080:65536", "port 65536 is outside 1-65535"),
    ("8000-8002:80-81", "the host range has 3 ports but the container range has 2"),
    ("8002-8000:82-80", "range 8002-8000 ends before it starts"),
    ("999.1.1.1:80:80", "'999.1.1.1' is not an IPv4 address"),
    ("\"8080:80\\n\"", "invalid port mapping '8080:80\\n'"),
    ("\"\u0668\u0660:80\"", "invalid port mapping"),
])
def test_bad_publish_entry(entry, fragment):
    fails(f"""\
        containers:
          web:
            publish:
              - 8080:80
              - {entry}
    """, 5, 9, "containers.web.publish", fragment)


# ---------------------------------------------------------------- YAML level


def test_duplicate_key_nested():
    fails("""\
        networks:
          front:
            subnet: 10.1.0.0/16
            subnet: 10.2.0.0/16
    """, 4, 5, "networks.front.subnet", "duplicate key 'subnet' (first defined on line 3)")


def test_duplicate_key_top_level():
    fails("name: a\nnetworks: {}\nname: b\n", 3, 1, "name", "duplicate key 'name' (first defined on line 1)")


def test_duplicate_container():
    fails("containers:\n  web: {}\n  api: {}\n  web: {}\n", 4, 3, "containers.web", "duplicate key 'web'")


def test_duplicate_key_in_flow_mapping_inside_list():
    fails("containers:\n  - {a: 1, a: 2}\n", 2, 12, "containers.a", "duplicate key 'a'")


@pytest.mark.parametrize(("text", "line", "col", "fragment"), [
    ("networks: [front\n", 2, 1, "YAML syntax error: expected ',' or ']'"),
    ("name: a: b\n", 1, 8, "YAML syntax error: mapping values are not allowed here"),
    ("networks:\n\t- front\n", 2, 1, "YAML syntax error: found character '\\t' that cannot start any token"),
    ("name: 'demo\n", 2, 1, "YAML syntax error: found unexpected end of stream"),
    ("name: a\n---\nname: b\n", 2, 1, "YAML syntax error: but found another document"),
    ("name: a\nuplink: \x07\n", 2, 9, "YAML syntax error: character U+0007 is not allowed"),
])
def test_yaml_syntax_errors(text, line, col, fragment):
    fails(text, line, col, "", fragment)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", "null\n"])
def test_empty_file(text):
    fails(text, 1, 1, "", "the file is empty")


@pytest.mark.parametrize(("text", "fragment"), [
    ("- web\n", "got a list"),
    ("hello\n", "got string 'hello'"),
    ("42\n", "got number 42"),
])
def test_top_level_must_be_a_mapping(text, fragment):
    fails(text, 1, 1, "", "the top level must be a mapping of settings", fragment)


# ---------------------------------------------------------------- error order


def test_first_schema_error_in_file_order_wins():
    fails("""\
        containers:
          web:
            command: 5
        networks:
          Front: {subnet: 10.1.0.0/16}
        backend: nope
    """, 3, 14, "containers.web.command", "expected a list of strings")


def test_first_cross_check_error_in_file_order_wins():
    fails("""\
        containers:
          web:
            networks: [nope]
        networks:
          front: {subnet: 10.1.0.0/16}
          back: {subnet: 10.1.0.0/16}
    """, 3, 16, "containers.web.networks", "unknown network 'nope'")


# --- publishing and conntrack settings --------------------------------------------------


def test_publish_overlap_names_both_owners():
    text = """\
containers:
  a: {publish: ["8080-8090:80-90"]}
  b: {publish: ["192.0.2.1:8085:85/tcp"]}
"""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "p.yaml")
    assert str(exc.value) == (
        "p.yaml:3:17: containers.b.publish: 192.0.2.1:8085/tcp overlaps 8080-8090/tcp "
        "already published by container a"
    )


def test_publish_same_port_other_protocol_or_address_is_fine():
    text = """\
containers:
  a: {publish: ["8080:80", "192.0.2.1:9000:90"]}
  b: {publish: ["8080:80/udp", "192.0.2.2:9000:90"]}
"""
    assert len(parse_config(text).containers["b"].publish) == 2


def test_publish_from_an_internal_only_container_is_refused():
    text = """\
networks:
  v: {subnet: 10.1.0.0/24, internal: true}
containers:
  a: {networks: [v], publish: ["80:80"]}
"""
    with pytest.raises(ConfigError, match="only on internal networks"):
        parse_config(text)


def test_publish_ephemeral_ports_is_a_boolean_off_by_default():
    assert parse_config("name: x\n").publish_ephemeral_ports is False
    assert parse_config("publish_ephemeral_ports: true\n").publish_ephemeral_ports is True
    with pytest.raises(ConfigError) as exc:
        parse_config("publish_ephemeral_ports: yes\n", "p.yaml")
    assert str(exc.value) == "p.yaml:1:26: publish_ephemeral_ports: expected true or false, got string 'yes'"


def test_conntrack_settings():
    cfg = parse_config("conntrack: {max_flows: 4096, timeouts: {udp: 5}}\n")
    assert cfg.conntrack.max_flows == 4096 and cfg.conntrack.udp == 5
    assert cfg.conntrack.timeouts["tcp_established"] == 21600
    with pytest.raises(ConfigError, match="conntrack.timeouts.udp"):
        parse_config("conntrack: {timeouts: {udp: 0}}\n")
    with pytest.raises(ConfigError, match="conntrack.max_flows"):
        parse_config("conntrack: {max_flows: 10}\n")


def test_conntrack_budget_settings():
    cfg = parse_config("conntrack: {inbound_percent: 25, owner_percent: 100}\n")
    assert (cfg.conntrack.inbound_percent, cfg.conntrack.owner_percent) == (25, 100)
    assert (parse_config("{}\n").conntrack.inbound_percent, parse_config("{}\n").conntrack.owner_percent) == (50, 50)
    for bad in ("inbound_percent: 0", "inbound_percent: 100", "owner_percent: 0", "owner_percent: 101",
                "inbound_percent: 50%"):
        with pytest.raises(ConfigError, match=f"conntrack.{bad.split(':')[0]}"):
            parse_config(f"conntrack: {{{bad}}}\n")


def test_conntrack_half_closed_timeout():
    assert parse_config("{}\n").conntrack.timeouts["tcp_half_closed"] == 240
    assert parse_config("conntrack: {timeouts: {tcp_half_closed: 600}}\n").conntrack.tcp_half_closed == 600
    with pytest.raises(ConfigError, match="conntrack.timeouts.tcp_half_closed"):
        parse_config("conntrack: {timeouts: {tcp_half_closed: 0}}\n")


# ---------------------------------------------------------------- mtu


def test_network_mtu():
    cfg = parse("networks:\n  front: {subnet: 10.90.1.0/24, mtu: 1400}\n  back: {subnet: 10.90.2.0/24}\n")
    assert (cfg.networks["front"].mtu, cfg.networks["back"].mtu) == (1400, None)
    assert parse("networks:\n  front: {subnet: 10.90.1.0/24, mtu: 68}\n").networks["front"].mtu == 68
    assert parse("networks:\n  front: {subnet: 10.90.1.0/24, mtu: 65535}\n").networks["front"].mtu == 65535


@pytest.mark.parametrize(("value", "fragment"), [
    ("67", "mtu 67 is out of range: from 68 to 65535"),
    ("65536", "mtu 65536 is out of range: from 68 to 65535"),
    ("'1400'", "expected an integer"),
    ("true", "expected an integer"),
])
def test_bad_network_mtu(value, fragment):
    fails(f"networks:\n  front:\n    subnet: 10.90.1.0/24\n    mtu: {value}\n", 4, 10, "networks.front.mtu", fragment)


def test_network_mtu_is_for_bridge_networks_only():
    fails("networks:\n  lan:\n    driver: macvlan\n    parent: eth0\n    subnet: 192.168.1.0/24\n    mtu: 1400\n",
          6, 5, "networks.lan.mtu", "mtu is only for bridge networks")
