"""The README's tour works when pasted."""

from __future__ import annotations

import re
import shlex
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


def test_the_first_tour_block_pastes_into_an_interactive_shell() -> None:
    """Pasted at ``>>>``, a block inside a loop ends only at a blank line: without one, the
    next statement is a SyntaxError there (though the file runs)."""
    shell = subprocess.run(
        [sys.executable, "-i", "-q"],
        input=blocks("python")[0] + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Error" not in shell.stderr, shell.stderr
    assert "It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day." in shell.stdout


def test_make_run_takes_a_port_host_and_store() -> None:
    def serve_line(*args: str) -> str:
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "run", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return next(line for line in out.splitlines() if " serve " in line)

    assert serve_line().endswith(
        "serve --host 127.0.0.1 --port 8000 --store sqlite:///allowance.db"
    )
    changed = serve_line("PORT=8005", "HOST=0.0.0.0", "STORE=memory://")
    assert changed.endswith("serve --host 0.0.0.0 --port 8005 --store memory://")


def test_the_command_line_tour_runs(tmp_path: Path) -> None:
    (tour,) = [b for b in blocks("sh") if "allowance accounts set" in b]
    store = f"sqlite:///{tmp_path / 'tour.db'}"
    shown = []
    for line in tour.splitlines():
        words = shlex.split(line, comments=True)
        assert words[0] == ".venv/bin/allowance"
        words[0] = str(Path(sys.executable).parent / "allowance")
        words = [store if w == "sqlite:///allowance.db" else w for w in words]
        shown.append(subprocess.run(words, capture_output=True, text=True, check=True).stdout)
    assert "pro" in shown[1] and "3" in shown[1]
    assert "ai_exports" in shown[2] and "90" in shown[2]  # 30 per seat, 3 seats


def test_policy_file_in_the_readme_is_valid(tmp_path: Path) -> None:
    from allowance import parse_policy

    policy = parse_policy(blocks("yaml")[0])
    assert [p.name for p in policy.plans] == ["free", "pro"]


def test_curl_tour_works_in_a_shell(tmp_path: Path) -> None:
    """The bash block against a real ``allowance serve`` (its port instead of 8000)."""
    import os
    import shutil

    import pytest

    from service.service import Service

    if shutil.which("curl") is None or shutil.which("bash") is None:
        pytest.skip("no curl or bash")
    (tour,) = blocks("bash")
    service = Service.start(f"sqlite:///{tmp_path / 'allowance.db'}", tmp_path)
    try:
        env = {**os.environ, "ALLOWANCE_KEY": service.admin}
        script = tour.replace("http://127.0.0.1:8000", service.url)
        out = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        ).stdout
    finally:
        service.stop()
    assert (
        '{"id":"acme","plan":"free","seats":1,"overrides":{},"grants":[],"billing_anchor":null}'
        in out
    )
    assert out.count('"granted":1') == 2
    assert "HTTP/1.1 429" in out and "retry-after: 604800" in out.lower()
    assert 'ratelimit: "ai_exports";r=0;t=604800' in out.lower()
    usage = out.strip().splitlines()[-1]
    assert '"limit":"ai_exports"' in usage and '"used":2' in usage
