"""The Compare tab in a real browser (Debian's chromium via Playwright; see test_browser.py): open the tab, run one
comparison, see the two clips play (one animation) with the X-T slices and both measurements."""
from __future__ import annotations

import time

import pytest
from test_app_compare import cascade_env, quick_checkpoint  # noqa: F401 - fixtures
from test_browser import ARTIFACTS, CHROMIUM, _need_chromium

from conftest import launched_app

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def test_compare_tab_end_to_end(quick_checkpoint, cascade_env):  # noqa: F811
    _need_chromium()
    from playwright.sync_api import sync_playwright
    with launched_app(quick_checkpoint) as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(120_000)
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url)
            pg.click("button[role=tab]:has-text('Compare')")
            pg.wait_for_selector("#compare-btn")
            assert "stunet compare" in pg.inner_text("#compare-plot-caption")      # no shipped plot: says how
            t0 = time.perf_counter()
            pg.click("#compare-btn")
            pg.wait_for_function("""() => { const v = document.querySelector('#compare-video video');
                return v && !v.paused && v.currentTime > 0; }""", polling=50)
            done = time.perf_counter() - t0
            pg.wait_for_function("() => (document.querySelector('#compare-status') || {}).innerText?.includes('Done')")
            assert "STUNet" in pg.inner_text("#compare-stunet") and "Cascade" in pg.inner_text("#compare-cascade")
            assert "period" in pg.inner_text("#compare-stunet") + pg.inner_text("#compare-cascade") or \
                "not measurable" in pg.inner_text("#compare-stunet")
            pg.locator("#compare-xt").scroll_into_view_if_needed()
            pg.wait_for_function("() => { const i = document.querySelector('#compare-xt img'); return i && i.complete"
                                 " && i.naturalWidth > 0; }")
            size = pg.locator("#compare-video video").evaluate("v => [v.videoWidth, v.videoHeight]")
            assert size[0] > 1.5 * size[1]                                          # both clips in one animation
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / "studio-compare.png"), full_page=True)
            assert not errors, errors
            print(f"Compare -> playing {done:.2f} s (tiny models)")
        finally:
            browser.close()
