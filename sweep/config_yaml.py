"""Reading a config file's YAML: safe, strict and bounded, with one-line errors that say where.

Strict: a key given twice in one mapping is refused (PyYAML keeps the last one silently, so an
edit to the first copy would change nothing). Bounded: a config is a few hundred values, so
the file's size, its nesting depth and its number of values once aliases are expanded are
capped; past them PyYAML recurses out of the stack (deep nesting), and an alias bomb (a few
lines that expand to millions of values) makes every later copy, repr or dump of the config
blow up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from sweep.errors import ConfigError, echo

MAX_CONFIG_BYTES = 1_000_000
MAX_DEPTH = 50  # levels of nested mappings and lists (the shipped configs use 4)
MAX_NODES = 100_000  # keys and values, counting every alias as the copy it stands for
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A config that parses but is not acceptable; the message says why and where."""


def _line(node_or_mark: Any) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_DEPTH."""

    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        # The composer recurses once per level: bounded here, before Python's stack is.
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(
                    f"nested more than {MAX_DEPTH} levels deep at line {_line(self.peek_event())}"
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *base` may override merged keys: that is what it is for
            key = self.construct_object(key_node, deep=True)
            try:
                first = first_seen.get(key)
            except TypeError:
                continue  # an unhashable key: PyYAML's own error says so below
            if first is not None:
                raise _Refused(
                    f"duplicate key {echo(key)} at line {_line(key_node)} (first at line "
                    f"{first}): give each key once"
                )
            first_seen[key] = _line(key_node)
        return super().construct_mapping(node, deep=deep)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _check_expanded_size(root: Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES values or MAX_DEPTH levels, or
    refer to themselves. Each node is measured once (an alias reuses its anchor's figures),
    so an alias bomb costs its lines, not its expansion."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) it stands for
    open_nodes: set[int] = set()  # being measured: an alias to one of these is a cycle

    def too_deep(node: Node) -> _Refused:
        return _Refused(
            f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded "
            f"(line {_line(node)})"
        )

    def measure(node: Node, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        if known is not None:
            if depth + known[1] - 1 > MAX_DEPTH:
                raise too_deep(node)
            return known
        if depth > MAX_DEPTH:
            raise too_deep(node)
        if id(node) in open_nodes:
            raise _Refused(f"the value at line {_line(node)} holds an alias of itself")
        open_nodes.add(id(node))
        values, levels = 1, 1
        for child in _children(node):
            child_values, child_levels = measure(child, depth + 1)
            values += child_values
            levels = max(levels, child_levels + 1)
            if values > MAX_NODES:
                raise _Refused(
                    f"holds more than {MAX_NODES:,} values once its aliases are expanded "
                    f"(line {_line(node)}); a config has a few hundred"
                )
        open_nodes.discard(id(node))
        measured[id(node)] = (values, levels)
        return values, levels

    measure(root, 1)


def parse_config_text(text: str, name: str) -> Any:
    """The value of one YAML document, or ConfigError naming `name` and a line."""
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_expanded_size(root)
        return loader.construct_document(root)
    except _Refused as refused:
        raise ConfigError(f"{name}: {refused}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, source: str | None = None) -> dict[str, Any]:
    """A YAML mapping from a file, or ConfigError with a one-line reason. `source` names the
    file in messages (default: the path), for a copy the user never saw."""
    path = Path(path)
    name = source or str(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {name}")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{name}: {size:,} bytes is not a config (at most {MAX_CONFIG_BYTES:,} bytes)"
            )
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{name}: not a YAML text file (not UTF-8: byte {error.object[error.start]:#04x} "
            f"at offset {error.start})"
        ) from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {name}: {error.strerror or error}") from None
    raw = parse_config_text(text, name)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: the top level must be a mapping of keys, not a list or value")
    return raw
