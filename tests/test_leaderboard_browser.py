"""The leaderboard page in a real headless browser (Debian's Chromium + chromedriver, which
.ci/run installs): it loads without console errors, the tables sort, the images render."""
from __future__ import annotations

import json
import shutil

import pytest

from helpers import m, rec

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    import os

    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        if os.environ.get("CI"):  # .ci/run installs them: missing there is a failure, not a skip
            pytest.fail("Chromium or chromedriver is missing in CI")
        pytest.skip("Chromium is not installed (`apt-get install chromium chromium-driver`; .ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--allow-file-access-from-files"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def test_page_loads_sorts_and_shows_images(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from unlearnbench.report import build

    runs = tmp_path / "runs"
    recs = [rec("alpha", t, m(100, 95, 95, 10)) for t in range(3)] + \
           [rec("beta", t, m(90, 80, 85, 30)) for t in range(3)] + [rec("gamma", 0, m(97, 90, 93, 15))]
    for r in recs:
        p = runs / r["_file"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "_file"}))
    build(runs, tmp_path / "lb")
    browser.get((tmp_path / "lb" / "index.html").as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors

    table = browser.find_element(By.CSS_SELECTOR, "table.sortable")
    names = lambda: [r.find_elements(By.TAG_NAME, "td")[0].text for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    header = {h.text: h for h in table.find_elements(By.TAG_NAME, "th")}
    col = list(header).index("Acc Df")

    def values():
        return [float(r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-sort"))
                for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    header["Acc Df"].click()  # ascending by forget accuracy
    asc = names()
    assert asc.index("beta") < asc.index("gamma") < asc.index("alpha")
    assert values() == sorted(values())
    header["Acc Df"].click()  # and descending
    assert values() == sorted(values(), reverse=True) and names()[-1] == "beta"
    header["Method"].click()
    assert names() == sorted(names(), key=str.lower)  # localeCompare: case-insensitive

    imgs = browser.find_elements(By.TAG_NAME, "img")
    assert imgs, "no plot on the page"
    for img in imgs:
        assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0, \
            img.get_attribute("src")
