"""The loaded objects are what bpf/include/fastnet/maps.h and programs.h declare: every map's
type, key size, value size, capacity and flags as the kernel reports them
(BPF_OBJ_GET_INFO_BY_FD), every program's type, and no program compiled that the table does
not list. Types are resolved by name in the kernel's uapi header."""
from __future__ import annotations

import ctypes
import os

import pytest

from fastnet.datapath import abi, declared, libbpf
from fastnet.datapath.loader import compile_datapath

# compile-time settings other than the defaults, so that a capacity that ignored them shows
SMALL = (("FN_CT_MAX", 2048), ("FN_NAT_MAPS_MAX", 1024), ("FN_FRAG_MAX", 512), ("FN_SOCK_DSTS_MAX", 256))


@pytest.fixture(scope="module")
def small_build():
    bpf, dp = compile_datapath(test_mode=True, defines=SMALL)
    yield bpf, dp
    dp.close()
    bpf.cleanup()


def map_fd(bpf, dp, name: str) -> int:
    """A map's fd; a map the loader does not open (SK_STORAGE: bcc 0.26 has no Python table
    for it) through bcc's own table of the module."""
    if name in dp.maps:
        return dp.maps[name]
    from bcc import lib

    fd = lib.bpf_table_fd(bpf.module, name.encode())
    assert fd >= 0, f"{name}: not in the compiled object"
    return fd


@pytest.mark.parametrize("defines", [(), SMALL], ids=["defaults", "small"])
@pytest.mark.parametrize("m", declared.maps(), ids=lambda m: m.name)
def test_every_map_is_as_declared(test_datapath, small_build, m, defines):
    bpf, dp = (test_datapath.bpf, test_datapath.dp) if not defines else small_build
    info = libbpf.map_info(map_fd(bpf, dp, m.name))
    assert info.name.decode() == m.name[:15]
    assert info.type == m.map_type(), f"{m.name}: kernel type {info.type}, declared {m.type}"
    assert (info.key_size, info.value_size) == (ctypes.sizeof(abi.MIRRORS[m.key]), ctypes.sizeof(abi.MIRRORS[m.value]))
    assert info.max_entries == m.max_entries(defines)
    assert info.map_flags == m.map_flags()


def test_the_loader_opens_exactly_the_pinned_and_test_maps(test_datapath):
    assert set(test_datapath.dp.maps) == set(declared.MAP_LAYOUTS) | set(declared.TEST_MAP_LAYOUTS)
    assert {m.name for m in declared.maps() if m.scope == "PROGRAMS_ONLY"} == {"fn_sock_orig"}


@pytest.mark.parametrize("p", declared.programs(), ids=lambda p: p.name)
def test_every_program_is_as_declared(test_datapath, p):
    info = libbpf.prog_info(test_datapath.dp.progs[p.name])
    assert info.type == p.program_type()
    if p.is_sock_hook:
        assert p.attach_type() == declared.attach_type(p.name)


def test_the_object_holds_exactly_the_declared_programs(test_datapath):
    from bcc import lib

    module = test_datapath.bpf.module
    compiled = {lib.bpf_function_name(module, i).decode() for i in range(lib.bpf_num_functions(module))}
    assert compiled == {p.name for p in declared.programs()}
    assert set(test_datapath.dp.progs) == compiled


def test_tail_programs_sit_in_their_slots(test_datapath):
    tails = test_datapath.dp.maps["fn_tails"]
    for name, slot in declared.TAIL_PROGRAMS.items():
        assert 0 <= slot < abi.constants()["FN_TAILS"]
        prog_id = ctypes.c_uint32()
        assert libbpf.map_lookup(tails, ctypes.c_uint32(slot), prog_id)
        fd = libbpf.prog_fd_by_id(prog_id.value)
        try:
            assert libbpf.prog_info(fd).id == libbpf.prog_info(test_datapath.dp.progs[name]).id
        finally:
            os.close(fd)
