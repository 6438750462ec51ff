"""Inspect's Intervene, Follow a point and Attention summaries in a real browser (Debian's chromium via Playwright;
see test_browser.py): generate, open Inspect, run an intervention and see both clips play with the readings and
X-T slices, click a point on the frame and see its track, then the summaries."""
from __future__ import annotations

import pytest
from test_browser import ARTIFACTS, CHROMIUM, _need_chromium

from conftest import launched_app

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

PLAYING = """(sel) => { const v = document.querySelector(sel + ' video');
    return v && !v.paused && v.currentTime > 0; }"""
IMAGE = """(sel) => { const i = document.querySelector(sel + ' img'); return i && i.complete && i.naturalWidth > 0; }"""


def test_intervene_track_and_summaries(tiny_checkpoint):
    _need_chromium()
    from playwright.sync_api import sync_playwright
    with launched_app(tiny_checkpoint) as (_, url), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(120_000)
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url)
            pg.fill("#prompt textarea", "a red square quickly spinning")
            pg.click("#generate-btn")
            pg.wait_for_function(PLAYING, arg="#clip", polling=50)
            pg.click("button[role=tab]:has-text('Inspect')")

            pg.click("#intervene-box button")                              # open the accordion
            pg.click("#iv-run")                                            # default part: tattn:all, identity
            pg.wait_for_function(PLAYING, arg="#iv-original", polling=50)
            pg.wait_for_function(PLAYING, arg="#iv-intervened", polling=50)
            pg.wait_for_function("() => (document.querySelector('#iv-readings') || {}).innerText?.includes('colour')")
            pg.locator("#iv-xt").scroll_into_view_if_needed()
            pg.wait_for_function(IMAGE, arg="#iv-xt")
            assert "tattn:all=identity" in pg.inner_text("#iv-status")

            pg.click("#track-box button")                                  # opening it shows the frame to click
            pg.wait_for_selector("#track-picker img")
            pg.locator("#track-picker").scroll_into_view_if_needed()       # images load lazily: show them
            pg.wait_for_function(IMAGE, arg="#track-picker")
            box = pg.locator("#track-picker img").bounding_box()
            pg.mouse.click(box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.60)
            pg.wait_for_selector("#track-img img")
            pg.locator("#track-img").scroll_into_view_if_needed()
            pg.wait_for_function(IMAGE, arg="#track-img")
            assert pg.input_value("#track-x input") == "4" and pg.input_value("#track-y input") == "9"

            pg.click("#summary-box button")
            pg.click("#summary-btn")
            pg.wait_for_function("() => !!document.querySelector('#summary-plot .js-plotly-plot')")
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / "studio-intervene.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
