"""Helpers shared by the conformance tests."""

from __future__ import annotations


class Keys:
    """Idempotency keys when the transaction path is asked for (None: the kernel's)."""

    def __init__(self, keyed: bool) -> None:
        self.keyed, self.n = keyed, 0

    def __call__(self) -> str | None:
        self.n += 1
        return f"k{self.n}" if self.keyed else None
