"""The page in a real browser: Debian's headless Chromium, driven by Selenium, against a server on
127.0.0.1 (shipped weights, small generated images, CPU)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import write_image
from PIL import Image

from stylize.images import limit_long, load_image, pil_to_tensor, resize_short, tensor_to_pil
from stylize.options import STYLE_SIZE
from stylize.stylizer import Stylizer
from stylize.web import create_app, serving

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("needs Debian's headless browser: apt-get install chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

TIMEOUT = 60  # s, for each wait: a 2-core CPU may be busy with other work


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def shown_image(driver: webdriver.Chrome) -> Image.Image:
    """The page's result <img> as the browser decoded it, read back through a canvas."""
    data = driver.execute_script(
        """const img = document.getElementById("result");
        const canvas = document.createElement("canvas");
        [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
        canvas.getContext("2d").drawImage(img, 0, 0);
        return canvas.toDataURL("image/png");"""
    )
    return Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1])))


def final_result(driver: webdriver.Chrome, alpha: str, size: str | None = None) -> bool:
    result = driver.find_element(By.ID, "result")
    settings = result.get_attribute("data-alpha") == alpha and size in (None, result.get_attribute("data-size"))
    return result.get_attribute("data-final") == "true" and settings


def test_the_page_stylizes_an_uploaded_pair_and_shows_errors(tmp_path, browser, encoder_path):
    stylizer = Stylizer.from_pretrained(encoder_path, device="cpu")
    photo = write_image(tmp_path / "photo.png", 96, 128, 1)
    painting = write_image(tmp_path / "painting.png", 96, 96, 2)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    wait = WebDriverWait(browser, TIMEOUT)
    with serving(create_app(stylizer)) as url:
        browser.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#size option"))  # the page has its settings
        browser.find_element(By.ID, "content-file").send_keys(str(photo))
        browser.find_element(By.ID, "style-file").send_keys(str(painting))
        wait.until(lambda d: final_result(d, "1"))
        download = browser.find_element(By.ID, "download")
        assert "disabled" not in download.get_attribute("class")
        browser.find_element(By.ID, "alpha").send_keys(Keys.ARROW_LEFT * 10)  # 1 -> 0.5 in steps of 0.05
        assert browser.find_element(By.ID, "alpha-value").text == "0.50"
        assert "disabled" in download.get_attribute("class")  # at once: the alpha-1 picture is not offered
        assert "stale" in browser.find_element(By.ID, "result").get_attribute("class") or final_result(browser, "0.5")
        wait.until(lambda d: final_result(d, "0.5"))
        shown = pil_to_tensor(shown_image(browser))
        assert download.get_attribute("download") == "photo_stylized_painting.png"  # the photo's own size
        assert "disabled" not in download.get_attribute("class")
        size = Select(browser.find_element(By.ID, "size"))
        assert size.first_selected_option.text == "the photo's size (up to 1024 px)"  # by default

        big = write_image(tmp_path / "big.png", 300, 400, 3)  # a smaller size than the photo's is said
        browser.find_element(By.ID, "content-file").send_keys(str(big))
        size.select_by_visible_text("256 px")
        wait.until(
            lambda d: final_result(d, "0.5") and d.find_element(By.ID, "result").get_attribute("data-size") == "256"
        )
        assert download.get_attribute("download") == "big_stylized_painting_256x192.png"

        browser.find_element(By.ID, "style-file").send_keys(str(not_an_image))
        error = browser.find_element(By.ID, "error")
        wait.until(lambda d: error.is_displayed())
        assert error.text == "painting (notes.png): cannot read image: not a known image format"
        assert not browser.find_element(By.ID, "result").is_displayed()  # no result of other inputs stays
        assert "disabled" in download.get_attribute("class")
        logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "/api/stylize" not in e["message"]]
    assert not logs  # nothing blocked by the page's policy, nothing missing (the 400 above aside)

    content = limit_long(load_image(photo), 512)
    style = resize_short(load_image(painting), STYLE_SIZE)
    want, full = (pil_to_tensor(tensor_to_pil(stylizer.stylize(content, style, a))) for a in (0.5, 1.0))
    assert shown.shape == want.shape == (3, 96, 128)
    assert (shown - want).abs().max() <= 1 / 255  # the alpha 0.5 result of this pair...
    assert (shown - full).abs().mean() > 5 * (shown - want).abs().mean() + 0.01  # ...not the alpha 1 one


def test_the_page_fits_a_narrow_screen_without_scrolling_sideways(browser, encoder_path):
    stylizer = Stylizer.from_pretrained(encoder_path, device="cpu")
    with serving(create_app(stylizer)) as url:
        browser.set_window_size(480, 900)
        try:
            browser.get(url)
            WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#size option"))
            wide, seen = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert wide <= seen, (wide, seen)
        finally:
            browser.set_window_size(1280, 900)
