"""The datapath's maps and programs as bpf/include/fastnet/maps.h and programs.h declare them
(their only definition), parsed, and the views the loader, the map access and the socket
hooks use. The struct mirrors stay in abi.py, keyed by C type name; which map holds which
type, of what type and capacity, comes from the header. tests/bpf/test_declared.py checks
the loaded objects against these declarations."""
from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from functools import lru_cache

from . import abi, uapi

MAPS_HEADER = abi.BPF_DIR / "include" / "fastnet" / "maps.h"
PROGRAMS_HEADER = abi.BPF_DIR / "include" / "fastnet" / "programs.h"
NONE = "NONE"  # programs.h: no counter owner, no tail slot


def _table(text: str, macro: str) -> list[list[str]]:
    """The rows of `#define <macro>(X)`: one X(...) per continued line, split on commas."""
    m = re.search(r"^#define\s+" + macro + r"\(X\)\s*\\\n((?:.*\\\n)*.*\n)", text, re.M)
    if not m:
        raise RuntimeError(f"#define {macro}(X) not found")
    rows = []
    for line in m.group(1).splitlines():
        row = re.match(r"^\s*X\((.*)\)\s*\\?\s*$", line)
        if not row:
            raise RuntimeError(f"{macro}: cannot parse {line!r}")
        rows.append([cell.strip() for cell in row.group(1).split(",")])
    return rows


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def evaluate(expression: str, names: dict[str, int]) -> int:
    """An integer expression of a header (numbers, names, + - *) with `names` for the names."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"unsupported in a header expression: {expression!r}")

    return walk(ast.parse(expression, mode="eval").body)


@dataclass(frozen=True)
class MapDecl:
    name: str
    type: str  # uapi map type without BPF_MAP_TYPE_, e.g. LRU_HASH
    key: str  # C type, e.g. "struct fn_ct_key"
    value: str
    capacity: str  # expression over abi.h's constants
    flags: str  # "0" or BPF_F_* names joined by |
    scope: str  # PINNED, PROGRAMS_ONLY or TEST_BUILD

    def max_entries(self, defines: tuple[tuple[str, int], ...] = ()) -> int:
        """The capacity of a build compiled with `defines` (which override abi.h's defaults)."""
        return evaluate(self.capacity, {**abi.constants(), **dict(defines)})

    def map_type(self) -> int:
        return uapi.bpf_enum("bpf_map_type")["BPF_MAP_TYPE_" + self.type]

    def map_flags(self) -> int:
        if self.flags == "0":
            return 0
        flags = 0
        for name in self.flags.split("|"):
            flags |= _BPF_MAP_FLAGS[name.strip()]
        return flags


# uapi bpf.h's map_flags are #defines and an anonymous enum, not a named one: the few used
_BPF_MAP_FLAGS = {"BPF_F_NO_PREALLOC": 1 << 0}


@dataclass(frozen=True)
class ProgramDecl:
    name: str
    prog_type: str  # uapi program type without BPF_PROG_TYPE_, e.g. SCHED_CLS
    attach: str  # TC_INGRESS, TAIL_CALL, TEST_RUN or a uapi enum bpf_attach_type name
    counts_as: str  # FN_PROG_* counter owner, or NONE
    tail_slot: str  # FN_TAIL_* for TAIL_CALL, or NONE

    @property
    def is_sock_hook(self) -> bool:
        return self.attach.startswith("BPF_")

    def attach_type(self) -> int:
        """Its number in the uapi enum bpf_attach_type (socket hooks only)."""
        assert self.is_sock_hook, self.name
        return uapi.bpf_enum("bpf_attach_type")[self.attach]

    def program_type(self) -> int:
        return uapi.bpf_enum("bpf_prog_type")["BPF_PROG_TYPE_" + self.prog_type]


@lru_cache(maxsize=1)
def maps() -> tuple[MapDecl, ...]:
    return tuple(MapDecl(*row) for row in _table(MAPS_HEADER.read_text(), "FN_MAPS"))


@lru_cache(maxsize=1)
def programs() -> tuple[ProgramDecl, ...]:
    return tuple(ProgramDecl(*row) for row in _table(PROGRAMS_HEADER.read_text(), "FN_PROGRAMS"))


@lru_cache(maxsize=1)
def _counter_owner_rows() -> tuple[tuple[str, int, str], ...]:
    """(FN_PROG_* id, slot, name shown) of each counter owner."""
    return tuple((ident, int(slot), shown) for ident, slot, shown in _table(PROGRAMS_HEADER.read_text(), "FN_COUNTER_OWNERS"))


def counter_owner_ids() -> dict[str, int]:
    """FN_PROG_* -> its slot in fn_metrics (in units of FN_COUNTER_SLOTS)."""
    return {ident: slot for ident, slot, _ in _counter_owner_rows()}


def _layouts(scope: str) -> dict[str, tuple[type, type]]:
    return {m.name: (abi.MIRRORS[m.key], abi.MIRRORS[m.value]) for m in maps() if m.scope == scope}


# Views derived from the two tables (computed once, at import, as abi.py's constants are).
# map name -> (key mirror, value mirror), for the maps the loader pins and the control plane opens
MAP_LAYOUTS: dict[str, tuple[type, type]] = _layouts("PINNED")
# the same for the maps only the test build (FN_TEST) has
TEST_MAP_LAYOUTS: dict[str, tuple[type, type]] = _layouts("TEST_BUILD")
# counter owner's name shown by `fastnet` -> its slot (the socket hooks count together as fn_sock)
COUNTER_OWNERS: dict[str, int] = {shown: slot for _, slot, shown in _counter_owner_rows()}
# TC programs the control plane attaches at TC ingress
TC_PROGRAMS = tuple(p.name for p in programs() if p.attach == "TC_INGRESS")
# TC programs that are never attached: the control plane runs them with BPF_PROG_TEST_RUN
ADMIN_PROGRAMS = tuple(p.name for p in programs() if p.attach == "TEST_RUN")
# TC programs the others tail-call -> their slot in fn_tails (the loader fills it)
TAIL_PROGRAMS = {p.name: abi.constants()[p.tail_slot] for p in programs() if p.attach == "TAIL_CALL"}
# every TC program (SCHED_CLS), attached or not
SCHED_CLS_PROGRAMS = tuple(p.name for p in programs() if p.prog_type == "SCHED_CLS")
# socket hooks (CGROUP_SOCK_ADDR) -> the uapi name of their attach type
SOCK_PROGRAMS = {p.name: p.attach for p in programs() if p.is_sock_hook}


def attach_type(program: str) -> int:
    """A socket hook's attach type, resolved by name in the kernel's uapi header."""
    return uapi.bpf_enum("bpf_attach_type")[SOCK_PROGRAMS[program]]


def is_declared(name: str) -> bool:
    """Whether `name` is a map, a program or a counter owner of the datapath."""
    return name in {m.name for m in maps()} | {p.name for p in programs()} | set(COUNTER_OWNERS)
