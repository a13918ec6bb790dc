"""The counter table (bpf/include/fastnet/counters.h) and its coverage by the case tables
(test_bridge.CASES: one counter per case; test_nat.CASES, test_conntrack.CASES: the counters each
case moves).

Adding a drop reason or outcome without a case that produces it fails here."""
from __future__ import annotations

from fastnet.datapath import abi
from fastnet.datapath.counters import COUNTERS_HEADER, counters

import test_bridge
import test_conntrack
import test_ipvlan
import test_nat
import test_overlay
import test_vlan

# Every table of cases whose counters a parametrized test checks; add new ones here.
CASES = [*test_bridge.CASES, *test_nat.CASES, *test_conntrack.CASES, *test_ipvlan.CASES, *test_vlan.CASES,
         *test_overlay.CASES]

# Counters no case can produce, each with the reason. Keep this list short and justified.
NOT_PRODUCIBLE = {
    "drop_redirect": "no path returns it yet (reserved for a failed bpf_redirect*)",
    "drop_tail_call": "only with fn_tails' slot emptied, which a case cannot arrange: "
                      "test_bridge.test_a_missing_flood_program_is_a_counted_drop empties it",
    "drop_malformed_eth": "BPF_PROG_TEST_RUN refuses frames < ETH_HLEN (test_bridge.test_kernel_refuses)",
    "drop_csum": "the rewrite helpers only fail on offsets outside the packet or an skb they cannot make "
                 "writable; every offset the NAT path writes was bounds-checked first (fn_l4_parse, "
                 "bpf_skb_load_bytes), and a test run's skb is linear and unshared",
    "drop_vlan_tag": "bpf_skb_vlan_push/pop fail only when the skb cannot be made writable or grown "
                     "(memory), which a test run cannot arrange",
    "fwd_sock_dnat": "cgroup/sock_addr programs have no BPF_PROG_TEST_RUN: the integration tests drive the socket hooks",
    "fwd_sock_resolver": "cgroup/sock_addr programs have no BPF_PROG_TEST_RUN: tests/integration/test_dns.py "
                         "drives the socket hooks from containers of ebpf projects",
    "drop_overlay_tunnel": "bpf_skb_set_tunnel_key fails only without memory for its metadata dst; the test "
                           "build's seam (bpf/lib/overlay.h) records the key instead",
    "drop_bind_published": "cgroup/sock_addr programs (here cgroup/bind4, bind6) have no BPF_PROG_TEST_RUN: "
                           "tests/integration/test_reserve.py binds published ports in a test host and "
                           "checks this counter",
}


def produced_by(case) -> tuple[str, ...]:
    """The counters a case checks."""
    return tuple(case.counters) if hasattr(case, "counters") else (case.counter,)


def test_every_counter_is_produced_by_a_case():
    names = {c.short for c in counters()}
    produced = {name for case in CASES for name in produced_by(case)}
    unknown = sorted(produced - names)
    assert not unknown, f"cases name counters that counters.h does not have: {unknown}"
    missing = sorted(names - produced - set(NOT_PRODUCIBLE))
    assert not missing, f"counters that no case produces: {missing}"


def test_exemptions_are_real_counters_without_cases():
    names = {c.short for c in counters()}
    produced = {name for case in CASES for name in produced_by(case)}
    assert set(NOT_PRODUCIBLE) <= names
    assert set(NOT_PRODUCIBLE) & produced == set(), "a case produces it now: remove the exemption"


def test_every_x_line_is_parsed():
    """A line in another shape would be silently missing from every name and report."""
    x_lines = [line for line in COUNTERS_HEADER.read_text().splitlines() if line.strip().startswith("X(")]
    assert len(x_lines) == len(counters())


def test_ids_are_contiguous_from_zero():
    assert [c.id for c in counters()] == list(range(len(counters())))


def test_ids_fit_in_a_programs_metric_slots():
    assert len(counters()) <= abi.FN_COUNTER_SLOTS


def test_names_are_unique_and_well_formed():
    names = [c.name for c in counters()]
    assert len(names) == len(set(names))
    for c in counters():
        assert c.name.startswith(f"FN_{c.kind}_"), c.name


def test_texts_are_non_empty_and_unique():
    texts = [c.text.strip() for c in counters()]
    assert all(texts), texts
    assert len(texts) == len(set(texts))
