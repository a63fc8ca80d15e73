"""YAML reading that remembers where every value came from, for error messages with lines.

PyYAML's composer gives nodes with marks; we build plain Python data from them and a map from
each value's path (a tuple of keys and indexes) to its line and, for mapping values, the line of
the key. Duplicate keys, which PyYAML silently overwrites, are reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

try:  # the C loader when libyaml is there; the marks are the same
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader


@dataclass
class SourceMap:
    """Lines (1-based) of values and of mapping keys, by path."""

    value_lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path, *, key: bool = False) -> int | None:
        """The line of ``path``'s value (or key), else of its nearest ancestor that has one."""
        if key and path in self.key_lines:
            return self.key_lines[path]
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if key and prefix in self.key_lines:
                return self.key_lines[prefix]
            if prefix in self.value_lines:
                return self.value_lines[prefix]
        return None


class YamlSyntaxError(Exception):
    """The text is not YAML we can read; ``line`` is where it broke."""

    def __init__(self, message: str, line: int | None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


def load_with_lines(text: str) -> tuple[Any, SourceMap, list[tuple[Path, str]]]:
    """Parse ``text``; return the data, its source map and (path, message) for duplicate keys."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlSyntaxError(f"not valid YAML: {exc.problem or exc}", line) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"not valid YAML: {exc}", None) from exc
    smap = SourceMap()
    dupes: list[tuple[Path, str]] = []
    if node is None:
        return None, smap, dupes
    constructor = yaml.SafeLoader("")  # only its scalar resolution is used

    def build(n: yaml.Node, path: Path) -> Any:
        smap.value_lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    key = str(key)
                child = (*path, key)
                if key in out:
                    dupes.append((child, f"duplicate key {key!r}"))
                smap.key_lines[child] = key_node.start_mark.line + 1
                out[key] = build(value_node, child)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, (*path, i)) for i, item in enumerate(n.value)]
        try:
            return constructor.construct_object(n, deep=True)
        except (ValueError, yaml.YAMLError) as exc:  # e.g. a date like 2026-02-30
            raise YamlSyntaxError(
                f"cannot read value {n.value!r}: {exc}", n.start_mark.line + 1
            ) from None

    return build(node, ()), smap, dupes
