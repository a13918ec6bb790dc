"""`up` and `down` tell the agent's resolver that the projects changed, and wait until it has
reloaded, so that a container resolves the moment `up` returns (and a removed one no longer
does the moment `down` returns).

The agent reloads on SIGHUP; rt/dns.json (written by the agent after every reload) records
the mtime of each project state it read, which is how we know it saw ours.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from ..host import Host
from . import STATUS_FILE

RELOAD_WAIT = 2.0


def status(host: Host) -> dict | None:
    """The agent's rt/dns.json (the caller is in the agent's mount namespace)."""
    try:
        return json.loads((host.runtime / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def reload(host: Host, project: str) -> bool:
    """Signal the agent and wait (at most RELOAD_WAIT) until it serves the project as saved
    on disk (or, when its state file is gone, no longer serves it). False on timeout or when
    there is no agent; never raises: the agent's own poll catches up within seconds anyway."""
    agent = host.live_agent()
    if agent is None or status(host) is None:
        return False  # no agent, or one from before the resolver (SIGHUP would end it)
    state_file = host.projects_dir / f"{project}.json"
    try:
        want = state_file.stat().st_mtime_ns
    except FileNotFoundError:
        want = None
    try:
        os.kill(agent.pid, signal.SIGHUP)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + RELOAD_WAIT
    while time.monotonic() < deadline:
        current = status(host)
        if current is not None and current.get("states", {}).get(project) == want:
            return True
        time.sleep(0.005)
    return False


def container_counters(host: Host, netns: str) -> dict | None:
    with contextlib.suppress(AttributeError, TypeError):
        entry = (status(host) or {}).get("containers", {}).get(netns)
        if entry is not None:
            return {"serving": entry["serving"], "error": entry["error"], "forward": entry["forward"],
                    **entry["counters"]}
    return None
