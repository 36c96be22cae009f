"""The page's run view shows a run's partial results: a `checksum` run of the given files, started
detached over HTTP, opened at `/runs/{id}`, lists one line per file's entry (`files += {...}`), in
order. Headless Chromium, as in browser_page.py; every wait is explicit, no sleeps.

Usage: browser_page_partials.py http://127.0.0.1:PORT FILE...
"""

import json
import sys
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from browser_page_screens import start_chromium

URL, FILES = sys.argv[1], sys.argv[2:]
request = urllib.request.Request(
    URL + "/v1/tools/checksum/runs",
    data=json.dumps({"arguments": {"paths": FILES}}).encode(),
    method="POST",
    headers={"accept": "application/json", "content-type": "application/json"},
)
with urllib.request.urlopen(request, timeout=60) as response:
    run_id = json.load(response)["runId"]

driver = start_chromium()
try:
    driver.get(URL + f"/runs/{run_id}")
    WebDriverWait(driver, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '#run-view article.run[data-state="succeeded"]')
    )
    lines = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#run-view .partials li")]
    assert len(lines) == len(FILES), lines
    for line, name in zip(lines, FILES):
        assert line.startswith("files += {"), line
        assert f'"path":"{name}"' in line, (line, name)
    print("browser page partials: all checks passed", flush=True)
finally:
    driver.quit()
