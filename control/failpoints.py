"""Named failure points for testing rollback and interruption: with FASTNET_FAILPOINT=<name>,
the step of that name, right after doing its work, raises as a real mid-way failure would --
or, with FASTNET_FAILPOINT_ACTION=stop, stops the process (SIGSTOP) so that a test can kill it
at that very point."""
from __future__ import annotations

import os
import signal
from ..datapath.errors import FastnetError


class FailpointHit(FastnetError):
    pass


def check(name: str) -> None:
    if os.environ.get("FASTNET_FAILPOINT") != name:
        return
    if os.environ.get("FASTNET_FAILPOINT_ACTION") == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise FailpointHit(f"failpoint {name} hit")
