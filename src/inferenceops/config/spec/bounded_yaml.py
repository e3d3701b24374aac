"""The platform file's YAML parsed once, with bounds: nesting depth, values once aliases are
expanded, alias cycles, and NUL characters.

A platform file comes from an operator's disk or the admin API's ``/apply``; these bounds keep a
hostile or broken document from exhausting the stack or memory before any validation. Returns
the node tree too, so the package can name a problem's line (``_line_of``). No I/O.
"""

from __future__ import annotations

from typing import Any

import yaml

#: A platform file nests about six levels. PyYAML composes recursively, so without a bound a
#: few kilobytes of ``[[[[…`` exhaust Python's stack (RecursionError) before any validation.
MAX_YAML_DEPTH = 64
#: Values once aliases are expanded. ``*alias`` costs nothing to parse but validation walks
#: every use: nine anchors each listing the previous one nine times is 9**9 values.
MAX_YAML_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses to nest deeper than ``MAX_YAML_DEPTH`` (a ``ComposerError``)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                self.peek_event().start_mark)  # type: ignore[no-untyped-call]
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """(the document's node tree, for line numbers; its data), parsed once, bounded.

    ``yaml.YAMLError`` (with the line) for invalid YAML, for a document nested deeper than
    ``MAX_YAML_DEPTH`` or larger than ``MAX_YAML_NODES`` values once its aliases are expanded,
    and for a NUL character (a ``"\\0"`` escape) in a value: no name, URL or path has a use for
    one, and PostgreSQL cannot store it.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_nodes(node)
        return node, loader.construct_document(node)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_nodes(root: yaml.Node) -> None:
    """Refuse a NUL in a value, and a node graph that aliases expand past the bounds or into a
    cycle. Iterative depth-first walk, each node measured once (an alias is the node it names).
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            below = [measured[id(child)] for child in _children(node)]
            values, depth = 1 + sum(v for v, _ in below), 1 + max((d for _, d in below), default=0)
            if values > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"its aliases expand to more than {MAX_YAML_NODES} values or "
                    f"{MAX_YAML_DEPTH} levels", node.start_mark)
            measured[key] = (values, depth)
            on_path.discard(key)
            continue
        if key in measured:
            continue
        if key in on_path:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a node that "
                                              "contains it", node.start_mark)
        if isinstance(node, yaml.ScalarNode) and "\x00" in node.value:
            raise yaml.composer.ComposerError(None, None, "a NUL character (\\0) in a value",
                                              node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node))
