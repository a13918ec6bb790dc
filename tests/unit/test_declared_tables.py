"""The tables of bpf/include/fastnet/maps.h and programs.h parse, agree with each other and with
abi.py's mirrors, and every map or program name the Python spells is one they declare.
(tests/bpf/test_declared.py checks the loaded objects against them; this file needs no root.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastnet.datapath import abi, declared, uapi

ROOT = Path(__file__).resolve().parents[2]


def test_parse_enum_counts_up_and_follows_explicit_values():
    text = """
enum other { NOT_THIS };
enum bpf_thing {
	BPF_A,            /* 0 */
	BPF_B,
	BPF_C = 10,
	BPF_D,
	BPF_E = BPF_B,    // an alias
	__MAX_BPF_THING
};
"""
    assert uapi.parse_enum(text, "bpf_thing") == {"BPF_A": 0, "BPF_B": 1, "BPF_C": 10, "BPF_D": 11, "BPF_E": 1,
                                                   "__MAX_BPF_THING": 2}


def test_every_map_is_declared_with_known_types():
    maps = declared.maps()
    names = [m.name for m in maps]
    assert len(names) == len(set(names))
    for m in maps:
        assert len(m.name) <= 15, f"{m.name}: kernel object names have at most 15 characters"
        assert m.scope in ("PINNED", "PROGRAMS_ONLY", "TEST_BUILD"), m
        assert m.key in abi.MIRRORS and m.value in abi.MIRRORS, f"{m.name}: no mirror of {m.key} or {m.value}"
        assert m.max_entries() >= (0 if m.type == "SK_STORAGE" else 1), m


def test_capacities_follow_compile_time_settings():
    ct = next(m for m in declared.maps() if m.name == "fn_ct")
    assert ct.max_entries() == abi.constants()["FN_CT_MAX"]
    assert ct.max_entries((("FN_CT_MAX", 1234),)) == 1234
    fdb = next(m for m in declared.maps() if m.name == "fn_fdb")
    assert fdb.max_entries() == abi.constants()["FN_MAX_ENDPOINTS"] + abi.constants()["FN_MAX_NETWORKS"]


def test_every_program_is_declared_consistently():
    programs = declared.programs()
    owners = declared.counter_owner_ids()
    assert len({p.name for p in programs}) == len(programs)
    for p in programs:
        assert p.prog_type in ("SCHED_CLS", "CGROUP_SOCK_ADDR"), p
        assert p.counts_as == declared.NONE or p.counts_as in owners, p
        assert (p.attach == "TAIL_CALL") == (p.tail_slot != declared.NONE), p
        assert p.is_sock_hook == (p.prog_type == "CGROUP_SOCK_ADDR"), p
    assert set(declared.TAIL_PROGRAMS.values()) <= set(range(abi.constants()["FN_TAILS"]))


def test_counter_owners_fit_fn_metrics():
    slots = list(declared.counter_owner_ids().values())
    assert len(slots) == len(set(slots)) and max(slots) < abi.constants()["FN_PROG_MAX"]
    assert sorted(declared.COUNTER_OWNERS.values()) == list(range(len(slots))), "reset_counters clears 0..n-1"


def test_each_entry_counts_as_its_table_says():
    """An entry of fastnet.c that names its counter owner (`const __u32 prog = FN_PROG_*`) names
    the one programs.h gives it."""
    source = (abi.BPF_DIR / "fastnet.c").read_text()
    found = dict(re.findall(r"^int (fn_\w+)\([^)]*\)\n\{\n(?:\t[^\n]*\n)*?\tconst __u32 prog = (FN_PROG_\w+);",
                            source, re.M))
    assert found, "no entry names its counter owner: did the pattern go stale?"
    for p in declared.programs():
        if p.name in found:
            assert found[p.name] == p.counts_as, p.name


@pytest.fixture(scope="module")
def attach_types():
    """The kernel's uapi header is a requirement (setup installs linux-libc-dev): without it
    the socket hooks cannot be attached, so its absence fails here."""
    return uapi.bpf_enum("bpf_attach_type")


def test_socket_hooks_name_uapi_attach_types(attach_types):
    for name, attach in declared.SOCK_PROGRAMS.items():
        assert attach in attach_types, f"{name}: {attach} is not in enum bpf_attach_type"
        assert declared.attach_type(name) == attach_types[attach]


def test_bcc_agrees_with_the_uapi_header(attach_types):
    bcc = pytest.importorskip("bcc")
    for attach in declared.SOCK_PROGRAMS.values():
        assert getattr(bcc.BPFAttachType, attach.removeprefix("BPF_")) == attach_types[attach]


# Names of maps that older builds had, read only to carry their flows over (datapath/ctcarry.py).
RETIRED = {"fn_ct_new"}


def test_python_names_only_declared_maps_and_programs():
    """A map or program renamed or removed in the headers leaves no stale name behind."""
    stale = []
    for path in sorted([*ROOT.glob("datapath/**/*.py"), *ROOT.glob("control/**/*.py")]):
        for name in re.findall(r"[\"'](fn_[a-z0-9_]+)[\"']", path.read_text()):
            if not declared.is_declared(name) and name not in RETIRED:
                stale.append(f"{path.relative_to(ROOT)}: {name}")
    assert not stale, stale
