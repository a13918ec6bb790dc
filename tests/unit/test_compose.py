"""Tests for fastnet.control.compose: Compose files translated into fastnet's document, the
Compose-style names, every `ports:` syntax, the ignored-key warning and errors located in the
Compose file's own terms."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from config_checks import rejects

from fastnet.control import cli, compose
from fastnet.control.config import ConfigError, PortMapping, load_config, parse_config
from fastnet.control.source import read_yaml


def translate(text: str, project_dir: str = "/srv/shop", source: str = "compose.yaml"):
    """The translated document and warnings of a Compose text (no validation by fastnet)."""
    data, where = read_yaml(textwrap.dedent(text), source)
    doc, _, warnings = compose.translate(data, where, project_dir)
    return doc, warnings


def parse(text: str, source: str = "/srv/shop/compose.yaml"):
    return parse_config(textwrap.dedent(text), source)


def fails(text: str, line: int, col: int, path: str, *fragments: str) -> ConfigError:
    """Assert that the Compose ``text`` is rejected at line:col of compose.yaml with ``path``."""
    return rejects(text, "/srv/shop/compose.yaml", line, col, path, *fragments)


TWO_SERVICES = """\
    services:
      web:
        image: nginx
        command: python3 -m http.server 80
        ports:
          - "8080:80"
        networks:
          front:
            aliases: [www]
            ipv4_address: 10.90.1.10
      api:
        command: [sleep, infinity]
        networks: [front, back]
    networks:
      front:
        ipam:
          config:
            - subnet: 10.90.1.0/24
              gateway: 10.90.1.1
      back:
        internal: true
        ipam:
          config:
            - subnet: 10.90.2.0/24
