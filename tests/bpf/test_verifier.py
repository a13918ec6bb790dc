"""The verifier's budget: how much of its 1,000,000-instruction walk each program takes.

A program over the limit does not load at all ("Argument list too long"), and the walk grows
with every path a change adds, several times faster than the program's size: merging two
features, each well under the limit alone, once took fn_from_container from 0.79 M to over
1 M. So every program must keep a margin, and a change that eats it fails here, where the fix
(a tail call for a loop, work done once after a search instead of inside it) is still cheap,
not at `up` on a user's host. Both builds are checked: the test build (FN_TEST) walks its own
seams, the production build is what users load.
"""
from __future__ import annotations

import pytest

from fastnet.datapath import libbpf
from fastnet.datapath.loader import compile_datapath

VERIFIER_LIMIT = 1_000_000  # BPF_COMPLEXITY_LIMIT_INSNS (kernel/bpf/verifier.c)
MARGIN = 0.75  # of the limit, the most one program may take


@pytest.fixture(scope="module")
def production_build():
    _, dp = compile_datapath()
    yield dp
    dp.close()


def walked(dp) -> dict[str, int]:
    return {name: libbpf.prog_info(fd).verified_insns for name, fd in dp.progs.items()}


@pytest.mark.parametrize("build", ["test", "production"])
def test_every_program_keeps_a_margin_under_the_verifier_limit(request, build):
    dp = request.getfixturevalue("test_datapath").dp if build == "test" else request.getfixturevalue("production_build")
    counts = walked(dp)
    assert all(n > 0 for n in counts.values()), f"the kernel reported no verifier count: {counts}"
    over = {name: n for name, n in counts.items() if n > MARGIN * VERIFIER_LIMIT}
    assert not over, (f"{build} build: programs over {MARGIN:.0%} of the verifier's {VERIFIER_LIMIT:,} "
                      f"instructions: {over}; move a loop into a tail call (fn_tails) or out of the paths that "
                      "multiply it")
