"""The web page as a user sees it, in headless Chromium: the product field (SPOC/TICA) and a
target placeholder that is not cut off, on a desktop and a phone-sized window.

One small local stack serves a SPOC and a TICA cube of the same sector/camera/CCD.
Screenshots go to tests/artifacts/ (skipped where Chromium is not installed).
"""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from cubecut.ingest.run import ingest
from cubecut.synth import make_sector
from cubecut_infra.local.stack import LocalStack
from stack_fixtures import _forget_process_state
from test_cutout import sky
from test_web import ARTIFACTS, NO_CHROMIUM, _browser, _submit

pytestmark = [pytest.mark.slow, pytest.mark.skipif(NO_CHROMIUM, reason="headless Chromium is not installed")]
BUCKET = "cubecut-web-page-tests"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(API URL, a target on both cubes as 'ra dec')."""
    from cubecut.cutout import load_index

    saved = dict(os.environ)
    stack = LocalStack(bucket=BUCKET)
    try:
        stack.start()
        folder = tmp_path_factory.mktemp("web-page")
        for product in ("spoc", "tica"):
            files = make_sector(folder / product, sector=1, camera=1, ccd=1, frames=4, shape=(64, 64),
                                product=product, seed=3)
            ingest([str(p) for p in files], f"s3://{BUCKET}/cubes/")
        coord = sky(load_index(f"s3://{BUCKET}/cubes/tess-s0001-1-1-cube.fits"), 32.0, 32.0)
        yield stack.api_url, f"{coord.ra.deg:.6f} {coord.dec.deg:.6f}"
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved)
        _forget_process_state()


PLACEHOLDER_FITS = """
    const input = document.getElementById("target");
    const style = getComputedStyle(input);
    const text = getComputedStyle(input, "::placeholder");
    const context = document.createElement("canvas").getContext("2d");
    context.font = `${text.fontWeight} ${text.fontSize} ${text.fontFamily}`;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return [context.measureText(input.placeholder).width, room];
"""


def rows(driver) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, "#sector-table tbody tr")]


def test_product_field_and_placeholder(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    api_url, target = page
    driver = _browser()
    try:
        driver.get(f"{api_url}/")
        for width in (1100, 390):  # a desktop window and a phone
            driver.set_window_size(width, 1200)
            text, room = driver.execute_script(PLACEHOLDER_FITS)
            assert text <= room, f"the placeholder needs {text:.0f} px, the field has {room:.0f} at {width} px"
        driver.set_window_size(1100, 1500)
        product = Select(driver.find_element(By.ID, "product"))
        assert [o.text for o in product.options] == ["SPOC", "TICA"] and product.first_selected_option.text == "SPOC"

        assert _submit(driver, target, 9, "") == "done"
        assert rows(driver) == [["tess-s0001-1-1", "1", "1", "1"]]
        product.select_by_visible_text("TICA")
        assert _submit(driver, target, 9, "") == "done"
        assert rows(driver) == [["tica-s0001-1-1", "1", "1", "1"]]
        assert "product=TICA" in driver.find_element(By.ID, "download").get_attribute("href")
        assert "TICA cube(s) hold" in driver.find_element(By.ID, "status").text
        preview = driver.find_element(By.ID, "preview")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview) == 980
        ARTIFACTS.mkdir(exist_ok=True)
        driver.set_window_size(1100, driver.execute_script("return document.documentElement.scrollHeight") + 120)
        driver.save_screenshot(str(ARTIFACTS / "web-page-tica.png"))
        driver.set_window_size(390, 900)
        driver.get(f"{api_url}/")
        driver.save_screenshot(str(ARTIFACTS / "web-page-phone.png"))
    finally:
        driver.quit()
