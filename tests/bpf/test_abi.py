"""datapath/abi.py mirrors bpf/include/fastnet/abi.h: check_layout() holds for what bcc
compiled, and it does catch a mirror that differs only in field order."""
from __future__ import annotations

import ctypes

import pytest

from fastnet.datapath import abi
from fastnet.datapath import testrun


def compiled_types(bpf, names) -> dict[str, tuple[type, type]]:
    """(key, value) ctypes bcc built for each map; one element of a per-CPU value."""
    tables = {name: bpf.get_table(name.encode()) for name in names}
    return {name: (t.Key, getattr(t, "sLeaf", t.Leaf)) for name, t in tables.items()}


@pytest.fixture(scope="module")
def compiled(test_datapath):
    return compiled_types(test_datapath.bpf, abi.MAP_LAYOUTS)


class EndpointFlagsFirst(ctypes.Structure):
    """struct fn_endpoint with mac and flags swapped: same size, other offsets."""

    _fields_ = [("flags", abi.u16), ("mac", abi.u8 * 6), ("ipv4", abi.u32), ("net_id", abi.u32)]


def test_mirrors_match_the_compiled_header(compiled):
    abi.check_layout(compiled)


def test_a_swapped_field_order_is_a_mismatch(compiled, monkeypatch):
    assert ctypes.sizeof(EndpointFlagsFirst) == ctypes.sizeof(abi.Endpoint)
    monkeypatch.setitem(abi.MAP_LAYOUTS, "fn_endpoints", (abi.u32, EndpointFlagsFirst))
    with pytest.raises(abi.AbiMismatch, match="fn_endpoints value") as mismatch:
        abi.check_layout(compiled)
    assert "fn_networks" not in str(mismatch.value)


def test_a_wrong_key_width_is_a_mismatch(compiled, monkeypatch):
    monkeypatch.setitem(abi.MAP_LAYOUTS, "fn_ipcache", (abi.u64, abi.IpEntry))
    with pytest.raises(abi.AbiMismatch, match="fn_ipcache key"):
        abi.check_layout(compiled)


def test_a_map_missing_from_the_object_is_a_mismatch(compiled):
    without_flood = {name: types for name, types in compiled.items() if name != "fn_flood"}
    with pytest.raises(abi.AbiMismatch, match="fn_flood: not in the compiled object"):
        abi.check_layout(without_flood)


# Mirrors of the maps only the test build has, which check_layout() does not cover.
TEST_BUILD_MIRRORS = {"fn_test_state": (abi.u32, testrun.TestState),
                      "fn_test_ct_req": (abi.u32, abi.CtAdminReq),
                      "fn_test_ct_flow": (abi.u32, abi.CtFlow),
                      "fn_test_fib": (testrun.TestFibKey, testrun.TestRoute)}


def test_test_build_mirrors_match(test_datapath):
    test_only = set(test_datapath.dp.maps) - set(abi.MAP_LAYOUTS)
    assert test_only == set(TEST_BUILD_MIRRORS) == set(abi.TEST_MAPS), "a test-build map was added or renamed"
    for name, (key, value) in compiled_types(test_datapath.bpf, TEST_BUILD_MIRRORS).items():
        assert abi._layout(TEST_BUILD_MIRRORS[name][0]) == abi._layout(key), name
        assert abi._layout(TEST_BUILD_MIRRORS[name][1]) == abi._layout(value), name
