"""What every part of the HTTP benchmark shares: paths, the constants of the workload and the
targets, and small helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]  # the repository
BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/, the scripts' directory
SCRIPT = BENCHMARKS / "bench_http.py"  # also the client processes' (``--worker``)
ALLOWANCE = Path(sys.executable).with_name("allowance")
FEATURE = "background.studio"
PLAN = "pro"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
REDIS_ENV = "ALLOWANCE_BENCH_REDIS_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "ALLOWANCE_BENCH_POSTGRES_URL"
STORES = ("sqlite", "sqlite-normal", "redis", "postgresql")
BARE = "bare FastAPI route"
MIN_GRANTED = 0.95
TARGET_RATIO = 0.5
TARGET_P99_MS = 10.0


class ServerUnavailable(RuntimeError):
    """A server the benchmark needs could not be started."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_query(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({k: str(v) for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))
