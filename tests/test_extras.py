"""The base install and its extras: what works without the Redis, PostgreSQL and server
extras, and what a missing one says.

Each check runs in a fresh interpreter: ``sys.modules`` of this one has every driver loaded by
other tests. A ``sys.meta_path`` finder placed first refuses the extras' modules, as if only
``pip install allowance`` had run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# every top-level module the extras bring (redis, postgres, server)
EXTRA_MODULES = (
    "redis",
    "hiredis",
    "psycopg",
    "psycopg_binary",
    "psycopg_pool",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "prometheus_client",
)

BLOCKER = f"""
import sys

class RefuseExtras:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRA_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, RefuseExtras())
"""


def python(*code: str, block: bool, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the pieces of ``code`` in a new interpreter (with the extras refused if ``block``)."""
    source = (BLOCKER if block else "") + "\n".join(textwrap.dedent(piece) for piece in code)
    return subprocess.run(
        [sys.executable, "-c", source], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``allowance ARGS`` with the extras refused."""
    return python(
        f"import sys\nsys.argv = ['allowance', *{args!r}]\n"
        "from allowance.cli import main\nmain()\n",
        block=True,
        cwd=cwd,
    )


def local_decisions(tmp_path: Path) -> str:
    """Code that decides on memory:// and on sqlite://."""
    return f"""
        from allowance import Limiter

        for store in ("memory://", "sqlite:///{tmp_path}/a.db"):
            with Limiter(store=store) as lim:
                lim.set_account("acme", plan="free")
                assert lim.consume("acme", "export.ai", 2).allowed
                assert not lim.consume("acme", "export.ai").allowed
        """


def test_import_and_the_local_stores_load_no_extra(tmp_path: Path) -> None:
    # not blocked: the modules are installed here, and still must not be imported
    done = python(
        """
        import sys
        import allowance
        import allowance.cli
        """,
        local_decisions(tmp_path),
        f"""
        loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & set({EXTRA_MODULES!r}))
        print(loaded)
        """,
        block=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_extras_the_local_stores_and_client_work(tmp_path: Path) -> None:
    done = python(
        local_decisions(tmp_path),
        """
        import asyncio
        from allowance import AsyncLimiter, Client

        async def main():
            async with AsyncLimiter(store="memory://") as lim:
                await lim.set_account("acme", plan="pro")
                return (await lim.consume("acme", "export.ai")).allowed

        assert asyncio.run(main())
        Client("http://127.0.0.1:1", "alw_x").close()  # httpx is in the base install
        print("ok")
        """,
        block=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("store", "extra"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://127.0.0.1:6379/0", "redis"),
        ("redis+cluster://127.0.0.1:7000", "redis"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/0", "redis"),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgres"),
        ("postgres://postgres@127.0.0.1:5432/test", "postgres"),
    ],
)
def test_a_store_without_its_extra_names_the_extra(tmp_path: Path, store: str, extra: str) -> None:
    done = python(
        f"""
        from allowance import AsyncLimiter, ConfigurationError, Limiter

        for make in (Limiter, AsyncLimiter):
            try:
                make(store={store!r})
            except ConfigurationError as exc:
                assert exc.__cause__ is None and exc.__suppress_context__, "a chained ImportError"
                print(exc)
            else:
                raise AssertionError("no error")
        """,
        block=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    scheme = store.partition("://")[0]
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith(f"store {scheme}:// needs the {extra!r} extra: ")
        assert f"pip install 'allowance[{extra}]'" in line


@pytest.mark.parametrize("module", ["allowance.fastapi", "allowance.asgi"])
def test_the_web_integrations_without_the_server_extra(tmp_path: Path, module: str) -> None:
    done = python(
        f"""
        from allowance import ConfigurationError

        try:
            import {module}
        except ConfigurationError as exc:
            assert isinstance(exc, ImportError)  # `except ImportError` around it still works
            assert exc.__cause__ is None and exc.__suppress_context__
            print(exc)
        """,
        block=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{module} needs the 'server' extra: ")
    assert "pip install 'allowance[server]'" in done.stdout


def test_serve_without_the_server_extra_is_a_one_line_error(tmp_path: Path) -> None:
    done = cli("serve", "--store", f"sqlite:///{tmp_path}/a.db", "--port", "0", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "allowance serve needs the 'server' extra" in done.stderr
    assert "pip install 'allowance[server]'" in done.stderr
    assert not (tmp_path / "a.db").exists()  # stopped before touching the store


def test_the_cli_works_without_the_extras_and_names_a_missing_one(tmp_path: Path) -> None:
    builtin = Path(__file__).parents[1] / "src" / "allowance" / "builtin.yaml"
    checked = cli("policy", "check", str(builtin), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    store = f"sqlite:///{tmp_path}/a.db"
    made = cli("accounts", "set", "acme", "--plan", "pro", "--store", store, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    usage = cli("usage", "acme", "--json", "--store", store, cwd=tmp_path)
    assert usage.returncode == 0, usage.stderr
    assert '"plan": "pro"' in usage.stdout
    keys = cli("keys", "list", "--store", "redis://127.0.0.1:6379/0", cwd=tmp_path)
    assert keys.returncode == 1
    assert "Traceback" not in keys.stderr
    assert "pip install 'allowance[redis]'" in keys.stderr
