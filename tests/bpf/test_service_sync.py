"""Published-port tables written as a delta (Maps.sync_services with what they hold) end up
exactly as a full reconcile leaves them, and a delta writes only what changed; the bitmap of
published ports (fn_pub_ports) holds exactly the published (protocol, port)s either way."""
from __future__ import annotations

from socket import IPPROTO_TCP, IPPROTO_UDP

from fastnet.datapath import abi
from fastnet.datapath.maps import Maps, port_prefixes, service_entries

from topology import ADMIN, DNS, LOOPBACK, UPLINK_IP, WEB, B, C, D, publish

SVC_TABLES = ("fn_svc_any", "fn_svc_addr")


def contents(maps: Maps) -> dict[str, set[tuple[bytes, bytes]]]:
    found = {t: {(bytes(k), bytes(v)) for k, v in maps._items(t)} for t in SVC_TABLES}
    found["fn_pub_ports"] = {(bytes(k), bytes(v)) for k, v in maps._items("fn_pub_ports") if v.value}
    return found


def bitmap_ports(maps: Maps) -> set[tuple[int, int]]:
    """fn_pub_ports read back as {(IPPROTO_*, port)}."""
    slots = {slot: proto for proto, slot in abi.PORT_SLOTS.items()}
    ports = set()
    for k, v in maps._items("fn_pub_ports"):
        slot, word = divmod(k.value, abi.FN_PORT_WORDS)
        ports |= {(slots[slot], word * 64 + bit) for bit in range(64) if v.value >> bit & 1}
    return ports


def published(*services) -> set[tuple[int, int]]:
    return {(s.proto, p) for s in services for p in range(s.host_port_first, s.host_port_last + 1)}


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
    # one trie entry, and one bitmap word (7040-7103, which WEB's 7000-7099 already touches)
    assert writes == len(port_prefixes(7100, 7103)) + 1 == 2
    assert contents(maps) == want
    assert bitmap_ports(maps) == published(WEB, DNS, ADMIN, extra)
    maps.sync_services([])


def test_delta_withdraws_and_updates_in_place(test_datapath):
    maps = Maps(test_datapath.dp)
    moved = WEB._replace(backend_ipv4=int(B.ipv4), backend_ifindex=B.ifindex, backend_mac=B.mac)
    want = reconciled(maps, [moved, DNS])
    maps.sync_services([WEB, DNS, ADMIN])
    writes = maps.sync_services([moved, DNS], frozenset([WEB, DNS, ADMIN]))
    # WEB's keys are rewritten with the new backend (never deleted), ADMIN's are deleted, and
    # so is ADMIN's bit (WEB's words do not change: same ports)
    assert writes == len(service_entries([WEB])["fn_svc_any"]) + len(service_entries([ADMIN])["fn_svc_addr"]) + 1
    assert contents(maps) == want
    assert bitmap_ports(maps) == published(WEB, DNS)
    maps.sync_services([])


def test_bitmap_covers_ranges_across_words_and_both_protocols(test_datapath):
    maps = Maps(test_datapath.dp)
    wide = publish(IPPROTO_UDP, None, 60, 200, D, 60)  # ends of two partial words, one whole word between
    edge = publish(IPPROTO_TCP, None, 65535, 65535, C, 80)
    full = publish(IPPROTO_TCP, LOOPBACK, 1, 65535, B, 1)
    for services in ([wide, edge], [full], [wide, full]):
        maps.sync_services(services)
        assert bitmap_ports(maps) == published(*services)
    maps.sync_services([])
    assert bitmap_ports(maps) == set()


def test_withdrawing_one_of_two_services_on_a_port_keeps_its_bit(test_datapath):
    """Two containers may publish one port on two addresses: the port stays published (and
    its bit set) until both are gone."""
    maps = Maps(test_datapath.dp)
    other = publish(IPPROTO_UDP, LOOPBACK, 5353, 5353, C, 53)
    maps.sync_services([DNS, other])
    assert maps.sync_services([DNS], frozenset([DNS, other])) == 1  # the trie entry, no bitmap word
    assert bitmap_ports(maps) == published(DNS)
    assert maps.sync_services([], frozenset([DNS])) == 2
    assert bitmap_ports(maps) == set()
    assert DNS.host_addr == int(UPLINK_IP)


def test_unchanged_services_write_nothing(test_datapath):
    maps = Maps(test_datapath.dp)
    maps.sync_services([WEB, DNS])
    assert maps.sync_services([WEB, DNS], frozenset([WEB, DNS])) == 0
    assert maps.sync_services([WEB, DNS]) == 0  # a full reconcile agrees
    maps.sync_services([])
