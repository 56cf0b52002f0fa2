"""The drawing board in a real headless Chromium (Selenium): paint, Draw, Draw again, Back.

Skips when selenium, chromium or chromedriver are absent. Saves screenshots to the test's
temporary folder as artefacts; with PYFILL_UPDATE_DOCS=1 the final one also replaces the
screenshot in docs/images/board.png.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "board.png"

pytestmark = pytest.mark.skipif(not (Path(CHROMEDRIVER).exists() and CHROMIUM),
                                reason="needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")


@pytest.fixture()
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def canvas_pixel(driver, canvas_id: str, x: int, y: int) -> list[int]:
    return driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "return Array.from(c.getContext('2d').getImageData(arguments[1], arguments[2], 1, 1).data);",
        canvas_id, x, y)


def drag(driver, canvas, points: list[tuple[int, int]]) -> None:
    """Press at the first canvas pixel, move through the others, release (zoomed canvas:
    offsets from the element's centre in CSS pixels)."""
    scale = canvas.size["width"] / int(canvas.get_attribute("width"))
    cx, cy = canvas.size["width"] / 2, canvas.size["height"] / 2

    def offset(p):
        return int((p[0] + 0.5) * scale - cx), int((p[1] + 0.5) * scale - cy)

    chain = ActionChains(driver).move_to_element_with_offset(canvas, *offset(points[0])).click_and_hold()
    prev = offset(points[0])
    for p in points[1:]:
        o = offset(p)
        chain = chain.move_by_offset(o[0] - prev[0], o[1] - prev[1])
        prev = o
    chain.release().perform()


def result_png(driver) -> np.ndarray:
    src = driver.find_element(By.ID, "result").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def press_draw_and_wait(driver, count: int) -> str:
    driver.find_element(By.ID, "draw").click()
    WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == count
                                     or "failed" in d.find_element(By.ID, "status").text)
    assert "failed" not in driver.find_element(By.ID, "status").text, driver.find_element(By.ID, "status").text
    return driver.find_element(By.ID, "result").get_attribute("src")


def test_paint_draw_draw_again_and_go_back(board, browser, tmp_path):
    side = board.engine.manifest.size.fixed[0]  # the default canvas is the model's size

    def at(x: int, y: int) -> tuple[int, int]:
        """A point given on a 128-pixel canvas, on this one."""
        return x * side // 128, y * side // 128

    browser.get(board.url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    legend = {e["name"]: e["colour"] for e in board.legend}
    assert len(browser.find_elements(By.CSS_SELECTOR, "#legend li")) == len(board.legend)
    # Before the first Draw: a hint, no (broken) result image.
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert "press Draw" in browser.find_element(By.ID, "result-empty").text

    # Label mode: paint a water region (a pencil line, then fill it wider with a bigger brush).
    labels_canvas = browser.find_element(By.ID, "labels-canvas")
    assert canvas_pixel(browser, "labels-canvas", *at(40, 90))[:3] == legend["grass"]
    browser.find_element(By.CSS_SELECTOR, f"#legend li[data-label='{board.legend[6]['index']}']").click()
    browser.find_element(By.CSS_SELECTOR, "#brush-size option[value='15']").click()
    drag(browser, labels_canvas, [at(20, 90), at(60, 92), at(100, 95)])
    assert canvas_pixel(browser, "labels-canvas", *at(40, 90))[:3] == legend["water"]
    assert canvas_pixel(browser, "labels-canvas", *at(40, 120))[:3] == legend["grass"]

    # Colour mode: an orange stroke across the sky, on the stroke layer only.
    browser.find_element(By.CSS_SELECTOR, "#palette button[data-colour='#f5821e']").click()
    browser.find_element(By.CSS_SELECTOR, "#brush-size option[value='5']").click()
    drag(browser, labels_canvas, [at(10, 10), at(60, 12), at(118, 10)])
    assert canvas_pixel(browser, "strokes-canvas", *at(60, 12)) == [245, 130, 30, 255]
    assert canvas_pixel(browser, "labels-canvas", *at(60, 12))[:3] == legend["sky"]
    first_src = press_draw_and_wait(browser, 1)
    assert browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "result-empty").is_displayed()
    first = result_png(browser)
    assert first.shape[:2] == (side, side)
    assert "s" in browser.find_element(By.ID, "result-time").text
    browser.save_screenshot(str(tmp_path / "board-1.png"))

    # Another stroke colour, Draw again: a different image.
    browser.find_element(By.ID, "clear-strokes").click()
    browser.find_element(By.CSS_SELECTOR, "#palette button[data-colour='#1e88e5']").click()
    drag(browser, labels_canvas, [at(10, 10), at(60, 12), at(118, 10)])
    assert canvas_pixel(browser, "strokes-canvas", *at(60, 12)) == [30, 136, 229, 255]
    second_src = press_draw_and_wait(browser, 2)
    assert second_src != first_src
    second = result_png(browser)
    top = 40 * side // 128
    sky1, sky2 = first[:top].reshape(-1, 3).mean(0), second[:top].reshape(-1, 3).mean(0)
    assert sky1[0] - sky1[2] > sky2[0] - sky2[2]  # the orange-stroked sky is redder than the blue one

    # Back shows the first result again; clicking history entry 1 restores its orange stroke.
    browser.find_element(By.ID, "back").click()
    assert browser.find_element(By.ID, "result").get_attribute("src") == first_src
    assert canvas_pixel(browser, "strokes-canvas", *at(60, 12)) == [30, 136, 229, 255]
    browser.find_elements(By.CSS_SELECTOR, "#history li img")[0].click()
    WebDriverWait(browser, 30).until(lambda d: canvas_pixel(d, "strokes-canvas", *at(60, 12)) == [245, 130, 30, 255])
    assert canvas_pixel(browser, "labels-canvas", *at(40, 90))[:3] == legend["water"]
    assert browser.find_element(By.ID, "download").get_attribute("href") == first_src

    shot = tmp_path / "board.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    if os.environ.get("PYFILL_UPDATE_DOCS") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_template_and_a_refused_draw_show_in_the_page(board, browser):
    browser.get(board.url)
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    browser.find_element(By.CSS_SELECTOR, "#templates option[value='lake']").click()
    browser.find_element(By.ID, "load-template").click()
    WebDriverWait(browser, 30).until(lambda d: "template lake" in d.find_element(By.ID, "status").text)
    colours = {tuple(e["colour"]) for e in board.legend}
    used = {tuple(canvas_pixel(browser, "labels-canvas", x, y)[:3]) for x in range(0, 128, 9) for y in range(0, 128, 9)}
    assert used <= colours and len(used) >= 3

    # A colour outside the legend (painted by script) is refused by the server, and said so.
    browser.execute_script("const c = document.getElementById('labels-canvas').getContext('2d');"
                           "c.fillStyle = '#010203'; c.fillRect(0, 0, 4, 4);")
    browser.find_element(By.ID, "draw").click()
    WebDriverWait(browser, 60).until(lambda d: "failed" in d.find_element(By.ID, "status").text)
    assert "legend" in browser.find_element(By.ID, "status").text
    assert not browser.find_elements(By.CSS_SELECTOR, "#history li")
