"""A delegated `ipam` plugin (e.g. the distribution's host-local), run as the spec says: found by
its type in CNI_PATH, the same environment with its own CNI_COMMAND, the whole network
configuration on stdin, its result or error object on stdout."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .config import Call
from .spec import IO_FAILURE, IPAM_FAILED, LATEST, CniError

TIMEOUT = 30.0
# The newest version each delegate is asked in: plugins built for spec 1.0.0 (the
# distribution's containernetworking-plugins 1.1) refuse 1.1.0, whose IPAM is the same.
DELEGATE_MAX_VERSION = "1.0.0"


def find(plugin: str, path: tuple[str, ...]) -> Path:
    if "/" in plugin or not plugin:
        raise CniError(IPAM_FAILED, f"ipam.type {plugin!r} is not a plugin name")
    for d in path:
        candidate = Path(d) / plugin
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(IPAM_FAILED, f"ipam plugin {plugin!r} was not found in CNI_PATH ({':'.join(path)})")


def run(command: str, call: Call, raw: dict, env: dict[str, str]) -> dict | None:
    """Run the delegate; its result (ADD) or None. CniError carries the delegate's own error."""
    plugin = find(raw["ipam"]["type"], call.path)
    conf = dict(raw)
    if conf.get("cniVersion") == LATEST:
        conf["cniVersion"] = DELEGATE_MAX_VERSION
    child_env = {**env, "CNI_COMMAND": command}
    try:
        cp = subprocess.run([str(plugin)], input=json.dumps(conf).encode(), capture_output=True, env=child_env,
                            timeout=TIMEOUT, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(IO_FAILURE, f"ipam plugin {plugin.name}: {exc}") from None
    out = cp.stdout.decode(errors="replace").strip()
    if cp.returncode != 0:
        try:
            err = json.loads(out)
            msg = err.get("msg") or out
            details = err.get("details", "")
        except (ValueError, AttributeError):
            msg, details = out or cp.stderr.decode(errors="replace").strip() or f"exit status {cp.returncode}", ""
        raise CniError(IPAM_FAILED, f"ipam plugin {plugin.name} ({command}): {msg}", details)
    if command != "ADD":
        return None
    try:
        return json.loads(out)
    except ValueError:
        raise CniError(IPAM_FAILED, f"ipam plugin {plugin.name} printed no JSON result") from None
