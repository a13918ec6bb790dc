"""ctypes bindings to the system's libbpf (package libbpf1) for what bcc's Python lacks:
pinning, opening pins, map access by fd, batch lookups, object info and BPF_PROG_TEST_RUN.

libbpf >= 1.0 returns negative errno values; every wrapper turns them into OSError.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

BPF_ANY = 0


class TestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts (libbpf.h)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class ProgLoadOpts(ctypes.Structure):
    """struct bpf_prog_load_opts (libbpf.h, as libbpf 1.1 has it)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_void_p),
    ]


class MapBatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts (libbpf.h)."""

    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info (uapi bpf.h) up to the verifier's count. The array
    pointers stay 0, so the kernel copies no arrays out."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),  # a 1-bit field and its padding
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),  # what the verifier walked (its limit: 1,000,000)
    ]


class MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (uapi bpf.h)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


@lru_cache(maxsize=1)
def lib() -> ctypes.CDLL:
    path = ctypes.util.find_library("bpf") or "libbpf.so.1"
    so = ctypes.CDLL(path, use_errno=True)
    vp, u32, u64, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int
    for name, args in {
        "bpf_obj_pin": [cint, ctypes.c_char_p],
        "bpf_obj_get": [ctypes.c_char_p],
        "bpf_map_update_elem": [cint, vp, vp, u64],
        "bpf_map_lookup_elem": [cint, vp, vp],
        "bpf_map_delete_elem": [cint, vp],
        "bpf_map_get_next_key": [cint, vp, vp],
        "bpf_map_lookup_batch": [cint, vp, vp, vp, vp, ctypes.POINTER(u32), ctypes.POINTER(MapBatchOpts)],
        "bpf_map_delete_batch": [cint, vp, ctypes.POINTER(u32), ctypes.POINTER(MapBatchOpts)],
        "bpf_prog_test_run_opts": [cint, ctypes.POINTER(TestRunOpts)],
        "bpf_obj_get_info_by_fd": [cint, vp, ctypes.POINTER(u32)],
        "bpf_prog_get_fd_by_id": [u32],
        "bpf_link_create": [cint, cint, cint, vp],
        "bpf_map_get_fd_by_id": [u32],
        "bpf_map_create": [cint, ctypes.c_char_p, u32, u32, u32, vp],
        "bpf_enable_stats": [cint],
        "bpf_prog_load": [cint, ctypes.c_char_p, ctypes.c_char_p, vp, ctypes.c_size_t, ctypes.POINTER(ProgLoadOpts)],
    }.items():
        fn = getattr(so, name)
        fn.argtypes = args
        fn.restype = cint
    return so


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = -ret
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def obj_pin(fd: int, path: str) -> None:
    _check(lib().bpf_obj_pin(fd, path.encode()), f"pin {path}")


def obj_get(path: str) -> int:
    return _check(lib().bpf_obj_get(path.encode()), f"open pinned {path}")


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int) -> int:
    """A new map outside any build (tests stand in an older build's table with one)."""
    return _check(lib().bpf_map_create(map_type, name.encode(), key_size, value_size, max_entries, None),
                  f"create map {name}")


def map_update(fd: int, key: ctypes._CData, value: ctypes._CData, flags: int = BPF_ANY) -> None:
    _check(lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags), "map update")


def map_lookup(fd: int, key: ctypes._CData, value: ctypes._CData) -> bool:
    """Fills value; False when the key is absent."""
    ret = lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value))
    if ret == -2:  # ENOENT
        return False
    _check(ret, "map lookup")
    return True


def map_delete(fd: int, key: ctypes._CData) -> bool:
    """False when the key was already absent."""
    ret = lib().bpf_map_delete_elem(fd, ctypes.byref(key))
    if ret == -2:
        return False
    _check(ret, "map delete")
    return True


def map_keys(fd: int, key_type: type) -> list:
    """All keys, by get_next_key (fine for the control plane's small tables)."""
    keys = []
    cur = None
    nxt = key_type()
    while True:
        ret = lib().bpf_map_get_next_key(fd, None if cur is None else ctypes.byref(cur), ctypes.byref(nxt))
        if ret == -2:
            return keys
        _check(ret, "map iterate")
        keys.append(nxt)
        cur, nxt = nxt, key_type()


