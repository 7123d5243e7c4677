"""YAML the gateway reads (the config file, knowledge-base front matter), parsed safely
against alias bombs: a "billion laughs" document is a few lines whose aliases of aliases
expand to billions of values, and `a: &a [*a]` refers to itself. Both are refused as a
`yaml.MarkedYAMLError` at the line of the offending anchor, before anything walks the
expanded data; a few reused blocks (`<<: *defaults`) load as before."""

from __future__ import annotations

from typing import Any

import yaml

# Values (scalars, lists, mappings) the document may expand to with its aliases resolved;
# a large real config has a few ten thousand.
MAX_NODES = 200_000


class AliasBomb(yaml.MarkedYAMLError):
    """The document refers to itself, or its aliases expand beyond `MAX_NODES` values."""


def load(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node graph (for line numbers) and its data, as `yaml.safe_load`;
    raises `yaml.YAMLError` (an `AliasBomb` for the above)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _expanded_size(node, {}, set())
        return node, loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """How many values `node` stands for with aliases resolved. Each node is measured once
    (an alias is the same node object, remembered in `sizes`), so the check costs the
    length of the text, not of the expansion."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise AliasBomb(
            None, None, "an alias refers to the block it is in (recursive)", node.start_mark
        )
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, sizes, open_)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_) + _expanded_size(v, sizes, open_)
    if size > MAX_NODES:
        raise AliasBomb(
            None,
            None,
            f"aliases expand to more than {MAX_NODES} values (an alias bomb?)",
            node.start_mark,
        )
    open_.discard(key)
    sizes[key] = size
    return size
