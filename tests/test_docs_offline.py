"""The API's docs work on a machine without internet: Swagger UI (/docs) and ReDoc (/redoc)
render every operation in headless Chromium, and no request leaves the machine (external
names do not even resolve in the browser; a request the page's Content-Security-Policy
stopped in the browser never left it)."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest

from starter.http import create_app
from testkit.live_api import serving
from testkit.waiting import PATIENCE

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# (page, a CSS selector of what it draws per operation, the selector of its title)
PAGES = (
    ("/docs", ".swagger-ui .opblock", ".swagger-ui .info .title"),
    ("/redoc", "[data-section-id^='operation/']", ".api-content h1"),
)


async def test_swagger_ui_and_redoc_render_from_local_assets_only(stack):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, (
        "the docs are checked in Debian's chromium: apt-get install -y chromium "
        "chromium-driver (make test does)"
    )
    app = create_app(stack.settings, journeys=stack.journeys)
    async with serving(app) as base:
        spec = json.loads(await asyncio.to_thread(_get, f"{base}/openapi.json"))
        operations = sum(len(methods) for methods in spec["paths"].values())
        for path, per_operation, title in PAGES:
            seen = await asyncio.to_thread(
                _browse, chromium, driver_path, base + path, per_operation, title
            )
            requests, drawn, heading = seen
            assert heading.startswith(app.title), (path, heading)
            assert drawn >= operations, f"{path} drew {drawn} of {operations} operations"
            leaving = [u for u in requests if not u.startswith((base, "data:", "blob:"))]
            assert leaving == [], f"{path} asked for something off this machine: {leaving}"
            assert any(u.startswith(f"{base}/static/docs/") for u in requests)


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=PATIENCE) as answer:
        return str(answer.read().decode())


def _browse(
    chromium: str, driver_path: str, url: str, per_operation: str, title: str
) -> tuple[list[str], int, str]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,1400",
        # No name but this machine's resolves: a CDN asset could not load even if asked for
        # (and the request log below still shows that it was asked for).
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.get(url)
        wait: Any = WebDriverWait(driver, PATIENCE)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, per_operation))
        heading = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, title).text)
        drawn = len(driver.find_elements(By.CSS_SELECTOR, per_operation))
        asked, blocked = {}, set()
        for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.requestWillBeSent":
                asked[params["requestId"]] = params["request"]["url"]
            elif (
                message.get("method") == "Network.loadingFailed"
                and params.get("blockedReason") == "csp"
            ):
                blocked.add(params["requestId"])
        sent = [url for request_id, url in asked.items() if request_id not in blocked]
        return sent, drawn, str(heading)
    finally:
        driver.quit()
