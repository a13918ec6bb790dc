"""The `fastnet-cni` executable: one CNI call in, one result or error object out.

The runtime sets CNI_COMMAND (ADD, DEL, CHECK, VERSION, GC, STATUS), CNI_CONTAINERID,
CNI_NETNS, CNI_IFNAME, CNI_ARGS and CNI_PATH, and pipes the network configuration to stdin.
Success: ADD prints its result, VERSION the versions, the others nothing; exit status 0.
Failure: the spec's error object ({"cniVersion", "code", "msg", "details"}) on stdout, exit
status 1; the message is one line naming the problem. Nothing is written to stderr but a
traceback for a bug (which is also reported as an error object).
"""
from __future__ import annotations

import json
import os
import sys
import traceback

from .config import call_from, parse, version_of
from .spec import FAILED, LATEST, SUPPORTED_VERSIONS, CniError, version_info


def run(env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """(exit status, stdout) of one call."""
    version = version_of(stdin)
    reply_version = version if version in SUPPORTED_VERSIONS else LATEST
    try:
        call = call_from(env)
        if call.command == "VERSION":
            return 0, json.dumps(version_info(version))
        conf = parse(stdin, call.command)
        from . import attach  # the control plane: pyroute2 and the engine, not needed for VERSION

        if call.command == "ADD":
            return 0, json.dumps(attach.add(conf, call, env))
        {"DEL": attach.delete, "CHECK": attach.check, "GC": attach.gc, "STATUS": attach.status}[call.command](
            conf, call, env)
        return 0, ""
    except CniError as exc:
        return 1, exc.to_json(reply_version)
    except Exception as exc:  # a bug: still the spec's error object, and the trace for the log
        traceback.print_exc(file=sys.stderr)
        return 1, CniError(FAILED, f"internal error: {type(exc).__name__}: {exc}").to_json(reply_version)


def main() -> None:
    status, out = run(dict(os.environ), sys.stdin.buffer.read())
    if out:
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    main()
