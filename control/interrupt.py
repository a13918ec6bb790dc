"""SIGINT, SIGTERM and SIGHUP during `up` and `down`: finish or undo the step at hand, never
stop in the middle of one.

The default actions would kill the process between a kernel change and its record, leaving
objects no state file knows of (the next run's sweep removes them, but the run itself should
end clean). Inside `deferred()` a signal only marks the run as interrupted; `checkpoint()`,
called at the boundaries between steps (each journal entry), then raises Interrupted, and
`up`'s rollback undoes what was done -- with the signals still deferred, so that a second
Ctrl-C does not cut the rollback short. SIGKILL cannot be caught: the next run converges from
what a killed one left.
"""
from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A deferred signal, raised at a step boundary (BaseException, like KeyboardInterrupt:
    nothing that catches Exception may swallow it)."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_pending: int | None = None


def _note(signum: int, _frame) -> None:
    global _pending
    if _pending is None:
        _pending = signum


@contextlib.contextmanager
def deferred():
    """Signals received in the body are held until a checkpoint (or `pending()`)."""
    global _pending
    _pending = None
    previous = {s: signal.signal(s, _note) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def pending() -> int | None:
    return _pending


def checkpoint() -> None:
    if _pending is not None:
        raise Interrupted(_pending)
