"""The console in a real browser (headless Chromium from Debian, driven by Selenium), against
`rapport up` as a newcomer runs it: demo data loaded on the first start, then searched,
segmented and charted. Screenshots go to $RAPPORT_TEST_ARTIFACTS (default: ./artifacts)."""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.demo.population import population
from services.demo.sender import EXAMPLE_SEGMENTS
from services.runtime import topics
from services.runtime.db import make_engine, reading
from services.runtime.log import TopicPartition
from services.runtime.settings import Settings
from services.runtime.tables import ConsumerOffset
from tests.backends import free_port
from tests.e2e.processes import Process, found
from tests.support import wait_until

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PEOPLE, SEED = 40, 11
CONSUMES = {"identity": topics.EVENTS_RAW, "profile": topics.EVENTS_RESOLVED, "segments": topics.PROFILES_CHANGED}
ARTIFACTS = Path(os.environ.get("RAPPORT_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
pytestmark = pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                                       "chromium-driver; .ci/run installs them)")


def caught_up(settings: Settings, log) -> bool:
    """Every projector has applied its input topic to the end. Offsets are read before the ends:
    a projector publishes its output before it commits, so work in flight shows as a gap."""
    with reading(make_engine(settings.database_url)) as session:
        stored = {(r.consumer, r.topic, r.partition): r.next_offset for r in session.scalars(select(ConsumerOffset))}
    for consumer, topic in CONSUMES.items():
        parts = [TopicPartition(topic, p) for p in range(settings.partitions_for(topic))]
        if any(stored.get((consumer, tp.topic, tp.partition), 0) < end for tp, end in log.end_offsets(parts).items()):
            return False
    return True


@pytest.fixture(scope="module")
def rapport(tmp_path_factory):
    """`rapport up` on a fresh data dir: it seeds demo data itself, as on a newcomer's laptop."""
    from services.runtime.log.embedded import EmbeddedLog

    home = tmp_path_factory.mktemp("console")
    settings = Settings(data_dir=home / "data")
    up = Process(["up"], {"RAPPORT_DATA_DIR": str(settings.data_dir), "RAPPORT_POLL_TIMEOUT_MS": "50",
                          "RAPPORT_DEMO_PEOPLE": str(PEOPLE), "RAPPORT_DEMO_SEED": str(SEED)}, home, port=free_port())
    try:
        up.wait_healthy()
        token = found(r"access token.*?: (rpt_\S+)", up.output())
        base = f"http://127.0.0.1:{up.port}"
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        keys = {key for key, *_ in EXAMPLE_SEGMENTS}  # created last, once every event was sent
        wait_until(lambda: {s["key"] for s in api.get("/v1/segments").json()} >= keys, 60, "the demo data")
        log = EmbeddedLog(settings)
        try:
            wait_until(lambda: caught_up(settings, log), 60, "the pipeline to catch up")
        finally:
            log.close()
        wait_until(lambda: all(s["backfill"]["state"] == "done" for s in api.get("/v1/segments").json()), 60,
                   "the segments' backfills")
        yield base, token, api
        api.close()
    finally:
        assert up.stop(), up.output()[-3000:]


@pytest.fixture(scope="module")
def browser(rapport):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    base, token, _ = rapport
    driver.get(f"{base}/console")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait(driver).until(lambda d: d.find_elements(By.ID, "search"))
    yield driver
    driver.quit()


def wait(driver, seconds: float = 20) -> WebDriverWait:
    """Waits on a condition; a page re-rendered meanwhile (its elements replaced) is looked at again."""
    return WebDriverWait(driver, seconds, poll_frequency=0.05,  # selenium's default: every 0.5 s
                         ignored_exceptions=[StaleElementReferenceException])


def open_page(driver, base: str, hash_: str, ready: str):
    """Go to a console page and wait until `ready` (a CSS selector) is on it."""
    driver.get(f"{base}/console{hash_}")
    return wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, ready))


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_wrong_token_is_refused(rapport):
    base, *_ = rapport
    assert httpx.get(f"{base}/console").status_code == 200  # the page itself is public: no data in it
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.add_argument("--headless=new")
    options.add_argument("--no-sandbox")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(f"{base}/console")
        driver.find_element(By.ID, "token").send_keys("rpt_not-a-token")
        driver.find_element(By.ID, "sign-in").click()
        wait(driver).until(lambda d: "refused" in d.find_element(By.ID, "signin-error").text)
    finally:
        driver.quit()


