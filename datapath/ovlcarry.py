"""The other hosts' containers (fn_ovl_remotes) carried over to a new build of the datapath.

fn_ovl_remotes is the agent's table (control/overlaysync.py writes it from the store), and a
new build starts with it empty. The agent fills it only when it next applies: at its reload
after `up`; after an ABI change only once the keeper has restarted it with the new code; with
the store out of reach not before the store answers again. Until then every port moved to the
new build reaches no container of another host, and every frame from the VXLAN device fails
the inner-source check. So `up` copies the old builds' table into the new build before any port
moves to it, as it does for conntrack (datapath/ctcarry.py), and the agent goes on from there.

An entry the agent already wrote into the new build (it writes every pinned build) is newer
than the copy and is kept (BPF_NOEXIST). An entry the agent removed from both builds while the
copy was being made can come back for a moment: the agent's reload at the end of `up` makes
the table exactly what the store says again.

Layouts that can be read: ABI 11 (which introduced the map) up to the current one, whose
struct fn_ovl_key and struct fn_ovl_remote are those of abi.OvlKey and abi.OvlRemote. A change
to either struct bumps the ABI and must end SAME_LAYOUT where it starts; builds outside it are
left to the agent's refill.
"""
from __future__ import annotations

import errno
from pathlib import Path

from . import abi, libbpf
from .ctcarry import abi_version, read_table

SAME_LAYOUT = range(11, abi.ABI_VERSION + 1)
TABLE = "fn_ovl_remotes"
BPF_NOEXIST = 1


def entries(pin_dir: Path) -> list[tuple[abi.OvlKey, abi.OvlRemote]]:
    """Every entry of fn_ovl_remotes of the build pinned at pin_dir; [] for a build without
    the table or with another layout."""
    if abi_version(pin_dir) not in SAME_LAYOUT:
        return []
    return read_table(pin_dir, TABLE, abi.OvlKey, abi.OvlRemote)


def carry(old_dirs: list[Path], new_fd: int) -> int:
    """Copy the entries of the builds pinned at old_dirs into the new build's fn_ovl_remotes
    (new_fd), keeping those it already has; returns how many were copied."""
    copied = 0
    for d in old_dirs:
        for key, value in entries(d):
            try:
                libbpf.map_update(new_fd, key, value, BPF_NOEXIST)
                copied += 1
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
    return copied
