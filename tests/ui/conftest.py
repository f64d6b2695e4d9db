"""Browser tier: the Airflow API server with the Cutover plugin on a free local port, driven by Debian's
headless Chromium through Selenium (the system browser and chromedriver: nothing downloads a browser).

Every page a test opens goes through :func:`open_page`, which records every request the browser makes
(Chrome's performance log) so a test can assert that none left localhost; a failing test leaves a
screenshot in ``$CUTOVER_UI_SCREENSHOTS`` (default: a temp folder, printed in the failure).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("CUTOVER_UI_SCREENSHOTS") or tempfile.mkdtemp(prefix="cutover-ui-shots-"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``airflow api-server`` with this project's plugin, its own AIRFLOW_HOME, the tests' control DB and
    GX context (from the environment tests/conftest.py set up). Yields its base URL."""
    home = tmp_path_factory.mktemp("airflow-ui-home")
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__UNIT_TEST_MODE": "False", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "CUTOVER_UI_AUTH": "off"}
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    port = _free_port()
    log = open(home / "api-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/cutover/status", timeout=5) as r:
                    if r.status == 200:
                        break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"airflow api-server did not start: {(home / 'api-server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through its chromedriver, with the performance log on (every request)."""
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a driver or browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--window-size=1400,1000", f"--user-data-dir={tempfile.mkdtemp()}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the browser asked for since the last call (from Chrome's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def off_machine(urls: list[str]) -> list[str]:
    """The network requests that would leave the machine: any http(s) / ws(s) / ftp URL whose host is not
    localhost. ``data:``, ``blob:`` and the browser's own ``chrome://`` pages (its new-tab page loads
    those at start) never touch the network."""
    network = ("http", "https", "ws", "wss", "ftp")
    return [u for u in urls
            if urlsplit(u).scheme in network and urlsplit(u).hostname not in ("127.0.0.1", "localhost", "::1")]


@pytest.fixture
def open_page(browser: Any, airflow_server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``open_page(path)`` loads ``<server><path>``, waits for it, and returns the URLs it requested."""
    opened: list[str] = []

    def go(path: str) -> list[str]:
        requested_urls(browser)  # drop what came before
        browser.get(airflow_server + path)
        time.sleep(0.3)  # let late sub-resources start
        opened.append(path)
        urls = requested_urls(browser)
        if os.environ.get("CUTOVER_UI_SCREENSHOTS"):  # keep the request log beside the screenshots
            SHOTS.mkdir(parents=True, exist_ok=True)
            with open(SHOTS / "requests.log", "a") as fh:
                fh.write(f"# {path}\n" + "".join(f"{u}\n" for u in urls))
        return urls

    yield go
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / f"{request.node.name}.png"
        browser.save_screenshot(str(shot))
        print(f"screenshot of {opened[-1] if opened else 'the page'}: {shot}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep  # type: ignore[attr-defined]
