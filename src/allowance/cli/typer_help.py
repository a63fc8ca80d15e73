"""The one place that reaches into Typer's help rendering (its internals, not its API).

Typer 0.29 shows a flag's type as if it took a value (``--json <bool>``, ``--help <bool>``):
the user reads that ``--json true`` is expected, and a flag takes no value. A flag's type
column is left empty here; every other option keeps its hint (``--policy <path>``).
``tests/cli/test_help.py`` reads every command's ``--help`` and notices when this stops
working (or is no longer needed).
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

__all__ = ["hide_flag_types"]


def hide_flag_types() -> None:
    """Idempotent; a Typer without ``display_type_rich`` (before 0.29) needs nothing."""
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_allowance_hides_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._allowance_hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