"""


# ---------------------------------------------------------------- translation


def test_two_services_translate_to_fastnet_document():
    doc, warnings = translate(TWO_SERVICES)
    assert doc == {
        "name": "shop",
        "networks": {
            "shop_front": {"subnet": "10.90.1.0/24", "gateway": "10.90.1.1"},
            "shop_back": {"internal": True, "subnet": "10.90.2.0/24"},
        },
        "containers": {
            "shop-web-1": {
                "command": "python3 -m http.server 80",
                "publish": ["8080:80"],
                "networks": {"shop_front": {"ipv4_address": "10.90.1.10", "aliases": ["www", "web"]}},
            },
            "shop-api-1": {
                "command": ["sleep", "infinity"],
                "networks": {"shop_front": {"aliases": ["api"]}, "shop_back": {"aliases": ["api"]}},
            },
        },
    }
    assert warnings == ("compose.yaml: ignoring Compose keys fastnet does not implement: services.web.image",)


def test_two_services_validate_like_the_equivalent_fastnet_file():
    cfg = parse(TWO_SERVICES)
    native = parse_config(textwrap.dedent("""\
        name: shop
        networks:
          shop_front: {subnet: 10.90.1.0/24, gateway: 10.90.1.1}
          shop_back: {subnet: 10.90.2.0/24, internal: true}
        containers:
          shop-web-1:
            command: python3 -m http.server 80
            publish: ["8080:80"]
            networks:
              shop_front: {ipv4_address: 10.90.1.10, aliases: [www, web]}
          shop-api-1:
            command: [sleep, infinity]
            networks:
              shop_front: {aliases: [api]}
              shop_back: {aliases: [api]}
        """), "/srv/shop/fastnet.yaml")
    assert cfg.name == native.name
    assert cfg.networks == native.networks
    assert cfg.containers == native.containers
    assert native.warnings == ()
    assert len(cfg.warnings) == 1


def test_service_without_networks_joins_the_project_default_network():
    doc, _ = translate("""\
        services:
          a: {}
          b:
            networks: [default]
          c:
            networks: [front]
        networks:
          front: {}
        """)
    assert list(doc["networks"]) == ["shop_front", "shop_default"]
    assert doc["containers"]["shop-a-1"]["networks"] == {"shop_default": {"aliases": ["a"]}}
    assert doc["containers"]["shop-b-1"]["networks"] == {"shop_default": {"aliases": ["b"]}}
    # Bridge networks without ipam get Docker's pool subnets in file order.
    assert doc["networks"]["shop_front"]["subnet"] == "172.18.0.0/16"
    assert doc["networks"]["shop_default"]["subnet"] == "172.19.0.0/16"


def test_default_network_is_customised_by_a_top_level_default_entry():
    doc, _ = translate("""\
        services:
          a: {}
        networks:
          default:
            ipam:
              config: [{subnet: 10.1.0.0/24}]
        """)
    assert doc["networks"] == {"shop_default": {"subnet": "10.1.0.0/24"}}


def test_no_default_network_when_every_service_names_its_networks():
    doc, _ = translate("""\
        services:
          a: {networks: [n]}
        networks:
          n: {}
        """)
    assert list(doc["networks"]) == ["shop_n"]


def test_auto_subnets_skip_explicit_ones():
    doc, _ = translate("""\
        services:
          a: {networks: [x, y]}
        networks:
          x: {}
          y:
            ipam: {config: [{subnet: 172.18.5.0/24}]}
        """)
    assert doc["networks"]["shop_x"]["subnet"] == "172.19.0.0/16"


def test_aliases_keep_user_order_and_do_not_repeat_the_service_name():
    doc, _ = translate("""\
        services:
          web:
            networks:
              n: {aliases: [web, www]}
        networks:
          n: {}
        """)
    assert doc["containers"]["shop-web-1"]["networks"]["shop_n"]["aliases"] == ["web", "www"]


def test_explicit_names_for_networks_and_containers():
    doc, _ = translate("""\
        services:
          web:
            container_name: frontdoor
            networks: [n]
        networks:
          n: {name: public}
        """)
    assert list(doc["containers"]) == ["frontdoor"]
    assert list(doc["networks"]) == ["public"]
    assert doc["containers"]["frontdoor"]["networks"] == {"public": {"aliases": ["web"]}}


def test_x_fastnet_extension_carries_uplink_and_backend():
    cfg = parse("""\
        x-fastnet:
          uplink: up0
          backend: iptables
          publish_ephemeral_ports: true
        x-common: &common {image: busybox}
        services:
          a: {networks: [n]}
        networks:
          n: {ipam: {config: [{subnet: 10.3.0.0/24}]}}
        """)
    assert (cfg.uplink, cfg.backend, cfg.publish_ephemeral_ports) == ("up0", "iptables", True)
    assert cfg.warnings == ()  # x-* keys are Compose extensions, not ignored keys


# ---------------------------------------------------------------- project names


@pytest.mark.parametrize(
    ("directory", "expected"),
    [("/srv/shop", "shop"), ("/srv/My.App", "myapp"), ("/srv/_Web-1", "web-1"), ("/srv/a b", "ab")],
)
def test_project_name_from_the_directory_is_normalised_like_compose(directory, expected):
    doc, _ = translate("services: {}\n", project_dir=directory)
    assert doc["name"] == expected


def test_long_directory_name_is_shortened_deterministically():
    doc, _ = translate("services: {}\n", project_dir="/srv/online-shop-backend")
    again, _ = translate("services: {}\n", project_dir="/srv/online-shop-backend")
    other, _ = translate("services: {}\n", project_dir="/srv/online-shop-frontend")
    assert doc["name"] == "online-84f5"  # at most 12 characters; no doubled '-' at the cut
    assert doc["name"] == again["name"] != other["name"]
    parse_config("services: {a: {}}\n", "/srv/online-shop-backend/compose.yaml")  # valid for fastnet


def test_name_key_wins_over_the_directory():
    assert parse("name: web\nservices: {a: {}}\n").name == "web"


def test_directory_without_usable_characters():
    with pytest.raises(ConfigError, match=r"cannot derive a project name from the directory name '___'; set 'name:'"):
        parse_config("services: {}\n", "/srv/___/compose.yaml")


def test_explicit_project_name_must_be_normal():
    fails("name: Shop\nservices: {}\n", 1, 7, "name", "invalid project name 'Shop'")


def test_explicit_project_name_too_long():
    fails("name: a-very-long-project\nservices: {}\n", 1, 7, "name", "too long", "at most 12")


def test_derived_container_name_too_long():
    fails(
        """\
        services:
          a-rather-long-service-name: {}
        """,
        2, 3, "services.a-rather-long-service-name",
        "container name 'shop-a-rather-long-service-name-1'", "at most 32", "container_name",
    )


def test_derived_network_name_too_long():
    fails(
        """\
        services: {}
        networks:
          a-network-with-a-very-long-name: {}
        """,
        3, 3, "networks.a-network-with-a-very-long-name", "network name 'shop_a-network", "at most 32",
    )


def test_service_names_must_fit_fastnet_names():
    fails("services:\n  Web: {}\n", 2, 3, "services.Web", "invalid service name 'Web'")


# ---------------------------------------------------------------- ports


def ports_of(*entries: str) -> list:
    body = "".join(f"\n      - {e}" for e in entries)
    doc, _ = translate(f"services:\n  web:\n    ports:{body}\n")
    return doc["containers"]["shop-web-1"]["publish"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('"8080:80"', "8080:80"),
        ('"127.0.0.1:8080:80"', "127.0.0.1:8080:80"),
        ('"0.0.0.0:8080:80"', "8080:80"),
        ('"5000-5001:5000-5001/udp"', "5000-5001:5000-5001/udp"),
        ("8053:53/udp", "8053:53/udp"),  # YAML 1.2: a string even unquoted
        ("{target: 80, published: 8080}", "8080:80/tcp"),
        ('{target: 80, published: "8080", host_ip: 127.0.0.1, protocol: udp}', "127.0.0.1:8080:80/udp"),
        ('{target: "7000-7001", published: "9000-9001"}', "9000-9001:7000-7001/tcp"),
        ("{target: 80, published: 8080, host_ip: 0.0.0.0}", "8080:80/tcp"),
    ],
)
def test_ports_syntaxes(entry, expected):
    assert ports_of(entry) == [expected]


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (['"8080:80"', '"127.0.0.1:9443:443"', '"5000-5001:6000-6001/udp"'], [
            PortMapping(None, 8080, 8080, 80, 80, "tcp"),
            PortMapping(IPv4Address("127.0.0.1"), 9443, 9443, 443, 443, "tcp"),
            PortMapping(None, 5000, 5001, 6000, 6001, "udp"),
        ]),
        (["{target: 53, published: 8053, protocol: udp, host_ip: 192.0.2.1}"], [
            PortMapping(IPv4Address("192.0.2.1"), 8053, 8053, 53, 53, "udp"),
        ]),
    ],
)
def test_ports_become_fastnet_port_mappings(entries, expected):
    body = "".join(f"\n      - {e}" for e in entries)
    cfg = parse(f"services:\n  web:\n    ports:{body}\n")
    assert list(cfg.containers["shop-web-1"].publish) == expected


@pytest.mark.parametrize(
    ("entry", "col", "path", "fragment"),
    [
        ('"80"', 9, "services.web.ports[0]", "'80' publishes on a random host port"),
        ("80", 9, "services.web.ports[0]", "'80' publishes on a random host port"),
        ('"127.0.0.1::80"', 9, "services.web.ports[0]", "random host port"),
        ("{target: 80}", 9, "services.web.ports[0]", "'target 80' publishes on a random host port"),
        ("{published: 80}", 9, "services.web.ports[0]", "'target' (the container port) is required"),
        ("{target: 80, published: 80, hostip: 1.2.3.4}", 37, "services.web.ports[0].hostip",
         "unknown key 'hostip' in a Compose file (did you mean 'host_ip'?)"),
        ("{target: [80], published: 80}", 18, "services.web.ports[0].target", "expected a port number or range"),
        ("{target: 80, published: 80, host_ip: '::1'}", 46, "services.web.ports[0].host_ip", "IPv6"),
        ('"[::1]:80:80"', 9, "services.web.ports[0]", "IPv6 host addresses are not supported"),
        # What fastnet's own validation finds, at the Compose entry:
        ('"80:x"', 9, "services.web.ports[0]", "invalid port mapping '80:x'"),
        ('"70000:80"', 9, "services.web.ports[0]", "port 70000 is outside 1-65535"),
        ('"8080:80/sctp"', 9, "services.web.ports[0]", "invalid port mapping"),
        ("{target: 80, published: 8080, protocol: sctp}", 9, "services.web.ports[0]", "invalid port mapping '8080:80/sctp'"),
        ('"1.2.3:80:80"', 9, "services.web.ports[0]", "'1.2.3' is not an IPv4 address"),
    ],
)
def test_port_errors_point_at_the_compose_entry(entry, col, path, fragment):
    fails(f"services:\n  web:\n    ports:\n      - {entry}\n", 4, col, path, fragment)


def test_overlapping_ports_of_two_services():
    fails(
        """\
        services:
          a:
            ports: ["8080:80"]
          b:
            ports: ["9000:90", "8080:81"]
        """,
        5, 24, "services.b.ports", "8080/tcp overlaps 8080/tcp already published by container shop-a-1",
    )


# ---------------------------------------------------------------- network modes and drivers


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("host", "host"), ("none", "none"), ("container:other", "container:other"),
     ("service:db", "container:shop-db-1")],
)
def test_network_mode_translates_to_the_contract_key(mode, expected):
    doc, _ = translate(f"services:\n  db: {{}}\n  web:\n    network_mode: \"{mode}\"\n")
    assert doc["containers"]["shop-web-1"] == {"network_mode": expected}
    # Only db (no network_mode) uses the default network.
    assert list(doc["networks"]) == ["shop_default"]


def test_network_mode_service_follows_container_name():
    doc, _ = translate("""\
        services:
          db: {container_name: database}
          web: {network_mode: "service:db"}
        """)
    assert doc["containers"]["shop-web-1"] == {"network_mode": "container:database"}


def test_network_mode_bridge_is_the_default_bridge_network():
    doc, _ = translate("services:\n  web: {network_mode: bridge, ports: ['8080:80']}\n")
    assert doc["containers"]["shop-web-1"] == {"publish": ["8080:80"], "networks": ["bridge"]}
    assert doc["networks"] == {}
    cfg = parse("services:\n  web: {network_mode: bridge, ports: ['8080:80']}\n")
    assert cfg.networks["bridge"].subnet == IPv4Network("172.17.0.0/16")


def test_network_mode_errors():
    fails("services:\n  web: {network_mode: 'service:db'}\n", 2, 23, "services.web.network_mode",
          "unknown service 'db' in 'service:db'")
    fails("services:\n  web: {network_mode: 'service:web'}\n", 2, 23, "services.web.network_mode",
          "cannot share its own network namespace")
    fails("services:\n  web: {network_mode: host, networks: [x]}\n", 2, 29, "services.web.networks",
          "'networks' cannot be combined with 'network_mode'")
    fails("services:\n  web: {network_mode: 3}\n", 2, 23, "services.web.network_mode", "expected a string, got number 3")


def test_macvlan_driver_opts_translate_to_parent_and_mode():
    doc, warnings = translate("""\
        services:
          web: {networks: [lan]}
        networks:
          lan:
            driver: macvlan
            driver_opts:
              parent: up0.10
              macvlan_mode: private
            ipam:
              config:
                - subnet: 198.51.100.0/24
                  gateway: 198.51.100.2
                  ip_range: 198.51.100.128/25
        """)
    assert doc["networks"]["shop_lan"] == {
        "driver": "macvlan", "parent": "up0.10", "mode": "private",
        "subnet": "198.51.100.0/24", "gateway": "198.51.100.2",
    }
    assert warnings == ("compose.yaml: ignoring Compose keys fastnet does not implement: "
                        "networks.lan.ipam.config[0].ip_range",)


def test_ipvlan_driver_opts_and_no_auto_subnet():
    doc, _ = translate("""\
        services: {}
        networks:
          lan:
            driver: ipvlan
            driver_opts: {parent: up0, ipvlan_mode: l3, macvlan_mode: bridge}
        """)
    # macvlan/ipvlan need the segment's own subnet: none is made up for them.
    assert doc["networks"]["shop_lan"] == {"driver": "ipvlan", "parent": "up0", "mode": "l3"}


def test_driver_opts_of_bridge_networks_are_ignored_with_the_warning():
    doc, warnings = translate("""\
        services: {}
        networks:
          n:
            driver: bridge
            driver_opts: {com.docker.network.bridge.name: br0, parent: eth0}
        """)
    assert doc["networks"]["shop_n"] == {"driver": "bridge", "subnet": "172.18.0.0/16"}
    assert "networks.n.driver_opts.com.docker.network.bridge.name, networks.n.driver_opts.parent" in warnings[0]


def test_unsupported_driver_is_reported_by_fastnet_at_the_compose_key():
    fails("services: {}\nnetworks:\n  n: {driver: weave}\n", 3, 15, "networks.n.driver", "driver 'weave'")


# ---------------------------------------------------------------- ignored keys


def test_one_warning_lists_every_ignored_key():
    doc, warnings = translate("""\
        version: "3.9"
        services:
          web:
            image: nginx
            volumes: [/data]
            depends_on: [db]
            networks:
              default:
                ipv6_address: "2001:db8::1"
          db:
            image: postgres
            environment: {A: "1"}
            x-note: extension keys are not reported
        volumes:
          data: {}
        networks:
          default:
            enable_ipv6: true
            labels: {a: b}
        """)
    assert warnings == (
        "compose.yaml: ignoring Compose keys fastnet does not implement: version, volumes, "
        "networks.default.enable_ipv6, networks.default.labels, services.web.image, services.web.volumes, "
        "services.web.depends_on, services.web.networks.default.ipv6_address, services.db.image, "
        "services.db.environment",
    )


def test_no_warning_without_ignored_keys():
    _, warnings = translate("services:\n  web: {command: [true]}\n")
    assert warnings == ()


def test_cli_prints_the_warning_once_on_stderr(tmp_path, capsys):
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web: {image: nginx, volumes: [/data]}\n  db: {image: postgres}\n")
    cfg = cli._load(str(path))
    assert cfg.containers
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == (f"fastnet: warning: {path}: ignoring Compose keys fastnet does not implement: "
                   "services.web.image, services.web.volumes, services.db.image\n")


# ---------------------------------------------------------------- errors in Compose terms


def test_unknown_key_is_an_error_with_a_suggestion():
    fails("services:\n  web:\n    netwroks: [a]\n", 3, 5, "services.web.netwroks",
          "unknown key 'netwroks' in a Compose file (did you mean 'networks'?)")
    fails("servics: {}\n", 1, 1, "servics", "did you mean 'services'?")


def test_unknown_network_reference():
    fails(
        """\
        services:
          web:
            networks: [front, bakc]
        networks:
          front: {}
          back: {}
        """,
        3, 23, "services.web.networks[1]", "unknown network 'bakc' (networks defined in the file: front, back)",
    )
    fails(
        """\
        services:
          web:
            networks:
              nope: {aliases: [x]}
        """,
        4, 7, "services.web.networks.nope", "unknown network 'nope'",
    )


def test_bad_subnet_reported_at_the_ipam_entry():
    fails(
        """\
        services: {}
        networks:
          front:
            ipam:
              config:
                - subnet: 10.90.1.5/24
        """,
        6, 19, "networks.front.ipam.config[0].subnet", "10.90.1.5/24 has host bits set",
    )


def test_two_ipam_configs():
    fails(
        """\
        services: {}
        networks:
          front:
            ipam:
              config:
                - subnet: 10.90.1.0/24
                - subnet: fd00::/64
        """,
        7, 11, "networks.front.ipam.config[1]", "one IPv4 subnet",
    )


def test_overlapping_subnets_at_the_later_network():
    fails(
        """\
        services: {}
        networks:
          a: {ipam: {config: [{subnet: 10.0.0.0/16}]}}
          b: {ipam: {config: [{subnet: 10.0.1.0/24}]}}
        """,
        4, 32, "networks.b.ipam.config[0].subnet", "10.0.1.0/24 overlaps 10.0.0.0/16 of network shop_a",
    )


def test_static_address_outside_the_subnet():
    fails(
        """\
        services:
          web:
            networks:
              front:
                ipv4_address: 10.0.0.9
        networks:
          front: {ipam: {config: [{subnet: 10.90.1.0/24}]}}
        """,
        5, 23, "services.web.networks.front.ipv4_address", "10.0.0.9 is outside subnet 10.90.1.0/24",
    )


def test_bad_alias_reported_at_the_alias():
    fails(
        """\
        services:
          web:
            networks:
              front:
                aliases: [ok, Bad]
        networks:
          front: {}
        """,
        5, 23, "services.web.networks.front.aliases[1]", "invalid alias name 'Bad'",
    )


def test_bad_values_from_fastnets_validation():
    fails("services: {}\nnetworks:\n  n: {internal: 'yes'}\n", 3, 17, "networks.n.internal",
          "expected true or false, got string 'yes'")
    fails("services:\n  web: {command: 5}\n", 2, 18, "services.web.command",
          "expected a list of strings or one command string, got number 5")
    fails("services:\n  web: {command: ['sh', 5]}\n", 2, 25, "services.web.command[1]", "expected a string")
    fails("services:\n  web: {ports: '80:80'}\n", 2, 16, "services.web.ports", "expected a list")
    fails("services:\n  web: {networks: 5}\n", 2, 19, "services.web.networks",
          "expected a list of network names or a mapping")


def test_external_network_is_an_error():
    fails("services: {}\nnetworks:\n  n: {external: true}\n", 3, 17, "networks.n.external", "external networks")


def test_yaml_errors_name_the_compose_file():
    fails("services:\n  web: {}\n  web: {}\n", 3, 3, "services.web", "duplicate key 'web' (first defined on line 2)")


def test_service_must_be_a_mapping():
    fails("services:\n  web: [a]\n", 2, 8, "services.web", "expected a mapping, got a list")


# ---------------------------------------------------------------- detection and lookup


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("compose.yaml", "networks: {}\n", True),
        ("docker-compose.yml", "{}\n", True),
        ("docker-compose.prod.yml", "{}\n", True),
        ("compose.override.yaml", "{}\n", True),
        ("stack.yaml", "services: {}\n", True),
        ("fastnet.yaml", "containers: {}\n", False),
        ("compose.yaml", "name: x\ncontainers: {}\n", False),  # fastnet's format under a Compose name
        ("composer.yaml", "containers: {}\n", False),
    ],
)
def test_compose_detection(name, text, expected):
    data, _ = read_yaml(text, name)
    assert compose.is_compose(name, data) is expected


def test_fastnet_files_are_untouched():
    cfg = parse_config("name: demo\ncontainers:\n  web: {}\n", "/srv/shop/fastnet.yaml")
    assert list(cfg.containers) == ["web"]
    assert cfg.warnings == ()


def test_default_file_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.default_config_path() == cli.BUNDLED_EXAMPLE
    order = ["fastnet.yaml", "compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"]
    for name in reversed(order):
        (tmp_path / name).write_text("services: {}\n")
        assert cli.default_config_path() == Path(name)


def test_load_config_reads_a_compose_file(tmp_path):
    project = tmp_path / "Blog"
    project.mkdir()
    (project / "docker-compose.yml").write_text(textwrap.dedent(TWO_SERVICES))
    cfg = load_config(project / "docker-compose.yml")
    assert cfg.name == "blog"
    assert list(cfg.containers) == ["blog-web-1", "blog-api-1"]
    assert cfg.containers["blog-web-1"].attachments[0].aliases == ("www", "web")


def test_readme_examples_are_the_same_project():
    """The README shows one project in both formats; they must stay equivalent."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Compose files", 1)[1]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:3]]
    native_text, compose_text = blocks
    assert native_text.startswith("# fastnet.yaml") and compose_text.startswith("# compose.yaml")
    native = parse_config(native_text, "/srv/shop/fastnet.yaml")
    from_compose = parse_config(compose_text, "/srv/shop/compose.yaml")
    assert (from_compose.name, from_compose.networks, from_compose.containers) == (
        native.name, native.networks, native.containers)
    assert from_compose.warnings == (
        "/srv/shop/compose.yaml: ignoring Compose keys fastnet does not implement: services.web.image",)


