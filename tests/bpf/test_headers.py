"""Every header under bpf/ compiles on its own, with and without FN_TEST: it includes what it
uses, so no include order is load-bearing. Warnings are errors here, since a call to an
undeclared function is only a warning to this clang (an implicit declaration); the one
exception is -Wundefined-internal: the map accessors lib/map_access.h declares are defined
in fastnet.c (bcc rewrites map accesses only in its main file)."""
from __future__ import annotations

import pytest

from fastnet.datapath import abi

HEADERS = sorted(p.relative_to(abi.BPF_DIR).as_posix() for p in abi.BPF_DIR.rglob("*.h"))
CFLAGS = [f"-I{abi.BPF_DIR / 'include'}", f"-I{abi.BPF_DIR}", "-Werror", "-Wno-unused-function",
          "-Wno-undefined-internal"]


def compile_alone(text: str, test_build: bool) -> None:
    from bcc import BPF

    # bcc emits BTF only for an object with a program, and an SK_STORAGE map needs BTF to be
    # created: one trivial program that uses nothing of the header.
    source = f"{text}\nint fn_header_alone(void *ctx) {{ return 0; }}\n"
    bpf = BPF(text=source.encode(), cflags=CFLAGS + (["-DFN_TEST"] if test_build else []))
    bpf.cleanup()


def header_path(header: str) -> str:
    """As fastnet.c includes it: lib/ headers by "lib/x.h", the ABI headers by "fastnet/x.h"."""
    return header.removeprefix("include/")


# every header in the production build; those that mention FN_TEST in the test build too
BUILDS = [(h, False) for h in HEADERS] + [(h, True) for h in HEADERS if "FN_TEST" in (abi.BPF_DIR / h).read_text()]


@pytest.mark.parametrize("header, test_build", BUILDS, ids=[f"{h}{'-test' if t else ''}" for h, t in BUILDS])
def test_header_compiles_alone(header, test_build):
    compile_alone(f'#include "{header_path(header)}"', test_build)


def test_a_call_to_an_undeclared_function_fails():
    with pytest.raises(Exception, match="Failed to compile"):
        compile_alone("static inline int f(void) { return fn_nowhere(); }", False)