def _wrap(t: type, item):
    """Indexing a ctypes array of a scalar type yields a Python int: make it a ctypes value again."""
    return t(item) if isinstance(item, int) else item


def map_lookup_batch(fd: int, key_type: type, value_type: type, chunk: int = 4096) -> list[tuple]:
    """Every (key, value) with BPF_MAP_LOOKUP_BATCH: a few syscalls for a whole table."""
    out: list[tuple] = []
    opts = MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts))
    in_batch = None
    out_batch = ctypes.c_uint64()
    while True:
        keys = (key_type * chunk)()
        values = (value_type * chunk)()
        count = ctypes.c_uint32(chunk)
        ret = lib().bpf_map_lookup_batch(
            fd,
            None if in_batch is None else ctypes.byref(in_batch),
            ctypes.byref(out_batch),
            keys,
            values,
            ctypes.byref(count),
            ctypes.byref(opts),
        )
        out.extend((_wrap(key_type, keys[i]), _wrap(value_type, values[i])) for i in range(count.value))
        if ret == -2:  # ENOENT: this was the last chunk
            return out
        _check(ret, "map batch lookup")
        in_batch = ctypes.c_uint64(out_batch.value)


def prog_info(fd: int) -> ProgInfo:
    info = ProgInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "prog info")
    return info


def map_info(fd: int) -> MapInfo:
    info = MapInfo()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), "map info")
    return info


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """A BPF link: the attachment lives exactly as long as an fd or a pin holds the link."""
    return _check(lib().bpf_link_create(prog_fd, target_fd, attach_type, None), "link create")


def prog_fd_by_id(prog_id: int) -> int:
    return _check(lib().bpf_prog_get_fd_by_id(prog_id), f"open prog id {prog_id}")


BPF_F_STRICT_ALIGNMENT = 1  # uapi bpf.h: prog_flags


def prog_load(prog_type: int, name: str, insns: bytes, prog_flags: int = 0, attach_type: int = 0) -> int:
    """BPF_PROG_LOAD of raw instructions (map references already resolved to fds, as bcc's
    BPF.dump_func() gives them); the fd of the loaded program. When the verifier refuses, the
    load is repeated with its log, whose last lines the OSError carries."""
    code = ctypes.create_string_buffer(insns, len(insns))
    log = None
    for log_level in (0, 1):
        opts = ProgLoadOpts(sz=ctypes.sizeof(ProgLoadOpts), prog_flags=prog_flags, expected_attach_type=attach_type)
        if log_level:
            log = ctypes.create_string_buffer(16 << 20)
            opts.log_level, opts.log_size, opts.log_buf = log_level, len(log), ctypes.cast(log, ctypes.c_void_p)
        fd = lib().bpf_prog_load(prog_type, name.encode(), b"GPL", code, len(insns) // 8, ctypes.byref(opts))
        if fd >= 0:
            return fd
    lines = log.value.decode(errors="replace").strip().splitlines() if log is not None else []
    raise OSError(-fd, f"load {name}: {os.strerror(-fd)}: {' / '.join(lines[-3:])}")


BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type (uapi bpf.h)


def enable_stats() -> int:
    """BPF_ENABLE_STATS: every program counts its run time and runs while the returned fd is
    open (like kernel.bpf_stats_enabled=1, but undone by closing it, even if the process dies)."""
    return _check(lib().bpf_enable_stats(BPF_STATS_RUN_TIME), "enable BPF run-time statistics")


def test_run(prog_fd: int, data: bytes, ctx: bytes | None = None, repeat: int = 1) -> tuple[int, bytes, int]:
    """BPF_PROG_TEST_RUN: (program return value, output frame, average ns per run)."""
    data_in = ctypes.create_string_buffer(data, len(data))
    out_size = max(len(data) + 256, 1514)
    data_out = ctypes.create_string_buffer(out_size)
    opts = TestRunOpts(
        sz=ctypes.sizeof(TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p),
        data_out=ctypes.cast(data_out, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=out_size,
        repeat=repeat,
    )
    if ctx is not None:
        ctx_in = ctypes.create_string_buffer(ctx, len(ctx))
        opts.ctx_in = ctypes.cast(ctx_in, ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)
    _check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "BPF_PROG_TEST_RUN")
    return opts.retval, data_out.raw[: opts.data_size_out], opts.duration
