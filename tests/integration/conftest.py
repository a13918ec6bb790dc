"""Fixtures of the integration suite: fresh test hosts (see harness.Host) that are torn down
with `fastnet down` and checked for leftovers.

    host         a fresh HOST/WORLD pair for one test
    make_host    a factory, for tests that need several hosts at once
    module_host  one pair shared by a whole module (for read-mostly tests on one topology)
    underlay     hosts on one underlay segment with etcd (underlay.Underlay), for overlay networks
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import FASTNET, Host  # noqa: E402
from underlay import Underlay  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _fastnet_installed():
    if not FASTNET.exists():
        pytest.exit(f"{FASTNET} is missing: install fastnet into the interpreter running pytest", returncode=1)


class _Hosts:
    def __init__(self, tmp: Path):
        self.tmp, self.hosts = tmp, []

    def __call__(self) -> Host:
        h = Host.create(self.tmp / f"host{len(self.hosts)}")
        self.hosts.append(h)
        return h

    def teardown(self) -> None:
        problems = []
        for h in reversed(self.hosts):
            problems += [f"{h.name}: {p}" for p in h.teardown()]
        if problems:
            pytest.fail("teardown found problems:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def make_host(tmp_path):
    hosts = _Hosts(tmp_path)
    yield hosts
    hosts.teardown()


@pytest.fixture
def host(make_host) -> Host:
    return make_host()


@pytest.fixture(scope="module")
def module_host(tmp_path_factory):
    hosts = _Hosts(tmp_path_factory.mktemp("module"))
    yield hosts()
    hosts.teardown()


@pytest.fixture
def underlay(tmp_path):
    u = Underlay(tmp_path)
    try:
        yield u
    finally:
        problems = u.teardown()
        if problems:
            pytest.fail("teardown found problems:\n  " + "\n  ".join(problems), pytrace=False)
