"""The page at `/` against a server with auth on, in a real headless Chromium: the page asks for a
token (its first call is refused with 401), and once given one it lists the tools, runs `ticks`
from its form over its WebSocket (`?access_token=`) to 100%, lists the run, and the browser's own
EventSource reads the run's SSE with `?access_token=`; the token stays in sessionStorage. The
page asking for the token is saved as a screenshot at 1280 and 390 px (browser_page_screens.py).

Usage: browser_page_auth.py http://127.0.0.1:PORT TOKEN
"""

import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from browser_page_screens import shoot, start_chromium

URL, TOKEN = sys.argv[1], sys.argv[2]
WAIT = 60
driver = start_chromium()
wait = WebDriverWait(driver, WAIT)
problems = []


def check(condition, what):
    if not condition:
        problems.append(what)
        print(f"FAILED: {what}", flush=True)


try:
    driver.get(URL + "/")
    # Refused without a token: the page asks for one.
    token_form = wait.until(ec.visibility_of_element_located((By.ID, "token-form")))
    assert "needs a token" in driver.find_element(By.ID, "token-why").text
    shoot(driver, "auth-required", check)
    token_form = driver.find_element(By.ID, "token-form")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    token_form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    assert driver.execute_script("return sessionStorage.getItem('toolstream.token')") == TOKEN

    form = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'form[data-tool="ticks"]')))
    count = form.find_element(By.CSS_SELECTOR, 'input[name="count"]')
    count.clear()
    count.send_keys("3")
    interval = form.find_element(By.CSS_SELECTOR, 'input[name="interval_ms"]')
    interval.clear()
    interval.send_keys("10")
    form.find_element(By.CSS_SELECTOR, "button.run-button").click()
    run = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, 'article.run[data-state="succeeded"]')))
    bar = run.find_element(By.CSS_SELECTOR, ".progress.run .bar")
    assert bar.get_attribute("aria-valuenow") == "100", bar.get_attribute("aria-valuenow")
    run_id = run.get_attribute("data-run-id")

    driver.find_element(By.ID, "runs-refresh").click()
    wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"][data-state="succeeded"]')))

    driver.set_script_timeout(WAIT)
    seen = driver.execute_async_script("""
        const [runId, token, done] = arguments;
        const seen = [];
        const source = new EventSource(
          `/v1/runs/${runId}/events?access_token=${encodeURIComponent(token)}`);
        for (const name of ["started", "progress", "result"]) {
          source.addEventListener(name, () => {
            seen.push(name);
            if (name === "result") { source.close(); done(seen); }
          });
        }
        source.addEventListener("error", () => { source.close(); done(["error"]); });
    """, run_id, TOKEN)
    assert seen[0] == "started" and seen[-1] == "result", seen

    if problems:
        print("browser page with auth: FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("browser page with auth: all checks passed")
finally:
    driver.quit()
