"""The ownership record survives a round trip through its file format unchanged, and older
formats are read through their migrations."""
import json

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


@pytest.mark.parametrize("text", [TEXT, TEXT.replace("10.90.1.0/24}", "10.90.1.0/24, mtu: 1400}")],
                         ids=["plain", "mtu"])
def test_round_trip(text):
    st = state.ProjectState(
        spec=build(parse_config(text), None, default_mtu=1450),
        source="/x/fastnet.yaml",
        ports={"web/front": 7},
        commands={"web": state.CommandState(123, 456, ("sleep", "1000"))},
    )
    again = state.from_json(state.to_json(st))
    assert again == st


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown state format"):
        state.from_json('{"format": "two"}')


def test_a_newer_format_is_refused_with_what_reads_it(tmp_path, monkeypatch):
    monkeypatch.setattr("fastnet.control.host.STATE_ROOT", tmp_path)
    host = Host(12345)
    state.save(host, state.ProjectState(spec=build(parse_config(TEXT), None)))
    path = state.path_of(host, "demo")
    path.write_text(path.read_text().replace(f'"format": {state.FORMAT}', f'"format": {state.FORMAT + 1}'))
    with pytest.raises(state.StateError, match=rf"{path} was written by a newer fastnet \(state format {state.FORMAT + 1}"):
        state.load(host, "demo")
    with pytest.raises(state.StateError, match=str(path)):
        state.load_all(host, besides="other")


def _as_format(st: state.ProjectState, version: int) -> dict:
    """A state as an older fastnet wrote it (the shapes the migrations start from)."""
    d = json.loads(state.to_json(st))
    d["format"] = version
    if version <= 2:
        for name, c in d["spec"]["containers"].items():
            if c["netns"]:
                c["netns"] = c["netns"].replace("/", "-")
    if version == 1:
        for c in d["spec"]["containers"].values():
            del c["publish"], c["network_mode"]
    if version <= 3:
        del d["spec"]["conntrack"]["inbound_percent"], d["spec"]["conntrack"]["owner_percent"]
    if version <= 4:
        del d["spec"]["conntrack"]["tcp_half_closed"]
    if version <= 5:
        del d["cni"]
        for c in d["spec"]["containers"].values():
            del c["origin"]
            for i in c["interfaces"]:
                del i["mtu"]
        for n in d["spec"]["networks"].values():
            del n["mtu"]
    return d


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_older_formats_are_migrated(version):
    text = TEXT + "  db:\n    networks: [front]\n  side:\n    network_mode: container:db\n"
    st = state.ProjectState(spec=build(parse_config(text), None), ports={"web/front": 7})
    if version == 1:  # format 1 had neither modes nor published ports
        st.spec.containers.pop("side")
    again = state.from_json(json.dumps(_as_format(st, version)))
    assert again == st
    assert again.spec.containers["web"].netns == "demo/web"


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


def test_conntrack_defaults_are_the_datapaths():
    """config's defaults and abi.h's are one fact written twice (a C header cannot import
    Python): the timeouts agree, and the default table sizes are what the backend compiles
    for the default settings (two entries a flow)."""
    from fastnet.control.backends.ebpf import EbpfBackend
    from fastnet.control.model import Conntrack
    from fastnet.datapath import abi

    defaults = Conntrack()
    for name, seconds in defaults.timeouts.items():
        assert abi.constants()[f"FN_CT_TIMEOUT_{name.upper()}"] == seconds, name
    spec = build(parse_config(TEXT), None)
    assert dict(EbpfBackend.defines(spec)) == {"FN_CT_MAX": abi.constants()["FN_CT_MAX"]}
