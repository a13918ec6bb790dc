"""The one check of a rejected config, shared by fastnet's own format and Compose files: one
line, naming the file, line, column and key path, with the given fragments in its message."""
from __future__ import annotations

import textwrap

import pytest

from fastnet.control.config import ConfigError, parse_config


def rejects(text: str, source: str, line: int, col: int, path: str, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source)
    err = info.value
    message = str(err)
    assert "\n" not in message
    assert (err.line, err.col, err.path) == (line, col, path), message
    prefix = f"{source}:{line}:{col}: " + (f"{path}: " if path else "")
    assert message.startswith(prefix), message
    for fragment in fragments:
        assert fragment in message, message
    return err