def test_two_entries_with_one_fastnet_name():
    fails(
        """\
        services:
          web: {}
          front: {container_name: shop-web-1}
        """,
        3, 3, "services.front", "container name 'shop-web-1' is already the name of services.web",
    )
    fails(
        """\
        services: {}
        networks:
          a: {}
          b: {name: shop_a}
        """,
        4, 3, "networks.b", "network name 'shop_a' is already the name of networks.a",
    )


def test_aliases_must_be_a_list():
    fails(
        """\
        services:
          web:
            networks:
              n: {aliases: www}
        networks:
          n: {}
        """,
        4, 20, "services.web.networks.n.aliases", "expected a list, got string 'www'",
    )


# ---------------------------------------------------------------- variables


def translate_with(text: str, environ: dict[str, str]):
    data, where = read_yaml(textwrap.dedent(text), "compose.yaml")
    doc, _, warnings = compose.translate(data, where, "/srv/shop", environ)
    return doc, warnings


@pytest.mark.parametrize(
    ("entry", "environ", "expected"),
    [
        ('"${PORT}:80"', {"PORT": "8081"}, "8081:80"),
        ('"$PORT:80"', {"PORT": "8081"}, "8081:80"),
        ('"${PORT:-8080}:80"', {}, "8080:80"),
        ('"${PORT:-8080}:80"', {"PORT": ""}, "8080:80"),
        ('"${PORT-8080}:80"', {"PORT": "9"}, "9:80"),
        ('"${IP:+127.0.0.1:}8080:80"', {"IP": "yes"}, "127.0.0.1:8080:80"),
        ('"${IP:+127.0.0.1:}8080:80"', {}, "8080:80"),
        ('"${PORT:?set PORT}:80"', {"PORT": "7"}, "7:80"),
    ],
)
def test_variables_are_interpolated_like_compose(entry, environ, expected):
    doc, warnings = translate_with(f"services:\n  web:\n    ports: [{entry}]\n", environ)
    assert doc["containers"]["shop-web-1"]["publish"] == [expected]
    assert warnings == ()


