"""The ownership record survives a round trip through its file format unchanged."""
import pytest

from fastnet.control import state
from fastnet.control.config import parse_config
from fastnet.control.host import Host
from fastnet.control.spec import build

TEXT = """
name: demo
networks:
  front: {subnet: 10.90.1.0/24}
containers:
  web:
    networks:
      front: {ipv4_address: 10.90.1.10, aliases: [www]}
    command: [sleep, "1000"]
"""


def test_round_trip():
    st = state.ProjectState(
        spec=build(parse_config(TEXT), None),
        source="/x/fastnet.yaml",
        ports={"web/front": 7},
        commands={"web": state.CommandState(123, 456, ("sleep", "1000"))},
    )
    again = state.from_json(state.to_json(st))
    assert again == st


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown state format"):
        state.from_json('{"format": 99}')


def test_save_load_remove(tmp_path, monkeypatch):
    monkeypatch.setattr("fastnet.control.host.STATE_ROOT", tmp_path)
    host = Host(12345)
    st = state.ProjectState(spec=build(parse_config(TEXT), None))
    state.save(host, st)
    assert state.projects(host) == ["demo"]
    assert state.load(host, "demo") == st
    state.remove(host, "demo")
    state.remove(host, "demo")
    assert state.load(host, "demo") is None and state.projects(host) == []
