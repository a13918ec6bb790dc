"""Compile fastnet's datapath with bcc, pin it, and reopen the pins.

One bcc object holds every program and map (bpf/fastnet.c). A host's pins live in
`<pin_root>/v<ABI>_<source hash>/`: programs as `prog_<name>`, maps as `map_<name>`.
The directory name ties the pins to the exact source and layout that made them, because
bcc never checks a pinned map's layout: a directory made by other sources is never reused.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import abi, declared, libbpf
from .errors import FastnetError


@lru_cache(maxsize=8)
def source_hash(defines: tuple[tuple[str, int], ...] = ()) -> str:
    """Identity of a build: every source file and the compile-time settings."""
    h = hashlib.sha256()
    for path in sorted(abi.BPF_DIR.rglob("*")):
        if path.suffix in (".c", ".h"):
            h.update(str(path.relative_to(abi.BPF_DIR)).encode())
            h.update(path.read_bytes())
    h.update(repr(defines).encode())
    return h.hexdigest()[:12]


def version_dir_name(defines: tuple[tuple[str, int], ...] = ()) -> str:
    return f"v{abi.ABI_VERSION}_{source_hash(defines)}"  # bpffs refuses names containing '.'


class DatapathError(FastnetError):
    pass


@dataclass
class Datapath:
    """Open file descriptors of one loaded datapath."""

    progs: dict[str, int]
    maps: dict[str, int]
    pin_dir: Path | None = None
    fresh: bool = False  # compiled by this process: whatever used older pins must move over
    _keepalive: object = field(default=None, repr=False)  # the bcc object, when not pinned

    def close(self) -> None:
        if self._keepalive is None:
            for fd in [*self.progs.values(), *self.maps.values()]:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._keepalive = None
        self.progs, self.maps = {}, {}


def compile_datapath(test_mode: bool = False, defines: tuple[tuple[str, int], ...] = ()):
    """Compile and load bpf/fastnet.c; returns (bcc.BPF, Datapath). Checks the ABI mirror.
    `defines` overrides compile-time settings such as FN_CT_MAX."""
    from bcc import BPF  # imported late: bcc is slow to import and absent on unit-test machines

    cflags = [f"-I{abi.BPF_DIR / 'include'}", f"-I{abi.BPF_DIR}", "-Wno-unused-function"]
    cflags += [f"-D{name}={value}" for name, value in defines]
    if test_mode:
        cflags.append("-DFN_TEST")
    try:
        bpf = BPF(src_file=str(abi.BPF_DIR / "fastnet.c").encode(), cflags=cflags)
    except Exception as exc:  # bcc raises bare Exception with the compiler's output on stderr
        raise DatapathError(f"compiling {abi.BPF_DIR / 'fastnet.c'} failed: {exc}") from exc
    layouts = {**declared.MAP_LAYOUTS, **(declared.TEST_MAP_LAYOUTS if test_mode else {})}
    tables = {name: bpf.get_table(name.encode()) for name in layouts}
    # per-CPU tables expose the per-CPU array as Leaf and one element as sLeaf
    abi.check_layout({name: (t.Key, getattr(t, "sLeaf", t.Leaf)) for name, t in tables.items()}, layouts)
    progs = {name: bpf.load_func(name.encode(), BPF.SCHED_CLS).fd for name in declared.SCHED_CLS_PROGRAMS}
    for name, slot in declared.TAIL_PROGRAMS.items():
        tables["fn_tails"][ctypes.c_int(slot)] = ctypes.c_int(progs[name])
    for name in declared.SOCK_PROGRAMS:
        attach_type = declared.attach_type(name)
        progs[name] = bpf.load_func(name.encode(), BPF.CGROUP_SOCK_ADDR, attach_type=attach_type).fd
    maps = {name: t.map_fd for name, t in tables.items()}
    return bpf, Datapath(progs=progs, maps=maps, _keepalive=bpf)


class NewerDatapath(DatapathError):
    """Pins of a newer ABI: this version cannot know their layout, and must not replace them."""


def refuse_newer(pin_root: Path) -> None:
    """Raise NewerDatapath if a newer fastnet pinned its datapath here."""
    newer = sorted(v for v in _pinned_versions(pin_root) if v > abi.ABI_VERSION)
    if newer:
        raise NewerDatapath(
            f"the datapath on this host was built by a newer fastnet (ABI {newer[-1]}; this one is ABI "
            f"{abi.ABI_VERSION}): use that version, or bring every project down with it first"
        )


def _pinned_versions(pin_root: Path) -> set[int]:
    if not pin_root.is_dir():
        return set()
    found = set()
    for p in pin_root.iterdir():
        head = p.name.split("_", 1)[0]
        if p.is_dir() and head.startswith("v") and head[1:].isdigit():
            found.add(int(head[1:]))
    return found


def open_pinned(pin_root: Path, defines: tuple[tuple[str, int], ...] | None = None) -> Datapath | None:
    """The datapath pinned for the current sources and settings (None: whichever settings are
    pinned), or None if there is no complete set. NewerDatapath if a newer ABI is pinned."""
    refuse_newer(pin_root)
    if defines is None:
        current = [p for p in pin_root.glob(f"v{abi.ABI_VERSION}_*") if p.is_dir()] if pin_root.is_dir() else []
        if len(current) != 1:
            return None
        pin_dir = current[0]
    else:
        pin_dir = pin_root / version_dir_name(defines)
    return _open_pin_dir(pin_dir)


def open_all_pinned(pin_root: Path) -> list[Datapath]:
    """Every complete pinned datapath of this ABI version: one, or two while `up` moves the
    ports of an old build to a new one (both builds' socket hooks are attached until then).
    NewerDatapath if a newer ABI is pinned."""
    refuse_newer(pin_root)
    found = [_open_pin_dir(p) for p in sorted(pin_root.glob(f"v{abi.ABI_VERSION}_*"))] if pin_root.is_dir() else []
    return [dp for dp in found if dp is not None]


def _open_pin_dir(pin_dir: Path) -> Datapath | None:
    if not pin_dir.is_dir():
        return None
    progs, maps = {}, {}
    try:
        for name in (*declared.SCHED_CLS_PROGRAMS, *declared.SOCK_PROGRAMS):
            progs[name] = libbpf.obj_get(str(pin_dir / f"prog_{name}"))
        for name in declared.MAP_LAYOUTS:
            maps[name] = libbpf.obj_get(str(pin_dir / f"map_{name}"))
    except OSError:
        Datapath(progs, maps).close()
        return None
    return Datapath(progs=progs, maps=maps, pin_dir=pin_dir)


def load_pinned(pin_root: Path, defines: tuple[tuple[str, int], ...] = ()) -> Datapath:
    """Open the pinned datapath, compiling and pinning it first if needed."""
    found = open_pinned(pin_root, defines)
    if found is not None:
        return found
    pin_dir = pin_root / version_dir_name(defines)
    staging = pin_root / f"staging_{version_dir_name(defines)}_{os.getpid()}"
    _remove_dead_staging(pin_root)
    bpf, fresh = compile_datapath(defines=defines)
    try:
        staging.mkdir(parents=True, exist_ok=True)
        for name, fd in fresh.progs.items():
            libbpf.obj_pin(fd, str(staging / f"prog_{name}"))
        for name, fd in fresh.maps.items():
            libbpf.obj_pin(fd, str(staging / f"map_{name}"))
        if pin_dir.exists():  # an incomplete set left by an interrupted run
            shutil.rmtree(pin_dir)
        staging.rename(pin_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        bpf.cleanup()
    found = open_pinned(pin_root, defines)
    if found is None:
        raise DatapathError(f"pinned datapath under {pin_dir} vanished right after pinning")
    found.fresh = True
    return found


def _remove_dead_staging(pin_root: Path) -> None:
    """Staging directories of runs killed while pinning (`staging_<version>_<pid>`)."""
    if not pin_root.is_dir():
        return
    for p in pin_root.glob("staging_*"):
        pid = p.name.rsplit("_", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            remove_pins(p)


def stale_pin_dirs(pin_root: Path, defines: tuple[tuple[str, int], ...] = ()) -> list[Path]:
    """Pin directories made by other sources, layouts or settings of this or an older ABI (an
    upgrade, or a run killed before it moved the ports, left them); never a newer ABI's."""
    if not pin_root.is_dir():
        return []
    keep = version_dir_name(defines)
    stale = []
    for p in pin_root.iterdir():
        head = p.name.split("_", 1)[0]
        if p.is_dir() and p.name != keep and head[1:].isdigit() and int(head[1:]) <= abi.ABI_VERSION:
            stale.append(p)
    return stale


def remove_pins(pin_dir: Path) -> None:
    """Unpin everything under pin_dir (objects die once nothing else holds them)."""
    shutil.rmtree(pin_dir, ignore_errors=True)


def possible_cpus() -> int:
    from bcc.utils import get_possible_cpus

    return len(get_possible_cpus())


def percpu_value_type(value_type: type) -> type:
    """Per-CPU map values come back as one value per possible CPU, each 8-byte aligned."""
    assert ctypes.sizeof(value_type) % 8 == 0
    return value_type * possible_cpus()