def test_search_a_person_by_email_and_open_their_360_view(rapport, browser):
    base, _, api = rapport
    person = next(p for p in population(PEOPLE, SEED, datetime.now(timezone.utc)) if p.persona == "repeat")
    email = person.emails[0]
    open_page(browser, base, f"#/profiles?q={email.split('@')[0]}", "a.profile-link")
    browser.find_element(By.CSS_SELECTOR, "a.profile-link").click()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline li.event"))
    screenshot(browser, "profile-360")
    profile = api.get("/v1/profiles/lookup", params={"type": "email", "value": email}).json()
    assert browser.find_element(By.ID, "profile-id").text == profile["profile_id"]
    assert person.name in browser.find_element(By.ID, "profile-name").text
    shown = browser.find_element(By.CSS_SELECTOR, "#profile-name [data-stage]").get_attribute("data-stage")
    assert shown == profile["lifecycle_stage"]["stage"] == "repeat"
    identities = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.identity")]
    assert any(email in row for row in identities) and len(identities) == len(profile["identities"])
    events = browser.find_elements(By.CSS_SELECTOR, "#timeline li.event")
    assert "Order Completed" in " ".join(e.text for e in events)


def test_create_a_segment_from_its_text_form_with_a_live_preview(rapport, browser):
    base, _, api = rapport
    open_page(browser, base, "#/segment-new", "#segment-text")
    browser.find_element(By.ID, "segment-key").send_keys("two-plus-orders")
    browser.find_element(By.ID, "segment-name").send_keys("Two or more orders")
    condition = browser.find_element(By.ID, "segment-text")
    condition.send_keys("orders >=")  # unfinished: the preview says where it breaks
    error = wait(browser).until(lambda d: d.find_elements(By.ID, "preview-error"))[0]
    assert "text:" in browser.find_element(By.ID, "preview-status").text and error.text
    condition.send_keys(" 2")
    count = wait(browser).until(lambda d: d.find_elements(By.ID, "preview-count"))[0]
    expected = api.post("/v1/segments/preview", json={"text": "orders >= 2"}).json()
    assert int(count.text.replace(",", "")) == expected["count"] > 0
    samples = browser.find_elements(By.CSS_SELECTOR, "#preview-sample .sample")
    assert len(samples) == min(5, expected["count"])
    screenshot(browser, "segment-editor")
    browser.find_element(By.ID, "save-segment").click()
    wait(browser).until(lambda d: d.find_elements(By.ID, "segment-size"))
    saved = api.get("/v1/segments/two-plus-orders").json()
    assert (saved["name"], saved["text"]) == ("Two or more orders", "orders >= 2")
    open_page(browser, base, "#/segments", "tr.segment[data-key='two-plus-orders']")
    screenshot(browser, "segments")


def test_the_lifecycle_funnel_chart_shows_each_stage_with_its_count(rapport, browser):
    base, _, api = rapport
    open_page(browser, base, "#/lifecycle", "#funnel-chart .bar-row")
    screenshot(browser, "lifecycle")
    lifecycle = api.get("/v1/lifecycle").json()
    reached = {step["from"]: step["reached"] for step in lifecycle["funnel"]} | {
        lifecycle["funnel"][-1]["to"]: lifecycle["funnel"][-1]["converted"]}
    bars = browser.find_elements(By.CSS_SELECTOR, "#funnel-chart .bar-row")
    drawn = {b.get_attribute("data-stage"): int(b.find_element(By.CSS_SELECTOR, ".count").text.replace(",", ""))
             for b in bars}
    assert list(drawn) == ["visitor", "lead", "customer", "repeat", "loyal"]
    assert drawn == reached and reached["loyal"] > 0
    now_in = {b.get_attribute("data-stage"): int(b.get_attribute("data-count"))
              for b in browser.find_elements(By.CSS_SELECTOR, "#stage-chart .bar-row")}
    assert now_in == {s["stage"]: s["profiles"] for s in lifecycle["stages"]}


def test_sources_show_write_keys_and_the_demos_rejected_events(rapport, browser):
    base, _, api = rapport
    open_page(browser, base, "#/sources", "tr.source")
    screenshot(browser, "sources")
    keys = {s["write_key"] for s in api.get("/v1/sources").json()["sources"]}
    assert keys and all(key in browser.page_source for key in keys)
    rejected = browser.find_elements(By.CSS_SELECTOR, "tr.rejected")
    assert rejected and all("required" in r.text or "must" in r.text for r in rejected), [r.text for r in rejected]
