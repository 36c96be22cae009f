"""What the browser page tests share: a headless Chromium given by path (nothing downloaded), and
screenshots of a state at 1280 and 390 px wide, with the check that nothing scrolls sideways at
390 px.

Screenshots go to $TOOLSTREAM_SCREENSHOTS when it is set (tests/it/web_page.rs sets it to
target/page-screenshots/), named `<state>-<width>.png`, the page's whole height.
"""

import base64
import os
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("TOOLSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TOOLSTREAM_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = os.environ.get("TOOLSTREAM_SCREENSHOTS", "")
WIDE, NARROW = 1280, 390


def start_chromium():
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
        "--hide-scrollbars",
        f"--user-data-dir={tempfile.mkdtemp(prefix='toolstream-chromium-')}",
    ]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def set_width(driver, width):
    """Makes the viewport `width` CSS pixels wide (the window's outer width is more)."""
    driver.set_window_rect(width=width, height=900)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:
        driver.set_window_rect(width=2 * width - inner, height=900)


def sideways_overflow(driver):
    """`None`, or how the page scrolls sideways: (scrollWidth, clientWidth)."""
    scroll, client = driver.execute_script(
        "const d = document.documentElement; return [d.scrollWidth, d.clientWidth];")
    return None if scroll <= client else (scroll, client)


def shoot(driver, state, check):
    """Saves the page in `state` at both widths; at 390 px, `check`s that nothing scrolls
    sideways. Leaves the viewport 1280 px wide."""
    for width in (WIDE, NARROW):
        set_width(driver, width)
        if width == NARROW:
            overflow = sideways_overflow(driver)
            check(overflow is None, f"{state} at {NARROW} px scrolls sideways: {overflow}")
        if SCREENSHOTS:
            metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            height = min(int(metrics["cssContentSize"]["height"]), 6000)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
            with open(os.path.join(SCREENSHOTS, f"{state}-{width}.png"), "wb") as out:
                out.write(base64.b64decode(shot["data"]))
    set_width(driver, WIDE)
