"""YAML values that remember the line they came from, and a loader that refuses duplicate keys.

Why: every platforms.yaml error must name `file:line` of the offending node, and PyYAML throws
the marks away when it constructs plain dicts and lists (it also keeps the last of two equal
keys without a word). This loader constructs mappings and sequences into `LocatedMap` and
`LocatedList`, which keep the composed nodes next to the values, so the validator can ask
"which line holds this key / this value / this item" and what the scalar looked like in the
source (for "quote it" hints). Merge keys (`<<: *base`) and anchors keep working.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_MERGE = "tag:yaml.org,2002:merge"


class YamlProblem(Exception):
    """A problem found while loading (duplicate key, unhashable key), with its 1-based line."""

    def __init__(self, message: str, line: int):
        self.message = message
        self.line = line
        super().__init__(message)


def line_of(node: Node) -> int:
    """1-based line where a node starts."""
    return node.start_mark.line + 1


class LocatedMap(dict):
    """A dict that remembers the key and value nodes of each entry and its own first line."""

    line: int
    nodes: dict[Any, tuple[Node, Node]]

    def key_line(self, key: Any) -> int:
        """Line of the key itself (where `unknown key` errors point)."""
        return line_of(self.nodes[key][0])

    def value_line(self, key: Any) -> int:
        """Line of the value (where `wrong type` errors point)."""
        return line_of(self.nodes[key][1])

    def raw_key(self, key: Any) -> str:
        """The key as written in the source (`on` for a key YAML read as True)."""
        node = self.nodes[key][0]
        return node.value if isinstance(node, ScalarNode) else repr(key)

    def raw(self, key: Any) -> str | None:
        """The value as written, when it is a scalar."""
        node = self.nodes[key][1]
        return node.value if isinstance(node, ScalarNode) else None


class LocatedList(list):
    """A list that remembers each item's node and its own first line."""

    line: int
    nodes: list[Node]

    def item_line(self, index: int) -> int:
        """Line of one item."""
        return line_of(self.nodes[index])

    def raw(self, index: int) -> str | None:
        """The item as written, when it is a scalar."""
        node = self.nodes[index]
        return node.value if isinstance(node, ScalarNode) else None


class LocatedLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry their nodes; duplicate keys are errors."""

    def construct_located_mapping(self, node: MappingNode) -> LocatedMap:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            _check_hashable(key, key_node)
            if key in first_line:
                raise YamlProblem(
                    f"duplicate key {_show(key_node, key)} (first on line {first_line[key]}; "
                    "YAML would silently keep only the last one)",
                    line_of(key_node),
                )
            first_line[key] = line_of(key_node)
        # Merged keys come first, the mapping's own keys after them: the own keys win.
        self.flatten_mapping(node)
        out = LocatedMap()
        out.line = line_of(node)
        out.nodes = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            _check_hashable(key, key_node)
            out[key] = self.construct_object(value_node, deep=True)
            out.nodes[key] = (key_node, value_node)
        return out

    def construct_located_sequence(self, node: SequenceNode) -> LocatedList:
        out = LocatedList(self.construct_object(child, deep=True) for child in node.value)
        out.line = line_of(node)
        out.nodes = list(node.value)
        return out


LocatedLoader.add_constructor("tag:yaml.org,2002:map", LocatedLoader.construct_located_mapping)
LocatedLoader.add_constructor("tag:yaml.org,2002:seq", LocatedLoader.construct_located_sequence)


def _check_hashable(key: Any, node: Node) -> None:
    try:
        hash(key)
    except TypeError:
        raise YamlProblem("a key must be a plain value, not a list or mapping", line_of(node)) from None


def _show(node: Node, key: Any) -> str:
    return repr(node.value) if isinstance(node, ScalarNode) else repr(key)


def parse(text: str) -> tuple[Any, int]:
    """Load one YAML document into located values; return it with the document's first line.

    Raises YamlProblem for our own checks and yaml.YAMLError for syntax errors (callers turn
    both into SpecError).
    """
    loader = LocatedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, 1
        return loader.construct_document(node), line_of(node)
    finally:
        loader.dispose()


def yaml_error_line(error: yaml.YAMLError, text: str) -> tuple[str, int]:
    """One-line message and 1-based line for a PyYAML error (its own line, not ours)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.context and message.startswith("but "):
            # "expected a single document in the stream" + "but found another document"
            message = f"{error.context}, {message}"
        elif error.context and error.context_mark and error.problem_mark:
            if error.context_mark.line != error.problem_mark.line:
                message += f" ({error.context} on line {error.context_mark.line + 1})"
            else:
                message += f" ({error.context})"
        return message, (mark.line + 1) if mark else 1
    if isinstance(error, yaml.reader.ReaderError):
        char = error.character if isinstance(error.character, int) else ord(error.character)
        line = text.count("\n", 0, max(error.position, 0)) + 1
        return f"unacceptable character #x{char:04x}: {error.reason}", line
    return (str(error).splitlines() or ["invalid YAML"])[0], 1
