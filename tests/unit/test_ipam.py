"""Tests for fastnet.control.ipam.allocate."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network

import pytest

from fastnet.control.config import Network
from fastnet.control.ipam import IpamError, allocate


def net(subnet: str = "10.90.1.0/24", gateway: str | None = None) -> Network:
    network = IPv4Network(subnet)
    return Network("front", "bridge", network, A(gateway) if gateway else network.network_address + 1, False)


def test_lowest_free_addresses_skip_network_and_gateway():
    got = allocate(net(), [("web", None), ("api", None)], {})
    assert got == {"web": A("10.90.1.2"), "api": A("10.90.1.3")}


def test_gateway_in_the_middle_is_skipped():
    got = allocate(net("10.90.1.0/29", "10.90.1.2"), [("a", None), ("b", None), ("c", None)], {})
    assert got == {"a": A("10.90.1.1"), "b": A("10.90.1.3"), "c": A("10.90.1.4")}


def test_broadcast_is_never_allocated():
    got = allocate(net("10.90.1.0/29"), [(f"c{i}", None) for i in range(5)], {})
    assert sorted(got.values())[-1] == A("10.90.1.6")
    with pytest.raises(IpamError):
        allocate(net("10.90.1.0/29"), [(f"c{i}", None) for i in range(6)], {})


def test_addresses_are_stable_across_runs():
    first = allocate(net(), [("web", None), ("api", None), ("db", None)], {})
    # A later run lists the owners in another order and without "api".
    second = allocate(net(), [("db", None), ("web", None)], first)
    assert second == {"db": first["db"], "web": first["web"]}
    # The address "api" released is the lowest free one again.
    third = allocate(net(), [("db", None), ("web", None), ("new", None)], second)
    assert third["new"] == first["api"]


def test_existing_addresses_survive_a_lower_free_address():
    got = allocate(net(), [("a", None), ("b", None)], {"a": A("10.90.1.50")})
    assert got == {"a": A("10.90.1.50"), "b": A("10.90.1.2")}


def test_static_wins_over_previous_dynamic_holder():
    existing = {"web": A("10.90.1.2"), "api": A("10.90.1.3")}
    got = allocate(net(), [("web", None), ("api", None), ("db", A("10.90.1.2"))], existing)
    assert got["db"] == A("10.90.1.2")
    assert got["api"] == A("10.90.1.3")
    assert got["web"] == A("10.90.1.4")


def test_static_address_replaces_an_owners_previous_one():
    got = allocate(net(), [("web", A("10.90.1.10"))], {"web": A("10.90.1.2")})
    assert got == {"web": A("10.90.1.10")}


@pytest.mark.parametrize("previous", ["10.90.2.7", "10.90.1.1", "10.90.1.0", "10.90.1.255"])
def test_previous_address_no_longer_valid_is_replaced(previous):
    # E.g. the subnet or the gateway changed since the last run.
    got = allocate(net(), [("web", None)], {"web": A(previous)})
    assert got == {"web": A("10.90.1.2")}


def test_two_owners_with_the_same_previous_address():
    got = allocate(net(), [("a", None), ("b", None)], {"a": A("10.90.1.9"), "b": A("10.90.1.9")})
    assert got == {"a": A("10.90.1.9"), "b": A("10.90.1.2")}


def test_slash_30_fits_exactly_one_container():
    network = net("10.90.1.0/30")
    assert allocate(network, [("only", None)], {}) == {"only": A("10.90.1.2")}
    with pytest.raises(IpamError) as info:
        allocate(network, [("one", None), ("two", None)], {})
    message = str(info.value)
    assert message == "network front (10.90.1.0/30) is exhausted: no address left for two"


def test_static_addresses_are_served_before_dynamic_ones():
    # The /30 has a single host address; the static request takes it.
    with pytest.raises(IpamError, match=r"no address left for a$"):
        allocate(net("10.90.1.0/30"), [("a", None), ("b", A("10.90.1.2")), ("c", None)], {})


def test_order_decides_and_is_deterministic():
    requests = [("b", None), ("a", None), ("c", None)]
    got = allocate(net(), requests, {})
    assert got == {"b": A("10.90.1.2"), "a": A("10.90.1.3"), "c": A("10.90.1.4")}
    assert list(got) == ["b", "a", "c"]
    assert allocate(net(), requests, {}) == got
    assert allocate(net(), list(reversed(requests)), {}) == {
        "c": A("10.90.1.2"), "a": A("10.90.1.3"), "b": A("10.90.1.4"),
    }


def test_result_keeps_request_order_with_static_addresses():
    got = allocate(net(), [("a", None), ("b", A("10.90.1.2"))], {})
    assert list(got.items()) == [("a", A("10.90.1.3")), ("b", A("10.90.1.2"))]


@pytest.mark.parametrize("address", ["10.90.2.5", "10.90.1.0", "10.90.1.1", "10.90.1.255"])
def test_unusable_static_address_is_rejected(address):
    with pytest.raises(IpamError) as info:
        allocate(net(), [("web", A(address))], {})
    assert str(info.value) == (
        f"network front (10.90.1.0/24): static address {address} of web is not a usable host address"
    )


def test_conflicting_static_addresses_are_rejected():
    with pytest.raises(IpamError) as info:
        allocate(net(), [("web", A("10.90.1.5")), ("api", A("10.90.1.5"))], {})
    assert str(info.value) == "network front (10.90.1.0/24): api and web both claim 10.90.1.5"


def test_owner_requested_twice_is_rejected():
    with pytest.raises(IpamError, match=r"web is requested twice"):
        allocate(net(), [("web", None), ("web", A("10.90.1.5"))], {})


def test_no_requests_releases_everything():
    assert allocate(net(), [], {"web": A("10.90.1.2")}) == {}
