"""How fastnet starts processes: never with anything of the caller's but the arguments.

fastnet runs as root, often from a directory other users can write to (a shared checkout,
/tmp) and with whatever environment the caller has. A Python started with `-m` puts its
working directory first on sys.path, so a planted `asyncio.py` there would run as root inside
the long-lived agent; PYTHONPATH, PYTHONSTARTUP or a `sitecustomize` on a caller's path would do
the same, and tools honour variables of their own (XTABLES_LIBDIR loads iptables extensions).
So every process fastnet starts -- the keeper and agent, the commands of containers, the tools
of the bench and of the reference backend -- gets:

- for Python, `-I` (isolated mode: no PYTHON* variables, no user site-packages, neither the
  script's nor the working directory on sys.path): it imports only the installed package and
  its dependencies;
- the working directory `/`;
- a fixed minimal environment (PATH, LANG), plus what the caller of these functions names.

The `fastnet` command itself is the caller's own process: it is a console script, whose
sys.path starts at its own directory, not the working directory.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Sequence

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WORKDIR = "/"


def environment(**extra: str) -> dict[str, str]:
    """The whole environment of a process fastnet starts."""
    return {"PATH": SAFE_PATH, "LANG": "C.UTF-8", **extra}


def python(module: str, *args: str) -> list[str]:
    """argv running one of fastnet's modules in this interpreter, isolated."""
    return [sys.executable, "-I", "-m", module, *map(str, args)]


def which(name: str) -> str | None:
    """Where the tool `name` is, looked up in SAFE_PATH (not the caller's PATH)."""
    return shutil.which(name, path=SAFE_PATH)


def run(argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run with fastnet's working directory and environment."""
    return subprocess.run([str(a) for a in argv], cwd=WORKDIR, env=env or environment(), **kwargs)


def popen(argv: Sequence[str], *, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """subprocess.Popen with fastnet's working directory and environment."""
    return subprocess.Popen([str(a) for a in argv], cwd=WORKDIR, env=env or environment(), **kwargs)
