"""The counter and drop-reason table, parsed from bpf/include/fastnet/counters.h (its only
definition), so user space prints the same names and texts the programs count under."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from .abi import BPF_DIR

COUNTERS_HEADER = BPF_DIR / "include" / "fastnet" / "counters.h"
_LINE = re.compile(r'^\s*X\((FN_\w+),\s*(\d+),\s*(FWD|DROP),\s*"([^"]*)"\)', re.M)


@dataclass(frozen=True)
class Counter:
    name: str  # e.g. FN_DROP_SPOOF_MAC
    id: int
    kind: str  # "FWD" or "DROP"
    text: str

    @property
    def short(self) -> str:
        """Lower-case name without the prefix, e.g. drop_spoof_mac."""
        return self.name.removeprefix("FN_").lower()


@lru_cache(maxsize=1)
def counters() -> tuple[Counter, ...]:
    found = tuple(Counter(n, int(i), k, t) for n, i, k, t in _LINE.findall(COUNTERS_HEADER.read_text()))
    ids = [c.id for c in found]
    if ids != list(range(len(ids))):
        raise RuntimeError(f"{COUNTERS_HEADER}: counter ids must be 0..n-1 in order, got {ids}")
    return found
