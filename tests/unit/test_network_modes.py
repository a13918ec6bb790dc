"""network_mode (host, none, container:NAME): config errors, the spec, the plan's ordering."""
from __future__ import annotations

import json
import textwrap

import pytest

from fastnet.control import modes, state
from fastnet.control.config import ConfigError, parse_config
from fastnet.control.plan import Observed, make_plan
from fastnet.control.spec import build

MODES = """\
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
containers:
  web:
    network_mode: "container:db"
    command: [sleep, "1000"]
  db:
    networks: [front]
  h:
    network_mode: host
    command: [sleep, "1000"]
  box:
    network_mode: none
"""


def parse(text: str):
    return parse_config(textwrap.dedent(text), "demo.yaml")


def spec(text: str, previous=None):
    return build(parse_config(text), previous)


# ---------------------------------------------------------------- config


def test_modes_are_parsed_and_have_no_attachments():
    cfg = parse(MODES)
    assert {n: c.network_mode for n, c in cfg.containers.items()} == {
        "web": "container:db", "db": None, "h": "host", "box": "none",
    }
    for name in ("web", "h", "box"):
        assert cfg.containers[name].attachments == ()
    assert [a.network for a in cfg.containers["db"].attachments] == ["front"]


def test_moded_containers_do_not_pull_in_the_default_network():
    cfg = parse("containers:\n  h: {network_mode: host}\n  n: {network_mode: none}\n")
    assert cfg.networks == {}


BAD = [
    # (text, line, col, path, fragment)
    ("containers:\n  web:\n    network_mode: host\n    publish: ['80:80']\n",
     3, 19, "containers.web.network_mode", "network_mode host cannot be combined with 'publish'"),
    ("containers:\n  web:\n    publish: ['80:80']\n    network_mode: none\n",
     4, 19, "containers.web.network_mode", "network_mode none cannot be combined with 'publish'"),
    ("containers:\n  db: {}\n  web:\n    network_mode: container:db\n    publish: ['80:80']\n",
     4, 19, "containers.web.network_mode", "publish the ports on db"),
    ("containers:\n  web:\n    networks: [bridge]\n    network_mode: host\n",
     4, 19, "containers.web.network_mode", "cannot be combined with 'networks'"),
    ("containers:\n  web:\n    networks: []\n    network_mode: none\n",
     4, 19, "containers.web.network_mode", "cannot be combined with 'networks'"),
    ("containers:\n  web:\n    network_mode: container:web\n",
     3, 19, "containers.web.network_mode", "container:web names the container itself"),
    ("containers:\n  db: {}\n  web:\n    network_mode: container:dbx\n",
     4, 19, "containers.web.network_mode", "no container 'dbx' in this file (known: db)"),
    ("containers:\n  a: {}\n  b: {network_mode: 'container:a'}\n  c: {network_mode: 'container:b'}\n",
     4, 21, "containers.c.network_mode", "b itself shares the namespace of a"),
    ("containers:\n  web: {network_mode: bridge}\n",
     2, 23, "containers.web.network_mode", "unknown network mode 'bridge'"),
    ("containers:\n  web: {network_mode: Host}\n",
     2, 23, "containers.web.network_mode", "use host, none or container:NAME"),
    ("containers:\n  web: {network_mode: 'container:'}\n",
     2, 23, "containers.web.network_mode", "needs the name of a container"),
    ("containers:\n  web: {network_mode: 'container:Bad Name'}\n",
     2, 23, "containers.web.network_mode", "is not a valid container name"),
    ("containers:\n  web: {network_mode: [host]}\n",
     2, 23, "containers.web.network_mode", "expected a string, got a list"),
]


@pytest.mark.parametrize("text, line, col, path, fragment", BAD)
def test_bad_modes_are_one_line_errors(text, line, col, path, fragment):
    with pytest.raises(ConfigError) as info:
        parse(text)
    err = info.value
    assert "\n" not in str(err)
    assert (err.line, err.col, err.path) == (line, col, path), str(err)
    assert str(err).startswith(f"demo.yaml:{line}:{col}: {path}: "), str(err)
    assert fragment in str(err), str(err)


