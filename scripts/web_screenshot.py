"""Make the README's picture of the web page, docs/web.jpg: the bundled examples stylized for real
in Debian's headless Chromium (apt-get install chromium chromium-driver; selenium, the dev extra).

    python scripts/web_screenshot.py
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from stylize.stylizer import Stylizer
from stylize.web import create_app, serving

OUT = Path(__file__).resolve().parent.parent / "docs" / "web.jpg"


def screenshot(url: str, driver: webdriver.Chrome) -> bytes:
    driver.get(url)
    wait = WebDriverWait(driver, 300)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".examples button"))
    for field, name in (("content", "astronaut.jpg"), ("style", "gravel_tinted.jpg")):
        driver.find_element(By.CSS_SELECTOR, f'.examples[data-field="{field}"] button[title="{name}"]').click()
    driver.find_element(By.ID, "alpha").send_keys(Keys.ARROW_LEFT * 3)  # 0.85
    result = driver.find_element(By.ID, "result")
    wait.until(lambda d: result.get_attribute("data-final") == "true" and result.get_attribute("data-alpha") == "0.85")
    return driver.get_screenshot_as_png()


def main() -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1200,840", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService("/usr/bin/chromedriver"))
    try:
        with serving(create_app(Stylizer.from_pretrained(device="cpu"))) as url:
            png = screenshot(url, driver)
    finally:
        driver.quit()
    Image.open(io.BytesIO(png)).convert("RGB").save(OUT, quality=82, optimize=True)
    print(f"{OUT}: {OUT.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
