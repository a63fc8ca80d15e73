"""Plain-text tables for the benchmark scripts: aligned columns, a blank line between groups."""

from __future__ import annotations

from collections.abc import Sequence


def aligned(
    header: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    right: set[int],
    groups: Sequence[object],
) -> str:
    """``rows`` under ``header``; columns in ``right`` flush right; a blank line wherever
    ``groups`` (one key per row) changes."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for i, row in enumerate(rows):
        if i and groups[i] != groups[i - 1]:
            out.append("")
        out.append(line(row))
    return "\n".join(out)