def test_a_mode_may_share_a_none_or_host_container():
    cfg = parse("name: demo\ncontainers:\n  n: {network_mode: none}\n  h: {network_mode: host}\n"
                "  a: {network_mode: 'container:n'}\n  b: {network_mode: 'container:h'}\n")
    assert cfg.containers["a"].network_mode == "container:n"
    s = build(cfg, None)
    assert s.containers["a"].netns == s.containers["n"].netns == "demo/n"
    assert s.containers["b"].netns == s.containers["h"].netns == modes.HOST_NAMESPACE


# ---------------------------------------------------------------- spec


def test_spec_namespaces():
    s = spec(MODES)
    web, db, h, box = (s.containers[n] for n in ("web", "db", "h", "box"))
    assert web.netns == db.netns == "demo/db"
    assert h.netns == modes.HOST_NAMESPACE and modes.in_host_namespace(h)
    assert box.netns == "demo/box" and box.interfaces == ()
    assert [modes.mode_of(c) for c in (web, db, h, box)] == ["container:db", "bridge", "host", "none"]
    assert [modes.owns_namespace(c) for c in (web, db, h, box)] == [False, True, False, True]
    assert modes.shared_with(web) == "db" and modes.shared_with(db) is None


def test_state_round_trip_keeps_the_mode_and_reads_older_files():
    st = state.ProjectState(spec=spec(MODES))
    again = state.from_json(state.to_json(st))
    assert again == st
    old = json.loads(state.to_json(st))
    for c in old["spec"]["containers"].values():
        del c["network_mode"]  # a file written before network modes existed
    assert state.from_json(json.dumps(old)).spec.containers["db"].network_mode is None


# ---------------------------------------------------------------- plan


def test_owner_is_created_first_and_removed_last():
    s = spec(MODES)
    first = make_plan(None, s)
    names = [c.name for c in first.add_containers]
    assert names.index("db") < names.index("web")
    assert first.start_commands == ["h", "web"]  # web after db, whose namespace it runs in
    assert [(c, i.network) for c, i in first.add_interfaces] == [("db", "front")]
    gone = make_plan(s, build(parse_config("name: demo\ncontainers: {}\n"), s))
    names = [c.name for c in gone.remove_containers]
    assert names.index("web") < names.index("db")


def test_changed_mode_recreates_the_container():
    cur = spec(MODES)
    edited = MODES.replace("  box:\n    network_mode: none\n", "  box:\n    networks: [front]\n")
    p = make_plan(cur, spec(edited, cur))
    assert [c.name for c in p.remove_containers] == ["box"]
    assert [c.name for c in p.add_containers] == ["box"]
    assert [(c, i.network) for c, i in p.add_interfaces] == [("box", "front")]


def test_recreated_owner_takes_its_sharers_along():
    cur = spec(MODES)
    edited = MODES.replace("  db:\n    networks: [front]\n", "  db:\n    network_mode: none\n")
    p = make_plan(cur, spec(edited, cur))
    assert [c.name for c in p.remove_containers] == ["web", "db"]
    assert [c.name for c in p.add_containers] == ["db", "web"]
    assert p.stop_commands == ["web"] and p.start_commands == ["web"]


def test_dead_owner_takes_its_sharers_along():
    cur = spec(MODES)
    p = make_plan(cur, spec(MODES, cur), Observed(dead_containers=frozenset({"db"})))
    assert [c.name for c in p.remove_containers] == ["web", "db"]
    assert [c.name for c in p.add_containers] == ["db", "web"]


def test_moving_to_host_mode_and_back():
    cur = spec(MODES)
    to_host = MODES.replace("  box:\n    network_mode: none\n", "  box:\n    network_mode: host\n")
    nxt = spec(to_host, cur)
    p = make_plan(cur, nxt)
    assert [c.name for c in p.remove_containers] == ["box"] and [c.name for c in p.add_containers] == ["box"]
    assert make_plan(nxt, spec(to_host, nxt)).empty
