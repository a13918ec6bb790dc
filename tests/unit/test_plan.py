"""The plan is a pure diff of the current spec, the observed kernel facts and the desired spec."""
from fastnet.control.config import parse_config
from fastnet.control.plan import Observed, make_plan
from fastnet.control.spec import build

BASE = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
  back: {subnet: 10.90.2.0/24}
containers:
  web:
    networks: [front]
    command: [sleep, "1000"]
  api:
    networks: [front, back]
"""


def spec(text, previous=None):
    return build(parse_config(text), previous)


def test_first_run_adds_everything():
    p = make_plan(None, spec(BASE))
    assert [n.name for n in p.add_networks] == ["front", "back"]
    assert [c.name for c in p.add_containers] == ["web", "api"]
    assert [(c, i.network) for c, i in p.add_interfaces] == [("web", "front"), ("api", "front"), ("api", "back")]
    assert p.start_commands == ["web"]
    assert not p.remove_containers and not p.remove_interfaces


def test_same_file_is_empty():
    cur = spec(BASE)
    assert make_plan(cur, spec(BASE, cur)).empty


def test_edit_touches_only_what_changed():
    cur = spec(BASE)
    edited = BASE.replace("[front, back]", "[front]") + "  db:\n    networks: [back]\n"
    p = make_plan(cur, spec(edited, cur))
    assert [(c, i.network) for c, i in p.remove_interfaces] == [("api", "back")]
    assert [c.name for c in p.add_containers] == ["db"]
    assert [(c, i.network) for c, i in p.add_interfaces] == [("db", "back")]
    assert not p.remove_containers and not p.stop_commands and not p.start_commands


def test_moving_the_default_route_replaces_that_interface():
    cur = spec(BASE)
    p = make_plan(cur, spec(BASE.replace("[front, back]", "[back]"), cur))
    assert [(c, i.network) for c, i in p.remove_interfaces] == [("api", "front"), ("api", "back")]
    assert [(c, i.network, i.default_route) for c, i in p.add_interfaces] == [("api", "back", True)]


def test_removed_container_and_network():
    cur = spec(BASE)
    edited = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
containers:
  api:
    networks: [front]
"""
    p = make_plan(cur, spec(edited, cur))
    assert [c.name for c in p.remove_containers] == ["web"]
    assert p.stop_commands == ["web"]
    assert [n.name for n in p.remove_networks] == ["back"]
    assert [(c, i.network) for c, i in p.remove_interfaces] == [("api", "back")]


def test_changed_subnet_replaces_network_and_its_interfaces():
    cur = spec(BASE)
    p = make_plan(cur, spec(BASE.replace("10.90.2.0/24", "10.90.4.0/24"), cur))
    assert [n.name for n in p.remove_networks] == ["back"]
    assert [n.name for n in p.add_networks] == ["back"]
    assert [(c, i.network) for c, i in p.remove_interfaces] == [("api", "back")]
    assert [(c, str(i.ipv4)) for c, i in p.add_interfaces] == [("api", "10.90.4.2")]


def test_observed_damage_is_repaired():
    cur = spec(BASE)
    p = make_plan(
        cur,
        spec(BASE, cur),
        Observed(dead_containers=frozenset({"web"}), missing_ports=frozenset({"api/back"})),
    )
    assert [c.name for c in p.remove_containers] == ["web"]
    assert [c.name for c in p.add_containers] == ["web"]
    assert p.start_commands == ["web"]
    assert [(c, i.network) for c, i in p.remove_interfaces] == [("api", "back")]
    assert [(c, i.network) for c, i in p.add_interfaces] == [("web", "front"), ("api", "back")]


def test_exited_or_changed_command_restarts():
    cur = spec(BASE)
    p = make_plan(cur, spec(BASE, cur), Observed(stopped_commands=frozenset({"web"})))
    assert p.stop_commands == ["web"] and p.start_commands == ["web"]
    p = make_plan(cur, spec(BASE.replace('"1000"', '"2000"'), cur))
    assert p.stop_commands == ["web"] and p.start_commands == ["web"]
    assert not p.add_containers


def test_published_ports_change_without_touching_the_container():
    cur = spec(BASE)
    p = make_plan(cur, spec(BASE.replace('command: [sleep, "1000"]', 'command: [sleep, "1000"]\n    publish: ["8080:80"]'), cur))
    assert p.republish == ["web"]
    assert not p.remove_containers and not p.add_containers and not p.stop_commands
    assert "~ published ports of web" in p.summary()
