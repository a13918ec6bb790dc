"""docs/layout.md names every file of bpf/, datapath/ and control/, and nothing that is gone."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files", "bpf", "datapath", "control"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return {line for line in out.splitlines() if "__pycache__" not in line}


def test_the_layout_map_names_every_file():
    named = set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "layout.md").read_text(), re.M))
    files = tracked()
    assert not files - named, f"files docs/layout.md does not name: {sorted(files - named)}"
    assert not named - files, f"docs/layout.md names files that are gone: {sorted(named - files)}"
