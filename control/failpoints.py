"""Named failure points for testing rollback: set FASTNET_FAILPOINT=<name> and the step of
that name raises right after doing its work, as a real mid-way failure would."""
from __future__ import annotations

import os


class FailpointHit(RuntimeError):
    pass


def check(name: str) -> None:
    if os.environ.get("FASTNET_FAILPOINT") == name:
        raise FailpointHit(f"failpoint {name} hit")