def test_double_dollar_is_a_literal_dollar():
    doc, _ = translate_with("services:\n  web:\n    command: [sh, -c, 'echo $$HOME']\n", {"HOME": "/x"})
    assert doc["containers"]["shop-web-1"]["command"] == ["sh", "-c", "echo $HOME"]


def test_unset_variables_become_empty_with_one_warning():
    doc, warnings = translate_with(
        "name: ${PROJECT}shop\nservices:\n  web:\n    command: [echo, $A, $B, $A]\n    image: x\n", {})
    assert doc["name"] == "shop"
    assert doc["containers"]["shop-web-1"]["command"] == ["echo", "", "", ""]
    assert warnings == (
        "compose.yaml: ignoring Compose keys fastnet does not implement: services.web.image",
        "compose.yaml: variables not set, replaced by an empty string (as Compose does): PROJECT, A, B",
    )


def test_required_variable_and_bad_syntax_are_errors_at_the_value(monkeypatch):
    monkeypatch.delenv("PORT", raising=False)
    fails("services:\n  web:\n    ports: ['${PORT:?give PORT}:80']\n", 3, 13, "services.web.ports[0]",
          "variable PORT is required: give PORT")
    fails("services:\n  web:\n    ports: ['${PORT:80']\n", 3, 13, "services.web.ports[0]",
          "invalid interpolation in '${PORT:80'")


