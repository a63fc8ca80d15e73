"""``pip install allowance`` alone, into a fresh venv: no driver nor server comes with it, and
the library, the local stores and the CLI work there; ``allowance serve`` names its extra.

Slow (a venv and a wheel build, ~30 s; pip's cache makes the downloads one-off), and part of
``make test``: it is the only test that sees the package as a user installs it (a wheel, its
package data, its declared dependencies) rather than as the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_extras import EXTRA_MODULES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).parents[1]


# without the PYTHONPATH the suite runs under (it names the source tree): the venv's own
# site-packages only
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def run(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with ``pip install .`` (today's pins from constraints.txt, for reproducibility)."""
    home = tmp_path_factory.mktemp("base-install")
    source = home / "source"  # a copy: the build writes build/ and *.egg-info beside it
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    made = run(sys.executable, "-m", "venv", home / "venv", cwd=home)
    assert made.returncode == 0, made.stderr
    pip = home / "venv" / "bin" / "pip"
    install = (pip, "install", "--quiet", "-c", ROOT / "constraints.txt", source)
    done = run(*install, cwd=home, timeout=420)
    assert done.returncode == 0, done.stdout + done.stderr
    return home / "venv"


def test_no_extra_is_installed(venv: Path) -> None:
    done = run(
        venv / "bin" / "python",
        "-c",
        "import importlib.util as u\n"
        f"print([m for m in {EXTRA_MODULES!r} if u.find_spec(m) is not None])",
        cwd=venv,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_library_and_the_cli_work(venv: Path, tmp_path: Path) -> None:
    decided = run(
        venv / "bin" / "python",
        "-c",
        "from allowance import Limiter\n"
        f"for store in ('memory://', 'sqlite:///{tmp_path}/a.db'):\n"
        "    with Limiter(store=store) as lim:\n"
        "        lim.set_account('acme', plan='pro')\n"
        "        print(lim.consume('acme', 'export.ai', 5).remaining)\n",
        cwd=tmp_path,
    )
    assert decided.returncode == 0, decided.stderr
    assert decided.stdout.split() == ["25", "25"]
    found = run(
        venv / "bin" / "python",
        "-c",
        "import allowance, pathlib; print(pathlib.Path(allowance.__file__).parent)",
        cwd=tmp_path,
    )
    installed = Path(found.stdout.strip())
    assert installed.is_relative_to(venv)  # the wheel's copy, not the source tree
    for data in (
        "builtin.yaml",
        "seed-example.yaml",  # allowance demo
        "py.typed",
        "stores/lua",
        "stores/sql",
        "http/dashboard/index.html",
        "http/dashboard/app.js",
        "http/dashboard/app.css",
    ):
        assert (installed / data).exists(), f"{data} is not in the wheel"
    checked = run(
        venv / "bin" / "allowance", "policy", "check", installed / "builtin.yaml", cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_serve_names_the_server_extra(venv: Path, tmp_path: Path) -> None:
    served = run(venv / "bin" / "allowance", "serve", "--store", "memory://", cwd=tmp_path)
    assert served.returncode == 1
    assert "Traceback" not in served.stderr
    assert "pip install 'allowance[server]'" in served.stderr
