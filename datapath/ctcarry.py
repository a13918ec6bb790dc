"""Connection tracking carried over to a new build of the datapath.

A build is replaced whenever its sources, its compile-time settings or its ABI change (an
upgrade, or a new `conntrack:` size): `up` moves every port to the new build and unpins the
old one (control/backends/ebpf.py). Before the ports move, the flows of every older build still
pinned are read with the layout *that* build had — its ABI version is in its pin directory's
name — and inserted into the new build through fn_ct_admin (FN_CT_ADMIN_ADOPT), within the new
build's budgets, both entries of a flow at once. Flows an older build makes after they were
read are picked up again by their next packets (bpf/lib/ct.h).

Layouts that can be read:
  ABI 2 to 5  fn_ct (confirmed) and fn_ct_new (unconfirmed), LRU, 48-byte entries (below);
  ABI 9       fn_ct, HASH, the entries of abi.CtEntry (datapath/abi.py).
ABI 1 had no conntrack. A newer ABI is never read (loader.refuse_newer stops before).
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from . import abi, libbpf

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64


class CtEntryV2(ctypes.Structure):
    """struct fn_ct_entry of ABI 2 to 5 (the key, struct fn_ct_key, has not changed)."""

    _fields_ = [
        ("expires", u64),
        ("created", u64),
        ("to_saddr", u32),
        ("to_daddr", u32),
        ("to_sport", u16),
        ("to_dport", u16),
        ("out_ifindex", u32),
        ("out_dmac", u8 * 6),
        ("out_smac", u8 * 6),
        ("state", u8),
        ("flags", u8),
        ("pad", u16),
    ]


# Flags of ABI 2 to 5 that mean the same now (0x20 was "the server answered the SYN").
V2_FLAGS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10


def abi_version(pin_dir: Path) -> int | None:
    head = pin_dir.name.split("_", 1)[0]
    return int(head[1:]) if head.startswith("v") and head[1:].isdigit() else None


def read_table(pin_dir: Path, table: str, key_type: type, value_type: type) -> list[tuple]:
    """Every entry of a table of the build pinned at pin_dir, read as key_type/value_type; []
    when the build has no such table or its sizes are not those types'."""
    try:
        fd = libbpf.obj_get(str(pin_dir / f"map_{table}"))
    except OSError:
        return []
    try:
        info = libbpf.map_info(fd)
        if (info.key_size, info.value_size) != (ctypes.sizeof(key_type), ctypes.sizeof(value_type)):
            return []  # not the layout its ABI version says: never misread it
        return libbpf.map_lookup_batch(fd, key_type, value_type)
    finally:
        os.close(fd)


def entries(pin_dir: Path) -> list[tuple[abi.CtKey, abi.CtEntry]]:
    """Every conntrack entry of the build pinned at pin_dir, in the current layout; [] for a
    layout this fastnet cannot read."""
    version = abi_version(pin_dir)
    if version == abi.ABI_VERSION:
        return read_table(pin_dir, "fn_ct", abi.CtKey, abi.CtEntry)
    if version is None or not 2 <= version <= 5:
        return []
    return from_v2(read_table(pin_dir, "fn_ct", abi.CtKey, CtEntryV2), read_table(pin_dir, "fn_ct_new", abi.CtKey, CtEntryV2))


def from_v2(confirmed: list[tuple], unconfirmed: list[tuple]) -> list[tuple[abi.CtKey, abi.CtEntry]]:
    """Entries of ABI 2 to 5 (fn_ct's and fn_ct_new's) in the current layout. What each TCP
    direction sent was not recorded (`tcp` 0): it is learnt again from the next packets, as for
    a flow picked up mid-stream."""
    out = []
    for rows, status in ((confirmed, abi.constants()["FN_CT_S_CONFIRMED"]), (unconfirmed, 0)):
        for k, old in rows:
            e = abi.CtEntry(expires=old.expires, created=old.created, status=status, to_saddr=old.to_saddr,
                            to_daddr=old.to_daddr, to_sport=old.to_sport, to_dport=old.to_dport,
                            out_ifindex=old.out_ifindex, state=old.state, flags=old.flags & V2_FLAGS)
            ctypes.memmove(e.out_dmac, old.out_dmac, 6)
            ctypes.memmove(e.out_smac, old.out_smac, 6)
            out.append((k, e))
    return out


def flows(rows: list[tuple[abi.CtKey, abi.CtEntry]]) -> list[abi.CtFlow]:
    """The entries paired into flows (forward, reply). Half a flow (an LRU table of an older
    build evicted the other direction) is left out: its translation is incomplete."""
    from .maps import ct_partner_key

    reply = abi.constants()["FN_CT_F_REPLY"]
    by_key = {bytes(k): e for k, e in rows}
    out = []
    for k, e in rows:
        if e.flags & reply:
            continue
        pkey = ct_partner_key(k, e)
        partner = by_key.get(bytes(pkey))
        if partner is not None and partner.flags & reply:  # (fn_ct_adopt takes the flow's status from e)
            out.append(abi.CtFlow(fwd_key=k, fwd=e, rev_key=pkey, rev=partner))
    return out


def carry(old_dirs: list[Path], maps) -> tuple[int, int]:
    """Insert the flows of the builds pinned at old_dirs into `maps` (a Maps of the new build,
    not attached yet or already in use): (flows found, flows carried)."""
    found = []
    for d in old_dirs:
        with contextlib.suppress(OSError):
            found += flows(entries(d))
    return len(found), (maps.conntrack_adopt(found) if found else 0)