def test_ports_of_a_service_only_on_internal_networks():
    fails(
        """\
        services:
          web:
            networks: [vault]
            ports: ["8080:80"]
        networks:
          vault: {internal: true}
        """,
        4, 5, "services.web.ports", "cannot publish ports: the container is only on internal networks",
    )


def test_yaml_merge_keys_are_read_like_any_other():
    text = """\
        x-base: &base
          image: busybox
          networks: [n]
        services:
          a:
            <<: *base
            ports: ["8080:80"]
          b:
            <<: *base
            ports: ["8080:81"]
        networks:
          n: {}
        """
    doc, warnings = translate(text)
    assert doc["containers"]["shop-a-1"]["networks"] == {"shop_n": {"aliases": ["a"]}}
    assert warnings == ("compose.yaml: ignoring Compose keys fastnet does not implement: "
                        "services.a.image, services.b.image",)
    fails(text, 10, 13, "services.b.ports", "8080/tcp overlaps 8080/tcp already published by container shop-a-1")


def test_messages_name_compose_keys():
    """fastnet's messages that quote its own keys (e.g. those of the network-mode and driver
    checks) read in Compose's keys when the file is a Compose file."""
    data, where = read_yaml("services:\n  web: {network_mode: host}\n", "compose.yaml")
    _, source_map, _ = compose.translate(data, where, "/srv/shop", {})
    err = source_map.error(("containers", "shop-web-1", "network_mode"),
                           "network_mode host cannot be combined with 'publish'")
    assert str(err) == "compose.yaml:2:23: services.web.network_mode: network_mode host cannot be combined with 'ports'"
    err = source_map.error(("networks",), "subnet is required, e.g. 'subnet: 10.90.1.0/24'")
    assert err.problem == "subnet is required, e.g. 'ipam: {config: [{subnet: 10.90.1.0/24}]}'"


def test_a_network_named_like_the_implicit_default_network():
    fails(
        """\
        services:
          web: {}
        networks:
          other: {name: shop_default}
        """,
        4, 3, "networks.other", "'shop_default' is the name of the project's default network",
    )


def test_external_false_is_an_ordinary_network():
    doc, warnings = translate("services: {}\nnetworks:\n  n: {external: false}\n")
    assert doc["networks"] == {"shop_n": {"subnet": "172.18.0.0/16"}}
    assert warnings == ()


def test_driver_mtu_option_becomes_the_network_mtu():
    doc, warnings = translate("""\
        services: {}
        networks:
          n:
            driver_opts: {com.docker.network.driver.mtu: "1400"}
          m:
            driver: bridge
            driver_opts: {com.docker.network.driver.mtu: 9000}
        """)
    assert doc["networks"]["shop_n"]["mtu"] == 1400
    assert doc["networks"]["shop_m"]["mtu"] == 9000
    assert warnings == ()
    fails("services: {}\nnetworks:\n  n:\n    driver_opts: {com.docker.network.driver.mtu: 20}\n", 4, 50,
          "networks.n.driver_opts.com.docker.network.driver.mtu", "mtu 20 is out of range")
