"""``/docs`` and ``/redoc`` work offline: every script, style and icon they load is served
by the service itself (Swagger UI from a CDN showed a blank page without the internet)."""

from __future__ import annotations

import re

import pytest

from .service import Service


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_load_nothing_from_elsewhere(sqlite_service: Service, page: str) -> None:
    html = sqlite_service.call("GET", page, key=None)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html.text)
    assert urls, html.text
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url}"
        assert not url.startswith("//"), f"{page} loads {url}"
        assert sqlite_service.call("GET", url, key=None).status_code == 200, url
