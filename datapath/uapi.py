"""Enums of the kernel's uapi <linux/bpf.h>, read by name from the header itself, so that
fastnet names attach and map types as the kernel does and never writes their numbers."""
from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

from .errors import FastnetError


class UapiHeaderMissing(FastnetError):
    pass


def bpf_header_candidates() -> list[Path]:
    """The running kernel's headers (bcc compiles against them) first, then the
    distribution's (linux-libc-dev). Enum numbers are ABI: either answers the same."""
    release = Path("/lib/modules") / os.uname().release
    return [release / "build/include/uapi/linux/bpf.h", release / "source/include/uapi/linux/bpf.h",
            Path("/usr/include/linux/bpf.h")]


def bpf_header() -> Path:
    for path in bpf_header_candidates():
        if path.is_file():
            return path
    raise UapiHeaderMissing("no uapi linux/bpf.h among " + ", ".join(map(str, bpf_header_candidates()))
                            + ": install the kernel headers (scripts/setup.sh)")


_ENTRY = re.compile(r"^\s*(\w+)\s*(?:=\s*(\w+))?\s*,?\s*$")


def parse_enum(text: str, enum: str) -> dict[str, int]:
    """NAME -> value of `enum <enum> { ... };` in C source text: implicit values count up
    from the previous one; an explicit value is a number or an earlier name."""
    m = re.search(r"^enum\s+" + re.escape(enum) + r"\s*\{(.*?)^\};", text, re.M | re.S)
    if not m:
        raise KeyError(f"enum {enum} not found")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    values: dict[str, int] = {}
    following = 0
    for line in body.splitlines():
        line = line.split("//", 1)[0]
        entry = _ENTRY.match(line)
        if not entry:
            continue
        name, explicit = entry.groups()
        if explicit is not None:
            following = values[explicit] if explicit in values else int(explicit, 0)
        values[name] = following
        following += 1
    return values


@lru_cache(maxsize=None)
def bpf_enum(enum: str) -> dict[str, int]:
    """An enum of uapi linux/bpf.h, e.g. bpf_enum("bpf_attach_type")["BPF_CGROUP_INET4_CONNECT"]."""
    return parse_enum(bpf_header().read_text(), enum)
