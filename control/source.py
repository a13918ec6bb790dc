"""The input layer under config.py and compose.py: YAML text read with the position of every
key and value, and the one-line error that points back into it.

Both file formats (fastnet's own and Compose's) are read here, then checked by their own
modules; neither of those imports the other's internals, and nothing here imports either.

    read_yaml(text, source) -> (plain data, SourceMap)   ruamel.yaml round trip, YAML 1.2
    SourceMap.error(path, problem)                         FILE:LINE:COL: key.path: problem
    describe(value)                                        "number 5", "a list", ... for messages
"""
from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ..datapath.errors import FastnetError


class ConfigError(FastnetError):
    """A problem in a project file, located as precisely as the YAML allows.

    ``line`` and ``col`` are 1-based (``None`` when the file could not be read
    at all); ``path`` is the dotted key path (empty for problems of the file as
    a whole). ``str()`` gives the single line shown to users.
    """

    def __init__(self, source: str, line: int | None, col: int | None, path: str, problem: str):
        super().__init__(source, line, col, path, problem)
        self.source = source
        self.line = line
        self.col = col
        self.path = path
        self.problem = " ".join(problem.splitlines())

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.problem}" if self.path else f"{where}: {self.problem}"


# --------------------------------------------------------------------------

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]  # 0-based line, column as ruamel reports them


class SourceMap:
    """Where each key path of the document sits in the file.

    Keys and values are recorded separately: errors about a value point at
    the value, errors about a whole mapping point at the key that holds it.
    Paths without a recorded position (e.g. keys pulled in by a YAML merge)
    fall back to the nearest enclosing key.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._keys: dict[KeyPath, Pos] = {}
        self._values: dict[KeyPath, Pos] = {}

    def add(self, path: KeyPath, *, key: Pos | None = None, value: Pos | None = None) -> None:
        if key is not None:
            self._keys[path] = key
        if value is not None:
            self._values[path] = value

    def locate(self, path: KeyPath, *, key: bool = False) -> Pos:
        while True:
            if key and path in self._keys:
                return self._keys[path]
            if path in self._values:
                return self._values[path]
            if path in self._keys:
                return self._keys[path]
            if not path:
                return (0, 0)
            path, key = path[:-1], True

    def error(self, path: KeyPath, problem: str, *, at: KeyPath | None = None, key: bool = False) -> ConfigError:
        """Build the error for ``path``, positioned at ``at`` (default: ``path`` itself)."""
        line, col = self.locate(path if at is None else at, key=key)
        return ConfigError(self.source, line + 1, col + 1, dotted(path), problem)


def dotted(path: KeyPath) -> str:
    """Render a key path for messages; list indices are left out (the position names the item)."""
    return ".".join(part if part.isprintable() else repr(part) for part in path if isinstance(part, str))


def read_yaml(text: str, source: str) -> tuple[dict[str, Any], SourceMap]:
    yaml = YAML()  # round-trip loader: YAML 1.2 with line/column info
    try:
        root = yaml.load(text)
    except DuplicateKeyError as exc:
        raise _duplicate_key_error(text, exc, source) from None
    except MarkedYAMLError as exc:
        raise _syntax_error(exc, source) from None
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position)
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        problem = f"YAML syntax error: character U+{exc.character:04X} is not allowed"
        raise ConfigError(source, line + 1, col + 1, "", problem) from None

    if root is None:
        problem = "the file is empty; expected a mapping with 'networks' and 'containers'"
        raise ConfigError(source, 1, 1, "", problem)
    if not isinstance(root, CommentedMap):
        line, col = (root.lc.line, root.lc.col) if isinstance(root, CommentedSeq) else (0, 0)
        problem = f"the top level must be a mapping of settings, got {describe(root)}"
        raise ConfigError(source, line + 1, col + 1, "", problem)
    where = SourceMap(source)
    where.add((), value=(root.lc.line, root.lc.col))
    return _plain(root, (), where), where


def _plain(node: Any, path: KeyPath, where: SourceMap) -> Any:
    """Copy the ruamel tree into builtin types, recording positions on the way.

    Builtin types keep the pydantic models strict and simple (ruamel's
    ScalarInt, ScalarFloat and string subclasses carry formatting only).
    """
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            pos = (node.lc.data or {}).get(key)
            key_pos = (pos[0], pos[1]) if pos else None
            if not isinstance(key, str):
                where.add((*path, key), key=key_pos)
                problem = f"keys must be strings, got {describe(key)}; put the key in quotes"
                raise where.error(path, problem, at=(*path, key), key=True)
            # A null value has no token of its own: ruamel reports wherever the
            # next token starts, so such values are located by their key.
            value_pos = (pos[2], pos[3]) if pos and value is not None else None
            where.add((*path, key), key=key_pos, value=value_pos)
            out[key] = _plain(value, (*path, key), where)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            pos = (node.lc.data or {}).get(index)
            where.add((*path, index), value=(pos[0], pos[1]) if pos else None)
            items.append(_plain(item, (*path, index), where))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node  # dates, tagged scalars: rejected by the schema with their type named


def _syntax_error(exc: MarkedYAMLError, source: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line, mark.column) if mark else (0, 0)
    problem = f"YAML syntax error: {exc.problem or exc.context}"
    context = exc.context_mark
    if exc.problem and exc.context and context:
        problem += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
    return ConfigError(source, line + 1, col + 1, "", problem)


def _duplicate_key_error(text: str, exc: DuplicateKeyError, source: str) -> ConfigError:
    """Name the duplicated key by its full path, found in the composed node tree.

    ruamel only reports the mark of the second occurrence; composing the
    document (which does not check for duplicates) gives the path to it.
    """
    mark = exc.problem_mark
    found = _find_key_node(YAML().compose(text), (mark.line, mark.column), (), set())
    if found is None:  # not expected; still report the position ruamel gave
        return ConfigError(source, mark.line + 1, mark.column + 1, "", "duplicate key")
    path, first_line = found
    return ConfigError(
        source, mark.line + 1, mark.column + 1, dotted(path),
        f"duplicate key {path[-1]!r} (first defined on line {first_line + 1})",
    )


def _find_key_node(
    node: Node, mark: Pos, path: tuple[str, ...], seen: set[int]
) -> tuple[tuple[str, ...], int] | None:
    """Find the key node starting at ``mark``: its path and the line of the key's first occurrence."""
    if id(node) in seen:  # a recursive alias
        return None
    seen.add(id(node))
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, ScalarNode) else "?"
            if (key_node.start_mark.line, key_node.start_mark.column) == mark:
                same = (k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == name)
                first = next(same, key_node)
                return (*path, name), first.start_mark.line
            found = _find_key_node(value_node, mark, (*path, name), seen)
            if found:
                return found
    elif isinstance(node, SequenceNode):
        for item in node.value:
            found = _find_key_node(item, mark, path, seen)
            if found:
                return found
    return None


def describe(value: Any) -> str:
    """Name a YAML value for an error message ("number 5", "a list", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value}"
