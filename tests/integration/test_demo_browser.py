"""The demo page in headless Chromium (Debian's chromium + chromium-driver, Selenium).

Uploads a real held-out digit, waits for the label, the top-k bars and the explanation
picture; switches to the segmenter and the pipeline and waits for their pictures; draws a
digit on the canvas and gets a prediction; shows a server error in words; checks the page at
phone width. With CVSERVE_SCREENSHOTS=1 the server runs the shipped defaults (defaults/, see
tests/conftest.py) and the screenshots go to docs/demo/ (the README shows them); otherwise to
a temp folder, so a test run never rewrites committed files.

Skipped, saying why, where Chromium, its driver or Selenium is missing (`make install-browser`).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from imaging import png

from tools.demo.server import DemoServer
from training.data import build_splits

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60

if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    MISSING = (
        "Chromium is not installed (/usr/bin/chromium, /usr/bin/chromedriver): "
        "`make install-browser` installs Debian's chromium and chromium-driver"
    )
    if os.environ.get("CI") == "true":  # CI installs it (.ci/run): the page must be tested
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed: `make install`"
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1280,860")
    # The driver is named explicitly: Selenium Manager would try to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CVSERVE_SCREENSHOTS") == "1":
        folder = REPO_ROOT / "docs" / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, tiny_models: ModuleType) -> dict[str, Path]:
    """A held-out digit (test split), a generated scene and a file that is no image."""
    folder = tmp_path_factory.mktemp("demo-images")
    splits = build_splits("digits", seed=0)
    image, _ = splits.test[0]
    scene, _ = tiny_models.scene_with_digits(seed=0, index=0)
    paths = {"digit": folder / "digit.png", "scene": folder / "scene.png"}
    paths["digit"].write_bytes(png(image))
    paths["scene"].write_bytes(png(scene))
    paths["garbage"] = folder / "notes.png"
    paths["garbage"].write_bytes(b"this is not an image\n")
    return paths


def wait_for(driver: object, condition: Callable[[object], object], what: str) -> object:
    """Wait for `condition`; on timeout fail with what was awaited and the page's errors."""
    try:
        return WebDriverWait(driver, WAIT_S).until(condition)
    except Exception as exc:
        errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".error") if e.text]
        raise AssertionError(f"timed out waiting for {what}; errors shown: {errors}") from exc


def ready(element_id: str) -> Callable[[object], bool]:
    def check(driver: object) -> bool:
        element = driver.find_element(By.ID, element_id)
        return element.get_attribute("data-ready") == "1" and element.is_displayed()

    return check


def save_full_page(driver: object, path: Path) -> None:
    """A screenshot of the whole page, not just the window (Chromium's DevTools protocol)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))


def choose_model(driver: object, value: str) -> None:
    Select(driver.find_element(By.ID, "model-select")).select_by_value(value)


def upload(driver: object, path: Path) -> None:
    driver.find_element(By.ID, "file-input").send_keys(str(path))


def test_demo_page_in_chromium(
    demo: DemoServer, browser: object, files: dict[str, Path], shots: Path
) -> None:
    driver = browser
    driver.get(demo.url)
    wait_for(
        driver,
        lambda d: len(Select(d.find_element(By.ID, "model-select")).options) >= 3,
        "the model list",
    )
    labels = [o.text for o in Select(driver.find_element(By.ID, "model-select")).options]
    assert {"digit_classifier", "digit_segmenter", "digit_pipeline"} <= set(labels)

    # A held-out digit: the label, the top-k bars and the explanation overlay.
    choose_model(driver, "classification:digit_classifier")
    upload(driver, files["digit"])
    wait_for(driver, ready("result-label"), "the label")
    wait_for(driver, ready("heatmap-img"), "the explanation picture")
    assert driver.find_element(By.ID, "result-label").text in [str(i) for i in range(10)]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#topk-bars .bar")) == 5
    assert "ms" in driver.find_element(By.ID, "latency-list").text
    driver.save_screenshot(str(shots / "classifier.png"))

    # The segmentation overlay with its legend, then the pipeline's boxes, on a scene.
    upload(driver, files["scene"])
    choose_model(driver, "segmentation:digit_segmenter")
    wait_for(driver, ready("mask-img"), "the segmentation picture")
    rows = driver.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
    assert any("background" in r.text for r in rows), [r.text for r in rows]
    driver.save_screenshot(str(shots / "segmenter.png"))
    choose_model(driver, "pipeline:digit_pipeline")
    wait_for(driver, ready("pipeline-canvas"), "the pipeline picture")
    assert driver.find_element(By.ID, "pipeline-labels").text not in ("", "…", "–")
    driver.save_screenshot(str(shots / "pipeline.png"))

    # A server error is shown in words.
    choose_model(driver, "classification:digit_classifier")
    upload(driver, files["garbage"])
    error = wait_for(
        driver,
        lambda d: (
            d.find_element(By.ID, "predict-error").is_displayed()
            and d.find_element(By.ID, "predict-error")
        ),
        "the error message",
    )
    assert "could not be decoded" in error.text
    driver.save_screenshot(str(shots / "error.png"))

    # Draw a digit: a prediction comes back for the drawing.
    canvas = driver.find_element(By.ID, "draw-canvas")
    (
        ActionChains(driver)
        .move_to_element_with_offset(canvas, 0, -90)
        .click_and_hold()
        .move_by_offset(0, 60)
        .move_by_offset(0, 60)
        .move_by_offset(0, 60)
        .release()
        .perform()
    )
    wait_for(
        driver,
        lambda d: "drawing.png" in d.find_element(By.ID, "preview-caption").text,
        "the drawing as the input",
    )
    wait_for(driver, ready("result-label"), "the drawing's label")
    wait_for(driver, ready("heatmap-img"), "the drawing's explanation")
    driver.save_screenshot(str(shots / "drawing.png"))

    # Phone width: one column, nothing wider than the screen.
    driver.set_window_size(390, 844)
    upload(driver, files["digit"])
    wait_for(driver, ready("heatmap-img"), "the explanation at phone width")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
    save_full_page(driver, shots / "phone.png")
