"""The dashboard in a real browser: Playwright driving Debian's chromium (``make`` installs it
when missing). An account at the seed's daily limit shows its meter at 30/30, when it resets
and the upgrade to Max; the page asks for nothing outside the service, and works from the
keyboard. Without chromium these tests skip, except under ``CI=true``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import server_or_skip
from service.service import START, Service

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        server_or_skip(f"no {CHROMIUM} (apt-get install chromium; make test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("dashboard")
    svc = Service.start(f"sqlite:///{tmp}/allowance.db", tmp)
    try:
        yield svc
    finally:
        svc.stop()


def seed_monday(svc: Service, account: str) -> None:
    """The seed's Monday: 20 Virtual Model generations two a minute, then 10 Product Staging:
    the daily limit of 30 reached; the clock left at 15:35."""
    svc.account(account, "pro")
    start = datetime.fromisoformat(START)
    staging = [start + timedelta(minutes=20, seconds=30 * i) for i in range(10)]
    times = [start + timedelta(seconds=30 * i) for i in range(20)] + staging
    features = ["transform.virtual_model"] * 20 + ["transform.product_staging"] * 10
    for at, feature in zip(times, features, strict=True):
        svc.set_time(at.timestamp())
        r = svc.call("POST", "/v1/consume", json={"account": account, "feature": feature})
        assert r.status_code == 200, r.text
    svc.set_time((start + timedelta(minutes=25)).timestamp())


def test_an_account_at_the_daily_limit(browser: Any, served: Service, tmp_path: Path) -> None:
    seed_monday(served, "demo")
    made = served.call("POST", "/v1/keys", json={"scope": "read", "name": "dashboard"})
    key = made.json()["key"]
    page = browser.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(served.url + "/")
    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")  # the form, from the keyboard
    page.get_by_role("heading", name="Plans").wait_for()
    plans = page.locator("table").first
    assert plans.locator("th").all_inner_texts()[:5] == ["limit", "features", "Free", "Pro", "Max"]
    assert "30" in plans.locator("tr", has_text="transform_daily").inner_text()
    crossed = page.locator("table").last  # accounts that crossed a threshold recently
    (latest,) = crossed.locator("tr", has_text="demo").all_inner_texts()  # one per account
    assert "usage.limit_reached" in latest and "transform_daily: 30 / 30" in latest, latest
    search = page.get_by_label("Find an account")
    search.fill("dem")
    # the search's answer replaces the list: a link focused before it would be gone (the
    # page then never opened, in one fresh clone check under load)
    with page.expect_response(lambda r: "/v1/accounts?" in r.url and "prefix=dem" in r.url):
        search.press("Enter")
    link = page.locator("#accounts").get_by_role("link", name="demo", exact=True)
    link.press("Enter")  # focused and pressed, from the keyboard
    page.get_by_role("heading", name="Account demo").wait_for()
    meters, _, recent, ledger = page.locator("table").all()
    daily = meters.locator("tr", has_text="transform_daily")
    assert "30 / 30" in daily.inner_text()
    assert daily.get_by_role("meter").get_attribute("aria-valuenow") == "30"
    assert re.search(r"Tue 24 Nov,? 15:10:00 UTC", daily.inner_text()), daily.inner_text()
    told = page.locator("tr", has_text="Product Staging")
    assert "refused" in told.inner_text()
    assert "You have reached your daily limit of 30 generations" in told.inner_text()
    assert "upgrade to Max" in told.inner_text()
    daily_events = recent.locator("tr", has_text="transform_daily").all_inner_texts()
    assert len(daily_events) == 2, daily_events  # newest first: the limit, then the 80 %
    assert "usage.limit_reached" in daily_events[0]
    assert "transform_daily: 30 / 30, upgrade to max" in daily_events[0]
    assert "transform_daily (80 %): 24 / 30" in daily_events[1]
    charged = ledger.locator("tr", has_text="transform_daily: +1").all_inner_texts()
    assert charged and all("charge" in line for line in charged), charged
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    outside = [u for u in asked if not u.startswith(served.url) and not u.startswith("data:")]
    assert not outside, outside
    page.close()


def test_a_wrong_key_is_asked_for_again(browser: Any, served: Service) -> None:
    page = browser.new_page()
    page.goto(served.url + "/")
    page.get_by_label("API key").fill("alw_not-a-key")
    page.keyboard.press("Enter")
    page.get_by_text("That key is unknown or revoked.").wait_for()
    assert page.get_by_label("API key").is_visible()
    page.close()


def test_the_docs_render_offline(browser: Any, served: Service) -> None:
    page = browser.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(served.url + "/docs")
    page.locator(".swagger-ui .title", has_text="allowance").wait_for()
    assert page.get_by_text("/v1/consume").first.is_visible()
    assert not [u for u in asked if not u.startswith(served.url) and not u.startswith("data:")]
    page.close()
