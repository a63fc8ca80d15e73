"""Make the README's screenshot of the dashboard: ``allowance demo`` on a fresh SQLite file,
``allowance serve`` on it, a read key, and Debian's chromium on the demo account's page.

    .venv/bin/python tools/dashboard_screenshot.py docs/dashboard.png
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

BIN = Path(sys.executable).with_name("allowance")
PORT = 8123


def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/allowance.db"
        subprocess.run([str(BIN), "demo", "--store", store], check=True)
        admin = "alw_" + secrets.token_urlsafe(24)
        env = {**os.environ, "ALLOWANCE_BOOTSTRAP_KEY": admin}
        serve = [str(BIN), "serve", "--port", str(PORT), "--store", store]
        proc = subprocess.Popen(
            serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        base = f"http://127.0.0.1:{PORT}"
        try:
            for _ in range(100):
                try:
                    httpx.get(base + "/healthz")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            made = httpx.post(
                base + "/v1/keys",
                json={"scope": "read"},
                headers={"Authorization": "Bearer " + admin},
            )
            key = made.json()["key"]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(base + "/")
                page.get_by_label("API key").fill(key)
                page.keyboard.press("Enter")
                page.get_by_role("heading", name="Plans").wait_for()
                page.goto(base + "/#/accounts/demo")
                page.get_by_role("heading", name="Account demo").wait_for()
                page.wait_for_timeout(1200)  # a tick of the countdowns
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
