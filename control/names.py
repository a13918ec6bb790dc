"""The names users give projects, networks, containers and aliases: what they may be.

Names become parts of interface, namespace, log and pin names, so they are kept to a
conservative, Docker-like alphabet. The project name prefixes every one of them, and Linux
interface names have at most 15 characters. Shared by both file formats (config.py,
compose.py) and by the command line (`down -p`).
"""
from __future__ import annotations

import re

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
NAME_RE = re.compile(NAME_PATTERN)
PROJECT_NAME_MAX = 12
NAME_MAX = 32  # containers and networks
ALIAS_MAX = 63  # one DNS label
PROJECT_NAME_WHY = " (it prefixes every interface, namespace and pin name)"


def name_problem(kind: str, value: str, max_len: int, why: str = "") -> str | None:
    """What is wrong with a name of `kind` (None: nothing)."""
    if not NAME_RE.fullmatch(value):
        return (f"invalid {kind} name {value!r}: use lowercase letters, digits, '_', '.' and '-', "
                f"starting with a letter or digit ({NAME_PATTERN})")
    if len(value) > max_len:
        return f"{kind} name {value!r} is too long: {len(value)} characters, at most {max_len}{why}"
    return None


def project_name_problem(value: str) -> str | None:
    return name_problem("project", value, PROJECT_NAME_MAX, PROJECT_NAME_WHY)
