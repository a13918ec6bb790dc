"""Published-port tables written as a delta (Maps.sync_services with what they hold) end up
exactly as a full reconcile leaves them, and a delta writes only what changed."""
from __future__ import annotations

from socket import IPPROTO_TCP

from fastnet.datapath.maps import Maps, port_prefixes, service_entries

from topology import ADMIN, DNS, WEB, B, C, publish

SVC_TABLES = ("fn_svc_any", "fn_svc_addr")


def contents(maps: Maps) -> dict[str, set[tuple[bytes, bytes]]]:
    return {t: {(bytes(k), bytes(v)) for k, v in maps._items(t)} for t in SVC_TABLES}


def reconciled(maps: Maps, services) -> dict[str, set[tuple[bytes, bytes]]]:
    maps.sync_services(services)
    return contents(maps)


def test_delta_writes_only_the_new_port_and_matches_a_reconcile(test_datapath):
    maps = Maps(test_datapath.dp)
    before = [WEB, DNS, ADMIN]
    extra = publish(IPPROTO_TCP, None, 7100, 7103, C, 80)
    want = reconciled(maps, before + [extra])
    maps.sync_services(before)
    writes = maps.sync_services(before + [extra], frozenset(before))
    assert writes == len(port_prefixes(7100, 7103)) == 1
    assert contents(maps) == want
    maps.sync_services([])


def test_delta_withdraws_and_updates_in_place(test_datapath):
    maps = Maps(test_datapath.dp)
    moved = WEB._replace(backend_ipv4=int(B.ipv4), backend_ifindex=B.ifindex, backend_mac=B.mac)
    want = reconciled(maps, [moved, DNS])
    maps.sync_services([WEB, DNS, ADMIN])
    writes = maps.sync_services([moved, DNS], frozenset([WEB, DNS, ADMIN]))
    # WEB's keys are rewritten with the new backend (never deleted), ADMIN's are deleted
    assert writes == len(service_entries([WEB])["fn_svc_any"]) + len(service_entries([ADMIN])["fn_svc_addr"])
    assert contents(maps) == want
    maps.sync_services([])


def test_unchanged_services_write_nothing(test_datapath):
    maps = Maps(test_datapath.dp)
    maps.sync_services([WEB, DNS])
    assert maps.sync_services([WEB, DNS], frozenset([WEB, DNS])) == 0
    assert maps.sync_services([WEB, DNS]) == 0  # a full reconcile agrees
    maps.sync_services([])
