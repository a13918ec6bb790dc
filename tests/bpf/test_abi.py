"""datapath/abi.py mirrors bpf/include/fastnet/abi.h: check_layout() holds for what bcc
compiled, and it does catch a mirror that differs only in field order."""
from __future__ import annotations

import ctypes

import pytest

from fastnet.datapath import abi, declared


def compiled_types(bpf, names) -> dict[str, tuple[type, type]]:
    """(key, value) ctypes bcc built for each map; one element of a per-CPU value."""
    tables = {name: bpf.get_table(name.encode()) for name in names}
    return {name: (t.Key, getattr(t, "sLeaf", t.Leaf)) for name, t in tables.items()}


@pytest.fixture(scope="module")
def compiled(test_datapath):
    return compiled_types(test_datapath.bpf, declared.MAP_LAYOUTS)


class EndpointFlagsFirst(ctypes.Structure):
    """struct fn_endpoint with mac and flags swapped: same size, other offsets."""

    _fields_ = [("flags", abi.u16), ("mac", abi.u8 * 6), ("ipv4", abi.u32), ("net_id", abi.u32)]


@pytest.fixture
def layouts():
    """A copy of the declared pairs, for a test to spoil."""
    return dict(declared.MAP_LAYOUTS)


def test_mirrors_match_the_compiled_header(compiled, layouts):
    abi.check_layout(compiled, layouts)


def test_a_swapped_field_order_is_a_mismatch(compiled, layouts):
    assert ctypes.sizeof(EndpointFlagsFirst) == ctypes.sizeof(abi.Endpoint)
    layouts["fn_endpoints"] = (abi.u32, EndpointFlagsFirst)
    with pytest.raises(abi.AbiMismatch, match="fn_endpoints value") as mismatch:
        abi.check_layout(compiled, layouts)
    assert "fn_networks" not in str(mismatch.value)


def test_a_wrong_key_width_is_a_mismatch(compiled, layouts):
    layouts["fn_ipcache"] = (abi.u64, abi.IpEntry)
    with pytest.raises(abi.AbiMismatch, match="fn_ipcache key"):
        abi.check_layout(compiled, layouts)


def test_a_map_missing_from_the_object_is_a_mismatch(compiled, layouts):
    without_flood = {name: types for name, types in compiled.items() if name != "fn_flood"}
    with pytest.raises(abi.AbiMismatch, match="fn_flood: not in the compiled object"):
        abi.check_layout(without_flood, layouts)


def test_test_build_mirrors_match(test_datapath):
    """The maps only the test build has: the seam's state and fn_ct_admin's request layouts."""
    test_only = set(test_datapath.dp.maps) - set(declared.MAP_LAYOUTS)
    assert test_only == set(declared.TEST_MAP_LAYOUTS)
    compiled = compiled_types(test_datapath.bpf, declared.TEST_MAP_LAYOUTS)
    abi.check_layout(compiled, declared.TEST_MAP_LAYOUTS)
