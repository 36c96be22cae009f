"""Drives the page at `/` in a real headless Chromium (Debian's chromium and chromium-driver, through
selenium): the forms come from the tools' schemas, a `ticks` run started from its form shows its bar
reaching 100% and its result, the browser's EventSource reads a run's SSE, an error is shown, the
runs list shows the run, a run started
elsewhere is resumed from the runs list and cancelled, and an agent run shows its streamed text and
a bar per tool call.

Usage: browser_page.py http://127.0.0.1:PORT

Nothing is downloaded: the browser and the driver are given by path. Every wait is an explicit
wait on the page's state with a generous limit; there are no sleeps.
"""

import json
import os
import sys
import tempfile
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

URL = sys.argv[1]
CHROMIUM = os.environ.get("TOOLSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TOOLSTREAM_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 60

profile = tempfile.mkdtemp(prefix="toolstream-chromium-")
options = webdriver.ChromeOptions()
options.binary_location = CHROMIUM
for flag in [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--user-data-dir={profile}",
]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
wait = WebDriverWait(driver, WAIT)


def text_in(css, needle):
    def check(d):
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if needle in element.text:
                return element
        return False
    return check


try:
    driver.get(URL + "/")
    assert driver.title == "toolstream", driver.title

    # The ticks form, made from its input schema.
    form = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'form[data-tool="ticks"]')))
    count = form.find_element(By.CSS_SELECTOR, 'input[name="count"]')
    assert count.get_attribute("type") == "number"
    interval = form.find_element(By.CSS_SELECTOR, 'input[name="interval_ms"]')
    count.clear()
    count.send_keys("5")
    interval.clear()
    interval.send_keys("100")
    form.find_element(By.CSS_SELECTOR, "button.run-button").click()

    # Its bar reaches 100% and its result shows.
    run = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, 'article.run[data-state="succeeded"]')))
    bar = run.find_element(By.CSS_SELECTOR, ".progress.run .bar")
    assert bar.get_attribute("aria-valuenow") == "100", bar.get_attribute("aria-valuenow")
    assert "100%" in bar.text, bar.text
    result = run.find_element(By.CSS_SELECTOR, "pre.result")
    assert '"count": 5' in result.text, result.text
    run_id = run.get_attribute("data-run-id")
    assert run_id, "the run's id is shown"

    # The browser's own EventSource reads the run's SSE replay: named events, ids = sequences.
    driver.set_script_timeout(WAIT)
    seen = driver.execute_async_script("""
        const [runId, done] = [arguments[0], arguments[arguments.length - 1]];
        const seen = [];
        const source = new EventSource(`/v1/runs/${runId}/events`);
        for (const name of ["started", "progress", "result"]) {
          source.addEventListener(name, (e) => {
            seen.push([name, e.lastEventId, JSON.parse(e.data).sequence]);
            if (name === "result") { source.close(); done(seen); }
          });
        }
        source.addEventListener("error", (e) => { source.close(); done(["error", e.data || "connection"]); });
    """, run_id)
    assert [name for name, _, _ in seen] == ["started"] + ["progress"] * 5 + ["result"], seen
    assert all(last_id == sequence for _, last_id, sequence in seen), seen

    # The runs list shows it as succeeded.
    wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"][data-state="succeeded"]')))

    # An error is shown: a path outside the root.
    checksum = driver.find_element(By.CSS_SELECTOR, 'form[data-tool="checksum"]')
    paths = checksum.find_element(By.CSS_SELECTOR, 'textarea[name="paths"]')
    paths.send_keys("/etc/passwd")
    checksum.find_element(By.CSS_SELECTOR, "button.run-button").click()
    failed = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, 'article.run[data-state="failed"] .run-error')))
    assert "PERMISSION_DENIED" in failed.text, failed.text
    wait.until(text_in("#errors .error", "PERMISSION_DENIED"))

    # A run started elsewhere (detached, over HTTP): resumed from the runs list, then cancelled.
    req = urllib.request.Request(
        URL + "/v1/tools/ticks/runs",
        data=json.dumps({"arguments": {"count": 600, "interval_ms": 100}}).encode(),
        method="POST", headers={"accept": "application/json", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=WAIT) as response:
        assert response.status == 202, response.status
        detached_id = json.load(response)["runId"]
    driver.find_element(By.ID, "runs-refresh").click()
    row = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{detached_id}"][data-state="running"]')))
    row.find_element(By.XPATH, './/button[text()="Resume"]').click()
    resumed = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'article.run[data-run-id="{detached_id}"]')))
    wait.until(lambda d: int(resumed.find_element(By.CSS_SELECTOR, ".progress.run .bar")
                             .get_attribute("aria-valuenow")) > 0)
    resumed.find_element(By.XPATH, './/button[text()="Cancel"]').click()
    wait.until(lambda d: resumed.get_attribute("data-state") == "cancelled")
    assert "CANCELLED" in resumed.find_element(By.CSS_SELECTOR, ".run-error").text
    wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{detached_id}"][data-state="cancelled"]')))

    # An agent run (the test's stand-in model calls ticks): streamed text and a bar per call.
    if os.environ.get("TOOLSTREAM_AGENT_TEST") == "1":
        agent = driver.find_element(By.ID, "agent-form")
        agent.find_element(By.CSS_SELECTOR, 'textarea[name="prompt"]').send_keys("tick")
        agent.find_element(By.CSS_SELECTOR, "button.run-button").click()
        article = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, 'article.run[data-title="agent"][data-state="succeeded"]')))
        done = article.find_element(By.CSS_SELECTOR, "pre.text")
        assert "Three ticks done." in done.text, done.text
        call = article.find_element(By.CSS_SELECTOR, ".calls .progress.call")
        assert "ticks (call_1)" in call.text, call.text
        call_bar = call.find_element(By.CSS_SELECTOR, ".bar")
        assert call_bar.get_attribute("aria-valuenow") == "100"

    print("browser page: all checks passed")
finally:
    driver.quit()
