"""Variable interpolation in Compose files, done as `docker compose` does it: before anything
else, in every string value, from the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .compose_keys import compose_error
from .source import KeyPath, SourceMap

# Compose's interpolation: $$ is a '$'; $VAR and ${VAR}; ${VAR:-default} / ${VAR-default}
# (unset or empty / unset); ${VAR:?error} / ${VAR?error}; ${VAR:+other} / ${VAR+other}.
_VARIABLE_RE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<plain>[_a-zA-Z][_a-zA-Z0-9]*)"
    r"|\{(?P<braced>[_a-zA-Z][_a-zA-Z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))"
)


def interpolate(data: Any, where: SourceMap, environ: Mapping[str, str]) -> tuple[Any, list[str]]:
    """``data`` with variables substituted in every string value (keys are left as written),
    and the names of the variables that were used but not set."""
    unset: list[str] = []

    def walk(node: Any, path: KeyPath) -> Any:
        if isinstance(node, dict):
            return {key: walk(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item, (*path, index)) for index, item in enumerate(node)]
        if isinstance(node, str) and "$" in node:
            return _VARIABLE_RE.sub(lambda match: substitute(match, node, path), node)
        return node

    def substitute(match: re.Match[str], text: str, path: KeyPath) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise compose_error(where, path, f"invalid interpolation in {text!r}: write '$$' for a literal '$'")
        name = match["plain"] or match["braced"]
        value = environ.get(name)
        op, arg = match["op"], match["arg"]
        empty_counts = op is not None and op.startswith(":")  # the ':' forms treat "" as unset
        missing = value is None or (empty_counts and value == "")
        if op in (":-", "-"):
            return arg if missing else value
        if op in (":?", "?"):
            if missing:
                raise compose_error(where, path, f"variable {name} is required: {arg or 'it is not set'}")
            return value
        if op in (":+", "+"):
            return "" if missing else arg
        if value is None:
            if name not in unset:
                unset.append(name)
            return ""
        return value

    return walk(data, ()), unset
