"""Drives the page at `/` in a real headless Chromium (Debian's chromium and chromium-driver, through
selenium): the forms come from the tools' schemas (descriptions with their `code` rendered), the
token box stays hidden with auth off, a `ticks` run started from its form shows its bar reaching
100% and its result, the browser's EventSource reads a run's SSE, an error is shown in a toast that
leaves, a run whose progress is a tree (`build_report`, a test tool) is drawn nested with ETAs and
cancelled, the runs list shows each run's error and duration, a run started elsewhere is resumed
from the runs list and cancelled, the run view at `/runs/{id}` shows a run's arguments, state,
duration, tree and result, nothing scrolls sideways at 390 px, and an agent run shows its streamed
text once and its calls' sub-tasks under their call.

Every state is saved as a screenshot at 1280 and 390 px wide into $TOOLSTREAM_SCREENSHOTS (when
set), to be looked at.

Usage: browser_page.py http://127.0.0.1:PORT

Nothing is downloaded: the browser and the driver are given by path. Every wait is an explicit
wait on the page's state with a generous limit; there are no sleeps.
"""

import json
import os
import sys
import urllib.request

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from browser_page_screens import NARROW, SCREENSHOTS, WIDE, sideways_overflow, start_chromium
from browser_page_screens import set_width as set_viewport_width
from browser_page_screens import shoot as shoot_widths

URL = sys.argv[1]
WAIT = 60
driver = start_chromium()
wait = WebDriverWait(driver, WAIT)

# What failed; every check runs, and the script fails at the end listing them all.
problems = []


def check(condition, what):
    if not condition:
        problems.append(what)
        print(f"FAILED: {what}", flush=True)


def soon(condition, what, limit=20):
    """Waits up to `limit` seconds for `condition(driver)`; records a problem if it never holds."""
    try:
        return WebDriverWait(driver, limit).until(condition)
    except TimeoutException:
        check(False, what)
        return None


def text_in(css, needle):
    def found(d):
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if needle in element.text:
                return element
        return False
    return found


def set_width(width):
    set_viewport_width(driver, width)


def no_sideways_scroll(state):
    overflow = sideways_overflow(driver)
    check(overflow is None, f"{state} at {NARROW} px scrolls sideways: {overflow}")


def shoot(state):
    shoot_widths(driver, state, check)


def visible_in_viewport(element):
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth;", element)


def on_listed_run(run_id, act):
    """`act(row)` on the runs list's row of `run_id`, found again (and `act` repeated) when the
    list was redrawn under it: the page redraws it every 3 s, which a busy machine can take
    between finding the row and using it. Returns what `act` returns."""
    def attempt(d):
        try:
            return (act(d.find_element(By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"]')),)
        except StaleElementReferenceException:
            return None
    return wait.until(attempt)[0]


def check_run_views(tree_id, run_id, failed_id):
    """The run view of a running tree (cancelled from there), a succeeded and a failed run."""
    soon(lambda d: d.find_elements(By.CSS_SELECTOR, '#run-view .node[data-call-id="1"]'),
         "the run view shows no tree")
    soon(lambda d: any(e.text.endswith("left")
                       for e in d.find_elements(By.CSS_SELECTOR, "#run-view .eta")),
         "the run view shows no ETA for a running run")
    arguments = driver.find_element(By.CSS_SELECTOR, "#run-view .arguments")
    check('"sources": 3' in arguments.text, f"the run view's arguments: {arguments.text!r}")
    shoot("run-view-running")
    # Cancelled from the run view: its state says so, and no ETA is left.
    driver.find_element(By.CSS_SELECTOR, "#run-view button.cancel").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#run-view article.run")
               .get_attribute("data-state") == "cancelled")
    check(not driver.find_elements(By.CSS_SELECTOR, "#run-view .eta:not(:empty)"),
          "a cancelled run still shows an ETA")
    check("CANCELLED" in driver.find_element(By.CSS_SELECTOR, "#run-view .run-error").text,
          "the run view shows no error code for a cancelled run")
    shoot("run-view-cancelled")

    # The run view of the finished ticks run: arguments, state, duration, result.
    driver.get(URL + f"/runs/{run_id}")
    view = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, '#run-view article.run[data-state="succeeded"]')))
    facts = view.find_element(By.CSS_SELECTOR, ".facts").text
    check("succeeded" in facts, f"the run view's state: {facts!r}")
    check("duration" in facts.lower() and facts.endswith("s"),
          f"the run view's duration: {facts!r}")
    check('"count": 5' in view.find_element(By.CSS_SELECTOR, ".arguments").text,
          "the run view shows no arguments")
    check('"count": 5' in view.find_element(By.CSS_SELECTOR, "pre.result").text,
          "the run view shows no result")
    shoot("run-view-succeeded")
    driver.get(URL + f"/runs/{failed_id}")
    view = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, '#run-view article.run[data-state="failed"]')))
    check("PERMISSION_DENIED" in view.find_element(By.CSS_SELECTOR, ".run-error").text,
          "the run view shows no error code")
    shoot("run-view-failed")


