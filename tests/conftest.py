"""Shared pytest setup. Tests under tests/bpf and tests/integration need root and bcc; they
fail (not skip) without them, because a skipped datapath test would hide a broken setup."""
from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if "/tests/bpf/" in path or "/tests/integration/" in path:
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session", autouse=True)
def _require_root_for_kernel_tests(request):
    needs_root = any("/tests/bpf/" in str(i.fspath) or "/tests/integration/" in str(i.fspath) for i in request.session.items)
    if needs_root and os.geteuid() != 0:
        pytest.exit("tests/bpf and tests/integration need root (run scripts/test.sh as root)", returncode=1)
