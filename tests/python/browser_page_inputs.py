"""The page answers runs that ask, in a real headless Chromium (as browser_page.py).

`form` mode (a server with the `how_many` and `confirm` tools of tests/it/input_requests.rs): the
run view of a detached `how_many` run shows its prompt and a JSON form; an answer failing the
schema shows the server's INVALID_ARGUMENT naming the field beside the form, which stays; a
valid answer resolves the request (the form gives way to the outcome) and the run succeeds with
the answer in its result. A `confirm` run shows Yes/No/Decline; answered elsewhere (over HTTP),
its form disappears and the outcome shows.

`approval` mode (a server with an agent whose stand-in model calls `ticks`): the runs list shows
the agent run's approval with the tool and its arguments; Approve runs the call and the run
succeeds.

Every state is checked at 390 px wide for sideways scrolling (and saved as a screenshot when
$TOOLSTREAM_SCREENSHOTS is set). Every wait is explicit; there are no sleeps.

Usage: browser_page_inputs.py form|approval http://127.0.0.1:PORT
"""

import json
import sys
import urllib.request

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from browser_page_screens import shoot as shoot_widths
from browser_page_screens import start_chromium

MODE, URL = sys.argv[1], sys.argv[2]
WAIT = 60
problems = []


def check(condition, what):
    if not condition:
        problems.append(what)
        print(f"FAILED: {what}", flush=True)


def post(path, body):
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"accept": "application/json", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.load(response)


def get(path):
    with urllib.request.urlopen(URL + path, timeout=WAIT) as response:
        return response.read().decode()


def until(driver, condition, what):
    """Waits for `condition(driver)`; records a problem (and returns None) if it never holds."""
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        check(False, what)
        return None


def run_view_form(driver, tool):
    """Starts a detached run of `tool`, opens its run view; returns the run's id and the form of
    its open request (None when none shows)."""
    run_id = post(f"/v1/tools/{tool}/runs", {"arguments": {}})["runId"]
    driver.get(URL + f"/runs/{run_id}")
    form = until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-view form.input-request"),
                 f"the run view of a {tool} run shows no form for its open request")
    return run_id, form[0] if form else None


def form_mode(driver):
    _, form = run_view_form(driver, "how_many")
    if form is None:
        return
    check("How many copies?" in form.text, f"the form lacks the prompt: {form.text!r}")
    card = driver.find_element(By.CSS_SELECTOR, "#run-view article.run")
    check(card.get_attribute("data-state") == "input_required",
          f"the run is shown {card.get_attribute('data-state')!r}, not input_required")
    check(bool(form.find_elements(By.CSS_SELECTOR, "textarea")),
          "an object schema is not answered in a JSON textarea")
    check(bool(form.find_elements(By.CSS_SELECTOR, "button.decline")), "no Decline button")
    shoot_widths(driver, "input-form", check)

    answer = form.find_element(By.CSS_SELECTOR, "textarea")
    answer.send_keys('{"count": 0}')
    form.find_element(By.CSS_SELECTOR, "button.send").click()
    error = until(driver, lambda d: next(
        (e for e in d.find_elements(By.CSS_SELECTOR, "#run-view .input-error") if e.is_displayed()),
        False), "a refused answer shows no error beside the form")
    if error:
        check("INVALID_ARGUMENT" in error.text and "count" in error.text,
              f"the error does not say INVALID_ARGUMENT naming the field: {error.text!r}")
    check(form.is_displayed() and bool(form.find_elements(By.CSS_SELECTOR, "textarea")),
          "the form went away after a refused answer")
    shoot_widths(driver, "input-refused", check)

    answer.clear()
    answer.send_keys('{"count": 2}')
    form.find_element(By.CSS_SELECTOR, "button.send").click()
    outcome = until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#run-view .input-outcome[data-outcome="answered"]'),
        "the answered request shows no outcome")
    if outcome:
        check('{"count":2}' in outcome[0].text, f"the outcome lacks the answer: {outcome[0].text!r}")
    check(not driver.find_elements(By.CSS_SELECTOR, "#run-view form.input-request"),
          "the form stays after the request resolved")
    until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#run-view article.run[data-state="succeeded"]'),
        "the answered run never shows succeeded")
    result = driver.find_element(By.CSS_SELECTOR, "#run-view pre.result").text
    check('"answered"' in result and '"count": 2' in result,
          f"the run's result lacks the answer: {result!r}")
    shoot_widths(driver, "input-answered", check)

    # Answered elsewhere: the form disappears and the outcome shows.
    run_id, form = run_view_form(driver, "confirm")
    if form is None:
        return
    buttons = [b.text for b in form.find_elements(By.CSS_SELECTOR, "button")]
    check(buttons == ["Yes", "No", "Decline"], f"a boolean's buttons are {buttons}")
    request_id = form.get_attribute("data-request-id")
    post(f"/v1/runs/{run_id}/inputs/{request_id}", {"value": True})
    outcome = until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#run-view .input-outcome[data-outcome="answered"]'),
        "a request answered elsewhere shows no outcome")
    if outcome:
        check("Overwrite report.pdf?" in outcome[0].text and "answered: true" in outcome[0].text,
              f"the outcome reads {outcome[0].text!r}")
    check(not driver.find_elements(By.CSS_SELECTOR, "#run-view form.input-request"),
          "the form stays after the request was answered elsewhere")
    until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, '#run-view article.run[data-state="succeeded"]'),
        "the run answered elsewhere never shows succeeded")


def approval_mode(driver):
    run_id = post("/v1/agent/runs", {"prompt": "tick twice", "approvalRequired": ["ticks"]})["runId"]
    driver.get(URL + "/")
    selector = f'#runs tr.inputs-row[data-run-id="{run_id}"] form.input-request.approval'
    form = until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, selector),
                 "the runs list shows no approval form")
    if not form:
        return
    form = form[0]
    tool = form.find_element(By.CSS_SELECTOR, ".approval-tool").text
    check("ticks" in tool, f"the approval does not name the tool: {tool!r}")
    arguments = form.find_element(By.CSS_SELECTOR, ".approval-arguments").text
    check('"count": 2' in arguments, f"the approval does not show the arguments: {arguments!r}")
    row = driver.find_element(By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"]')
    check(row.get_attribute("data-state") == "input_required",
          f"the listed run is {row.get_attribute('data-state')!r}, not input_required")
    shoot_widths(driver, "input-approval-list", check)

    form.find_element(By.CSS_SELECTOR, "button.send").click()
    until(driver, lambda d: d.find_elements(
        By.CSS_SELECTOR, f'#runs tr[data-run-id="{run_id}"][data-state="succeeded"]'),
        "the approved run never shows succeeded in the list")
    check(not driver.find_elements(By.CSS_SELECTOR, selector), "the approval form stays")
    events = get(f"/v1/runs/{run_id}/events?after=0")
    check("event: tool_call_finished" in events, "the approved call never ran")
    check("INPUT_OUTCOME_ANSWERED" in events, "the approval was not recorded as answered")


driver = start_chromium()
try:
    {"form": form_mode, "approval": approval_mode}[MODE](driver)
finally:
    driver.quit()
if problems:
    sys.exit("browser page inputs: " + "; ".join(problems))
print(f"browser page inputs ({MODE}): all checks passed", flush=True)