def post_run(tool, arguments, labels=None):
    req = urllib.request.Request(
        URL + f"/v1/tools/{tool}/runs",
        data=json.dumps({"arguments": arguments, "options": {"labels": labels or {}}}).encode(),
        method="POST", headers={"accept": "application/json", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=WAIT) as response:
        assert response.status == 202, response.status
        return json.load(response)["runId"]


try:
    set_width(WIDE)
    driver.get(URL + "/")
    assert driver.title == "toolstream", driver.title

    # The ticks form, made from its input schema; its description's `code` rendered as code.
    form = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'form[data-tool="ticks"]')))
    description = form.find_element(By.CSS_SELECTOR, ".description")
    check("`" not in description.text, f"raw backticks in a tool description: {description.text!r}")
    check([c.text for c in description.find_elements(By.CSS_SELECTOR, "code")][:1] == ["count"],
          "a tool description's `count` is not rendered as code")
    # Auth is off: no token box.
    check(not driver.find_element(By.ID, "token-form").is_displayed(),
          "the token box shows with auth off")
    shoot("idle")

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
    line = run.find_element(By.CSS_SELECTOR, ".progress.run").text
    assert "100%" in line, line
    result = run.find_element(By.CSS_SELECTOR, "pre.result")
    assert '"count": 5' in result.text, result.text
    run_id = run.get_attribute("data-run-id")
    assert run_id, "the run's id is shown"
    check(not run.find_elements(By.CSS_SELECTOR, ".eta:not(:empty)"),
          "a finished run still shows an ETA")

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

    # The runs list shows it as succeeded, with its duration.
    row = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"][data-state="succeeded"]')))
    duration = row.find_elements(By.CSS_SELECTOR, "td.duration")
    check(duration and duration[0].text.strip().endswith("s"),
          "the runs list shows no duration for a finished run")
    shoot("succeeded")

    # An error is shown: a path outside the root. Its toast leaves on its own.
    checksum = driver.find_element(By.CSS_SELECTOR, 'form[data-tool="checksum"]')
    paths = checksum.find_element(By.CSS_SELECTOR, 'textarea[name="paths"]')
    paths.send_keys("/etc/passwd")
    checksum.find_element(By.CSS_SELECTOR, "button.run-button").click()
    failed_run = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, 'article.run[data-state="failed"]')))
    failed = failed_run.find_element(By.CSS_SELECTOR, ".run-error")
    assert "PERMISSION_DENIED" in failed.text, failed.text
    failed_id = failed_run.get_attribute("data-run-id")
    wait.until(text_in("#errors .error", "PERMISSION_DENIED"))
    failed_row = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{failed_id}"][data-state="failed"]')))
    check("outside" in failed_row.text or "PERMISSION_DENIED" in failed_row.text,
          f"the runs list shows no error for a failed run: {failed_row.text!r}")
    shoot("failed")
    soon(lambda d: not d.find_elements(By.CSS_SELECTOR, "#errors .error"),
         "an error toast never leaves")

    # A run whose progress is a tree, started from its form: nested bars, ETAs while it runs.
    report = driver.find_element(By.CSS_SELECTOR, 'form[data-tool="build_report"]')
    report.find_element(By.CSS_SELECTOR, 'input[name="sources"]').send_keys("3")
    report.find_element(By.CSS_SELECTOR, 'input[name="step_ms"]').send_keys("400")
    report.find_element(By.CSS_SELECTOR, "button.run-button").click()
    tree = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, 'article.run[data-title="build_report"]')))
    soon(lambda d: tree.find_elements(
        By.CSS_SELECTOR, '.node[data-call-id="1"] .node[data-call-id="1/1"]'),
        "a sub-task is not drawn under its parent")
    soon(lambda d: tree.find_element(By.CSS_SELECTOR, ".progress.run .eta").text.endswith("left"),
         "no ETA is shown for a running run")
    tree_id = tree.get_attribute("data-run-id")
    shoot("running")
    if SCREENSHOTS:  # The README's picture: the running tree at 1280 px.
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", tree)
        driver.save_screenshot(os.path.join(SCREENSHOTS, "readme-running-1280.png"))

    # The run view of the running tree: live, with its arguments and ETAs; then of the finished
    # ticks run and the failed checksum run.
    driver.get(URL + f"/runs/{tree_id}")
    if soon(ec.presence_of_element_located((By.CSS_SELECTOR, "#run-view article.run")),
            "no run view at /runs/{id}"):
        check_run_views(tree_id, run_id, failed_id)

    # Back on the main page: a run started elsewhere (detached, over HTTP) is resumed from the
    # runs list, then cancelled; at 390 px its buttons are on screen.
    driver.get(URL + "/")
    detached_id = post_run("ticks", {"count": 600, "interval_ms": 100}, {"team": "web"})
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, 'form[data-tool="ticks"]')))
    driver.find_element(By.ID, "runs-refresh").click()
    wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{detached_id}"][data-state="running"]')))
    labels = on_listed_run(detached_id, lambda row: [
        label.text for label in row.find_elements(By.CSS_SELECTOR, "td.what .label")])
    check(labels == ["team=web"], f"the runs list does not show the run's labels: {labels}")
    set_width(NARROW)
    no_sideways_scroll("the runs list")

    def on_screen(name):
        def act(row):
            button = row.find_element(By.XPATH, f'.//button[text()="{name}"]')
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            return visible_in_viewport(button)
        return act
    for name in ("Resume", "Cancel"):
        check(on_listed_run(detached_id, on_screen(name)), f"{name} is off screen at 390 px")
    set_width(WIDE)
    on_listed_run(detached_id,
                  lambda row: row.find_element(By.XPATH, './/button[text()="Resume"]').click())
    resumed = wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'article.run[data-run-id="{detached_id}"]')))
    wait.until(lambda d: int(resumed.find_element(By.CSS_SELECTOR, ".progress.run .bar")
                             .get_attribute("aria-valuenow")) > 0)
    resumed.find_element(By.XPATH, './/button[text()="Cancel"]').click()
    wait.until(lambda d: resumed.get_attribute("data-state") == "cancelled")
    assert "CANCELLED" in resumed.find_element(By.CSS_SELECTOR, ".run-error").text
    check(not resumed.find_elements(By.CSS_SELECTOR, ".eta:not(:empty)"),
          "a cancelled run still shows an ETA")
    wait.until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'#runs tr[data-run-id="{detached_id}"][data-state="cancelled"]')))
    shoot("cancelled")

    # An agent run (the test's stand-in model calls ticks and build_report): streamed text shown
    # once, a bar per call, and the report's sub-tasks under its call.
    if os.environ.get("TOOLSTREAM_AGENT_TEST") == "1":
        agent = driver.find_element(By.ID, "agent-form")
        agent.find_element(By.CSS_SELECTOR, 'textarea[name="prompt"]').send_keys("tick")
        agent.find_element(By.CSS_SELECTOR, "button.run-button").click()
        article = wait.until(ec.presence_of_element_located(
            (By.CSS_SELECTOR, 'article.run[data-title="agent"][data-state="succeeded"]')))
        done = article.find_element(By.CSS_SELECTOR, "pre.text")
        assert "Three ticks done." in done.text, done.text
        check(article.text.count("Three ticks done.") == 1,
              f"the agent's answer is shown more than once: {article.text!r}")
        call = article.find_elements(By.CSS_SELECTOR, '.node[data-call-id="call_1"]')
        check(call and "ticks" in call[0].text, "the agent's ticks call is not shown")
        check(call and call[0].find_element(By.CSS_SELECTOR, ".bar")
              .get_attribute("aria-valuenow") == "100", "the agent's ticks call is not at 100%")
        report_call = article.find_elements(By.CSS_SELECTOR, '.node[data-call-id="call_2"]')
        check(report_call and report_call[0].find_elements(
            By.CSS_SELECTOR, '.node[data-call-id="call_2/1"]'),
            "an agent's sub-task is not under its call")
        check(report_call and "sources" in report_call[0].text,
              "an agent's tool call shows no arguments")
        shoot("agent")

    if problems:
        print("browser page: FAILED:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("browser page: all checks passed")
finally:
    driver.quit()
