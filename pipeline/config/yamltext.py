"""YAML that sensweep reads from files a user wrote (study files) or that a file carries (a
dataset's ``config`` attr), read with limits: valid UTF-8, a bounded size, no duplicate keys
(YAML keeps the last one silently), no alias expansion beyond a bound (an alias bomb would hang
Hydra or exhaust memory). Any violation is a :class:`~pipeline.errors.ConfigError` naming where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

MAX_BYTES = 2**20
"""A study file or config attr larger than this is refused (the largest built-in study is under 2 KB)."""

MAX_NODES = 100_000
"""Values after aliases are expanded: a YAML document standing for more is refused."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (shared nodes counted each time)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle (an alias inside itself) counts once
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = min(size, MAX_NODES + 1)
    return memo[id(node)]


def load(text: str | bytes, where: str) -> Any:
    """The YAML document ``text`` (from ``where``: a file or an attr, for messages), within the limits above."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"invalid {where}: {len(text)} bytes, more than the {MAX_BYTES} a YAML config may have")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            line = text[: err.start].count(b"\n") + 1
            raise ConfigError(
                f"invalid {where}: not UTF-8 text (byte {err.start}, line {line}); save it as UTF-8"
            ) from err
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        if node is not None and _expanded_size(node, {}) > MAX_NODES:
            raise ConfigError(
                f"invalid {where}: its aliases expand to more than {MAX_NODES} values; write the values out"
            )
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"invalid {where}: malformed YAML{at} ({problem})") from err


def load_file(path: Path, what: str = "file") -> Any:
    """:func:`load` of a file, named ``<what> <path>`` in messages."""
    return load(path.read_bytes(), f"{what} {path}")
