"""The README's tour works when pasted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_python_tour_prints_the_seed_answer() -> None:
    first, second = blocks("python")[:2]
    out = subprocess.run(
        [sys.executable, "-c", first + second], capture_output=True, text=True, check=True
    ).stdout
    assert "False transform_daily 2026-11-24 15:10:00+00:00 max" in out
    assert "It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day." in out


def test_policy_file_in_the_readme_is_valid(tmp_path: Path) -> None:
    from allowance import parse_policy

    policy = parse_policy(blocks("yaml")[0])
    assert [p.name for p in policy.plans] == ["free", "pro"]
