"""The dashboard in headless Chromium against a real server process and fake zrok controllers.

Needs the Debian packages chromium and chromium-driver (`make setup` installs them); selenium
drives /usr/bin/chromium through /usr/bin/chromedriver, so nothing is downloaded. Screenshots go
to build/test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.controlserver.conftest import ADMIN_TOKEN, NEAR_EU, NEAR_US, REPO, ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "build" / "test-artifacts"
# Generous: the page refreshes every few seconds, and the machine may be busy.
WAIT_S = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1300", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--lang=en-US"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser) -> Iterator[webdriver.Chrome]:
    """The browser with no cookies left from an earlier test."""
    browser.delete_all_cookies()
    yield browser
    browser.delete_all_cookies()


def start_fleet(server_process, **env: str) -> ServerProcess:
    """Start a server with the monitor on and fast moves, and printers: three near eu-1, two near us-1."""
    server = server_process(env={
        "FLEET_MOVE_INTERVAL_S": "0.5", "FLEET_MOVE_BATCH_SIZE": "2", "FLEET_FRONTEND_PROBE_INTERVAL_S": "30",
        "FLEET_PRINTER_PROBE_INTERVAL_S": "600", **env,
    })
    api = server.client()
    token = api.enrollment_token()
    for number in range(3):
        assert api.register(token, f"eu-{number:02d}", **NEAR_EU).status_code == 200
    for number in range(2):
        assert api.register(token, f"us-{number:02d}", **NEAR_US).status_code == 200
    return server


@pytest.fixture
def fleet_server(server_process) -> ServerProcess:
    return start_fleet(server_process)


def wait_for(driver, condition, description: str):
    """Wait until `condition(driver)` returns a true value and return it; fail naming `description`."""
    def checked(current):
        try:
            return condition(current)
        except StaleElementReferenceException:
            # The page redrew the element between finding and reading it; look again.
            return False

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(checked, message=f"waiting for {description}")


def log_in(driver, server: ServerProcess, token: str = ADMIN_TOKEN) -> None:
    driver.get(f"{server.url}/dashboard/")
    wait_for(driver, lambda d: d.current_url.endswith("/dashboard/login"), "the login page")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def frontend_row(driver, name: str):
    return driver.find_element(By.CSS_SELECTOR, f'#regions .frontend[data-frontend="{name}"]')


def bar_text(driver, name: str) -> str:
    return frontend_row(driver, name).find_element(By.CLASS_NAME, "bar-label").text


def fill_ratio(driver, name: str) -> float:
    bar = frontend_row(driver, name).find_element(By.CLASS_NAME, "bar")
    fill = bar.find_element(By.CLASS_NAME, "fill")
    return fill.rect["width"] / bar.rect["width"]


def badge(driver, name: str) -> str:
    return frontend_row(driver, name).find_element(By.CLASS_NAME, "badge").text


def event_texts(driver) -> list[str]:
    return [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#events li.event .text")]


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    assert path.stat().st_size > 10_000


def test_unauthenticated_requests_rejected(fleet_server, page):
    raw_page = httpx.get(f"{fleet_server.url}/dashboard/", follow_redirects=False)
    data = {path: httpx.get(f"{fleet_server.url}/dashboard/api/{path}").status_code
            for path in ("overview", "printers", "events")}

    page.get(f"{fleet_server.url}/dashboard/")

    assert raw_page.status_code == 303
    assert raw_page.headers["location"] == "/dashboard/login"
    assert data == {"overview": 401, "printers": 401, "events": 401}
    wait_for(page, lambda d: d.current_url.endswith("/dashboard/login"), "the redirect to the login page")
    assert page.find_elements(By.ID, "regions") == []
    assert page.find_element(By.ID, "token").get_attribute("type") == "password"


def test_wrong_token_rejected(fleet_server, page):
    log_in(page, fleet_server, token="not-the-admin-token-0000000000")

    error = wait_for(page, lambda d: d.find_elements(By.ID, "login-error"), "the login error")[0]
    assert "not the admin token" in error.text
    assert page.find_elements(By.ID, "regions") == []
    assert [c["name"] for c in page.get_cookies()] == []


def test_login_shows_fleet(fleet_server, page):
    log_in(page, fleet_server)

    wait_for(page, lambda d: d.find_elements(By.CSS_SELECTOR, "#regions .frontend"), "the frontend bars")
    cookie = {c["name"]: c for c in page.get_cookies()}["fleet_dashboard"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/dashboard"
    assert page.execute_script("return document.cookie") == ""
    assert [h.text.split("\n")[0] for h in page.find_elements(By.CSS_SELECTOR, "#regions .region h3")] == ["eu", "us"]


def test_frontend_bars_match_api(fleet_server, page):
    frontends = {f["name"]: f for f in fleet_server.client().frontends().values()}
    log_in(page, fleet_server)

    for name, frontend in frontends.items():
        label = f"{frontend['assigned']} / {frontend['capacity']}"
        wait_for(page, lambda d: bar_text(d, name) == label, f"bar label {label} of {name}")
        # The fill's width animates; wait until it reaches the load.
        wait_for(page, lambda d: abs(fill_ratio(d, name) - frontend["load"]) < 0.02, f"bar width of {name}")
        load = frontend_row(page, name).find_element(By.CLASS_NAME, "load").text
        assert load == f"{round(frontend['load'] * 100)} %"
        assert badge(page, name) == "healthy"
    assert frontends["eu-1"]["assigned"] == 3
    assert frontends["us-1"]["assigned"] == 2

    labels = {label.get_attribute("data-frontend"): label.text
              for label in page.find_elements(By.CSS_SELECTOR, "#map .frontend-label")}
    assert labels == {"eu-1": "eu-1 · 3", "us-1": "us-1 · 2"}
    marker = page.find_element(By.CSS_SELECTOR, '#map .frontend-marker[data-frontend="eu-1"]')
    # Falkenstein (50.5 N, 12.4 E) in the equirectangular map: x is the longitude, y the negated latitude.
    assert (float(marker.get_attribute("cx")), float(marker.get_attribute("cy"))) == (12.4, -50.5)
    assert len(page.find_elements(By.CSS_SELECTOR, "#map .printer-cluster")) == 2
    totals = page.find_element(By.ID, "totals").text
    assert totals.startswith("5 printers, 5 assigned of capacity 10 on 2 frontends")
    resources = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert f"{fleet_server.url}/dashboard/static/world.svg" in resources
    assert [url for url in resources if not url.startswith(f"{fleet_server.url}/dashboard/")] == []
    screenshot(page, "dashboard.png")


def test_drain_shows_without_reload(fleet_server, page):
    log_in(page, fleet_server)
    wait_for(page, lambda d: bar_text(d, "eu-1") == "3 / 5", "eu-1 with 3 printers")
    page.execute_script("window.loadedOnce = true;")

    drained = httpx.post(f"{fleet_server.url}/v1/frontends/eu-1/drain",
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    assert drained.status_code == 200
    wait_for(page, lambda d: badge(d, "eu-1") == "draining", "the draining badge of eu-1")
    wait_for(page, lambda d: bar_text(d, "eu-1") == "0 / 5", "eu-1 emptied")
    wait_for(page, lambda d: bar_text(d, "us-1") == "5 / 5", "us-1 full")
    texts = wait_for(page, lambda d: [t for t in event_texts(d) if "moved eu-1 → us-1" in t], "the move events")
    wait_for(page, lambda d: len([t for t in event_texts(d) if "moved eu-1 → us-1" in t]) == 3, "three moves")
    events = event_texts(page)
    assert any("eu-1 drained, 3 printers to move" in text for text in events)
    assert {text.split(" moved")[0] for text in events if "moved" in text} == {
        "eu-00", "eu-01", "eu-02"}
    assert all("(draining)" in text for text in texts)
    assert page.find_element(By.CSS_SELECTOR, '#map .frontend-marker[data-frontend="eu-1"]').get_attribute(
        "class") == "frontend-marker draining"
    assert page.execute_script("return window.loadedOnce === true;")
    screenshot(page, "dashboard-drain.png")


def test_failover_shows_without_reload(server_process, fleet_files, page):
    server = start_fleet(server_process, FLEET_FRONTEND_PROBE_INTERVAL_S="0.5", FLEET_UNHEALTHY_AFTER="2",
                         FLEET_HEALTHY_AFTER="2", FLEET_LEASE_TTL_S="3")
    log_in(page, server)
    wait_for(page, lambda d: bar_text(d, "eu-1") == "3 / 5", "eu-1 with 3 printers")
    page.execute_script("window.loadedOnce = true;")

    fleet_files["zrok"]["eu-1"].healthy = False

    wait_for(page, lambda d: badge(d, "eu-1") == "unhealthy", "the unhealthy badge of eu-1")
    wait_for(page, lambda d: bar_text(d, "us-1") == "5 / 5", "the printers moved to us-1")
    wait_for(page, lambda d: len([t for t in event_texts(d) if "(unhealthy)" in t]) == 3, "three moves")
    failover = [t for t in event_texts(page) if t.startswith("failover:")]
    assert len(failover) == 1
    assert failover[0].startswith("failover: eu-1 is unhealthy, 3 printers to move (GET ")
    assert "HTTP 502" in failover[0]
    assert "HTTP 502" in frontend_row(page, "eu-1").find_element(By.CLASS_NAME, "probe-error").text

    fleet_files["zrok"]["eu-1"].healthy = True

    wait_for(page, lambda d: badge(d, "eu-1") == "healthy", "eu-1 healthy again")
    assert "eu-1 is healthy again and takes printers" in event_texts(page)
    assert bar_text(page, "eu-1") == "0 / 5"
    assert page.execute_script("return window.loadedOnce === true;")


def test_printer_filters(fleet_server, page):
    log_in(page, fleet_server)
    wait_for(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#printer-table tbody tr")) == 5, "five printers")

    Select(page.find_element(By.NAME, "region")).select_by_value("us")
    wait_for(page, lambda d: [r.get_attribute("data-printer") for r in d.find_elements(
        By.CSS_SELECTOR, "#printer-table tbody tr")] == ["us-00", "us-01"], "the us printers")
    Select(page.find_element(By.NAME, "region")).select_by_value("")
    Select(page.find_element(By.NAME, "frontend")).select_by_value("eu-1")
    wait_for(page, lambda d: [r.get_attribute("data-printer") for r in d.find_elements(
        By.CSS_SELECTOR, "#printer-table tbody tr")] == ["eu-00", "eu-01", "eu-02"], "the eu-1 printers")
    Select(page.find_element(By.NAME, "share_state")).select_by_value("active")
    wait_for(page, lambda d: d.find_element(By.ID, "printer-count").text == "0 printers match.", "no active share")

    Select(page.find_element(By.NAME, "share_state")).select_by_value("unreported")
    wait_for(page, lambda d: d.find_element(By.ID, "printer-count").text == "3 printers match.", "three unreported")


def test_logout_ends_session(fleet_server, page):
    log_in(page, fleet_server)
    wait_for(page, lambda d: d.find_elements(By.ID, "logout-button"), "the logout button")
    cookie = {c["name"]: c["value"] for c in page.get_cookies()}["fleet_dashboard"]

    page.find_element(By.ID, "logout-button").click()
    wait_for(page, lambda d: d.current_url.endswith("/dashboard/login"), "the login page after logout")
    page.get(f"{fleet_server.url}/dashboard/")

    wait_for(page, lambda d: d.current_url.endswith("/dashboard/login"), "the redirect after logout")
    assert "fleet_dashboard" not in {c["name"] for c in page.get_cookies()}
    fleet_server.stop()
    log = fleet_server.log()
    assert ADMIN_TOKEN not in log
    assert cookie not in log
    assert any(entry["message"] == "dashboard login" for entry in fleet_server.log_entries())
