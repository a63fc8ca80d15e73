"""The start-up warning for a Redis that can lose or evict recorded usage (CONTRACT section 7):
real throwaway servers started with each setting, and ``allowance serve`` in front of one."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

import servers
from allowance.stores import redis_config
from allowance.stores.redis import RedisStore
from conftest import start_or_skip
from service.service import start_and_read

EVICTING = ("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru")


@contextmanager
def redis_with(extra: Sequence[str]) -> Iterator[str]:
    started = start_or_skip(lambda: servers.start_redis(extra=extra), "Redis")
    assert isinstance(started, servers.RedisServer)
    try:
        yield started.url
    finally:
        started.stop()


def warnings_on_open(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    redis_config._told.discard(url)  # each test opens its own server's URL afresh
    with caplog.at_level(logging.WARNING, logger="allowance.store"):
        caplog.clear()
        RedisStore.from_url(url).close()
    return [r.getMessage() for r in caplog.records if r.name == "allowance.store"]


def test_no_persistence_is_named_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with redis_with(()) as url:  # the throwaway default: save "" and appendonly no
        lines = warnings_on_open(url, caplog)
        port = url.rsplit(":", 1)[1].split("/")[0]
    assert len(lines) == 1, lines
    assert "no persistence" in lines[0] and f"127.0.0.1:{port}" in lines[0]


def test_allkeys_eviction_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with redis_with((*servers.PERSISTENT, *EVICTING)) as url:
        lines = warnings_on_open(url, caplog)
    assert len(lines) == 1 and "allkeys-lru" in lines[0] and "persistence" not in lines[0]


def test_a_persistent_noeviction_redis_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_with(servers.PERSISTENT) as url:
        assert warnings_on_open(url, caplog) == []
    with redis_with(("--save", "3600 1")) as url:  # RDB snapshots alone are persistence too
        assert warnings_on_open(url, caplog) == []


def test_config_refused_judges_what_info_shows(caplog: pytest.LogCaptureFixture) -> None:
    """Managed Redis often disables CONFIG: the eviction policy (INFO) is still judged, the
    RDB setting (CONFIG only) is not guessed at."""
    with redis_with(("--rename-command", "CONFIG", "", *EVICTING)) as url:
        lines = warnings_on_open(url, caplog)
    assert len(lines) == 1 and "allkeys-lru" in lines[0] and "persistence" not in lines[0]


def test_once_per_url_and_never_fails_the_store(caplog: pytest.LogCaptureFixture) -> None:
    with redis_with(()) as url:
        assert len(warnings_on_open(url, caplog)) == 1
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="allowance.store"):
            RedisStore.from_url(url).close()
        assert caplog.records == []  # a second store on the same URL: said once is enough
    dead = f"redis://127.0.0.1:{servers.free_port()}/0"
    assert warnings_on_open(dead, caplog) == []  # nothing to judge; the store still opens


def test_the_risks_of_settings() -> None:
    quiet = (
        {"maxmemory_policy": "noeviction"},
        {"aof_enabled": 1},
        {"save": "", "appendonly": "yes"},
    )
    assert redis_config.risks(*quiet) == []
    volatile = {"maxmemory_policy": "volatile-ttl", "maxmemory": 10**8}
    assert "volatile-ttl" in redis_config.risks(volatile, {}, {"save": "60 1"})[0]
    unbounded = {"maxmemory_policy": "volatile-lru", "maxmemory": 0}  # never evicts
    assert redis_config.risks(unbounded, {}, {"save": "60 1"}) == []


def test_serve_prints_the_warning(tmp_path: Path) -> None:
    with redis_with(EVICTING) as url:
        text = start_and_read(url, tmp_path, lambda text: None)
    risky = [line for line in text.splitlines() if "may lose recorded usage" in line]
    assert len(risky) == 1, text
    assert "no persistence" in risky[0] and "allkeys-lru" in risky[0]


def test_every_cluster_primary_is_judged(
    redis_cluster_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    lines = warnings_on_open(redis_cluster_url, caplog)  # the test cluster keeps nothing
    assert len(lines) == 1 and lines[0].count("no persistence") == 3, lines
