"""Fixtures and the result matrix of the conformance suite.

Every test runs once per backend (`env` is parametrized over "ebpf" and "iptables", one topology
per backend for the whole module). A test states its observation through `record`:

    record.expect(observed)        # compares with EXPECT[case] (conformance.py) and records
                                   # "pass" or ("differs", documented text) for this backend

A test that fails is recorded as "fail"; an xfail (a fastnet bug) as "xfail: <reason>". At the end
the matrix is printed, written to results/conformance.json and, with FASTNET_WRITE_MATRIX=1, to
tests/conformance/MATRIX.md.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE))

from harness import FASTNET  # noqa: E402

BACKENDS = ("ebpf", "iptables")
RESULTS: dict[str, dict[str, object]] = {}
MEASURED: dict[str, dict[str, object]] = {}  # CONF_MEASURE=1: what each backend did, unchecked  # case -> backend -> "pass" | ("differs", text) | "fail" | "xfail: ..."


def _case_of(item) -> str:
    name = item.originalname if hasattr(item, "originalname") else item.name
    return name.removeprefix("test_")


def _backend_of(item) -> str | None:
    cs = getattr(item, "callspec", None)
    return cs.params.get("env") if cs else None


@pytest.fixture(scope="session", autouse=True)
def _fastnet_installed():
    if not FASTNET.exists():
        pytest.exit(f"{FASTNET} is missing", returncode=1)
    if os.geteuid() != 0:
        pytest.exit("the conformance suite needs root", returncode=1)


def _plain(value):
    """value as JSON would give it back (tuples as lists, keys as strings): comparable with EXPECT."""
    return json.loads(json.dumps(value, default=repr))


class Recorder:
    def __init__(self, case: str, backend: str):
        self.case, self.backend = case, backend

    def __call__(self, outcome) -> None:
        RESULTS.setdefault(self.case, {})[self.backend] = outcome

    def expect(self, observed, case: str | None = None):
        """Assert that `observed` is what EXPECT[case] says this backend does; record the result."""
        from conformance import EXPECT

        case = case or self.case
        observed = _plain(observed)
        if os.environ.get("CONF_MEASURE") == "1":
            MEASURED.setdefault(case, {})[self.backend] = observed
            self("measured")
            return observed
        spec = EXPECT[case]
        if isinstance(spec, dict) and set(spec) == set(BACKENDS):
            want, text = spec[self.backend]
            differs = True
        else:
            want, text, differs = spec, None, False
        want = _plain(want)
        assert observed == want, f"{case} [{self.backend}]: observed {observed!r}, expected {want!r}"
        if case == self.case:
            self(("differs", text) if differs and text else "pass")
        return observed


@pytest.fixture
def record(request):
    backend = _backend_of(request.node)
    assert backend in BACKENDS, "every conformance test must use the env fixture"
    return Recorder(_case_of(request.node), backend)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    backend = _backend_of(item)
    if backend is None or rep.when not in ("setup", "call"):
        return
    case = _case_of(item)
    if hasattr(rep, "wasxfail"):
        RESULTS.setdefault(case, {})[backend] = f"xfail (fastnet bug): {rep.wasxfail}"
    elif rep.failed:
        RESULTS.setdefault(case, {})[backend] = "fail"
    elif rep.when == "call" and rep.passed and backend not in RESULTS.get(case, {}):
        RESULTS.setdefault(case, {})[backend] = "pass"


def _cell(v) -> str:
    if v is None:
        return "not run"
    if isinstance(v, tuple):
        return f"differs as documented: {v[1]}"
    return str(v)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if MEASURED:
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / "measured.json").write_text(json.dumps(MEASURED, indent=1, sort_keys=True, default=repr) + "\n")
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("fastnet conformance matrix (case x backend)")
    rows = sorted(RESULTS)
    width = max(len(r) for r in rows)
    for case in rows:
        cells = [f"{b}: {_cell(RESULTS[case].get(b))}" for b in BACKENDS]
        tr.write_line(f"{case:<{width}}  " + " | ".join(cells))
    data = {case: {b: _cell(RESULTS[case].get(b)) for b in BACKENDS} for case in rows}
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "conformance.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tr.write_line(f"matrix written to {out / 'conformance.json'}")
    if os.environ.get("FASTNET_WRITE_MATRIX") == "1":
        lines = [
            "# fastnet conformance matrix",
            "",
            "Generated by `FASTNET_WRITE_MATRIX=1 .venv/bin/pytest tests/conformance`. One row per case,",
            "one column per backend: `pass` (same behaviour as the reference), `differs as documented`",
            "(an intended difference, with its explanation), `fail`, or `xfail (fastnet bug)`.",
            "",
            "| case | ebpf | iptables (Docker 28 reference) |",
            "|---|---|---|",
        ]
        for case in rows:
            cells = [_cell(RESULTS[case].get(b)).replace("|", "/") for b in BACKENDS]
            lines.append(f"| {case} | {cells[0]} | {cells[1]} |")
        (HERE / "MATRIX.md").write_text("\n".join(lines) + "\n")
        tr.write_line(f"matrix written to {HERE / 'MATRIX.md'}")


class _HostOwner:
    def __init__(self, tmp: Path):
        self.tmp, self.host = tmp, None

    def teardown(self) -> None:
        if self.host is not None:
            problems = self.host.teardown()
            if problems:
                pytest.fail("teardown found problems:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(scope="module", params=list(BACKENDS))
def env(request, tmp_path_factory):
    """The conformance topology (testbed.py) on a fresh HOST/WORLD pair, one per backend."""
    from harness import Host
    from testbed import build

    owner = _HostOwner(tmp_path_factory.mktemp(f"conf-{request.param}"))
    owner.host = Host.create(owner.tmp)
    try:
        yield build(owner.host, request.param)
    finally:
        owner.teardown()
