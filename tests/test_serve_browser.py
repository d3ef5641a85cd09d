"""The page at / in a real browser: Debian's chromium, headless, driven by Selenium through chromium-driver."""

import base64
import io
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES
from fmnist.predict import answers, sets
from fmnist.predict import images as image_files
from fmnist.rundir import checkpoint
from serve_helpers import product_photo

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without these chromium waits on the network (updates, sync, QUIC probes) that this machine does not have.
QUIET = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,900",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); make test installs them",
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One chromium for the module (it takes seconds to start); each test opens its own page."""
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*QUIET, f"--user-data-dir={tmp_path_factory.mktemp('browser') / 'profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_page_classifies_a_dropped_photo(browser, server, serve_run, serve_items, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    images, _ = serve_items
    photo = tmp_path / "my coat.png"
    product_photo(images[0]).save(photo)
    seen = image_files.to_fashion_mnist(image_files.load_image(photo))
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
    model = Select(browser.find_element(By.ID, "model"))
    assert model.first_selected_option.get_attribute("value") == httpx.get(server.url + "/models").json()["default"]
    model.select_by_value("cnn")
    browser.find_element(By.ID, "files").send_keys(str(photo))

    card = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".result")))
    cnn = checkpoint.load(serve_run / "cnn")[0]
    probs = answers.probabilities(cnn, seen[None])[0]
    assert card.find_element(By.CSS_SELECTOR, ".class-name").text == CLASS_NAMES[int(np.argmax(probs))]
    members = [CLASS_NAMES[c] for c in sets.ordered(sets.mask(cnn, answers.assess(cnn, seen[None]), 0.95)[0], probs)]
    among = "that this is the answer" if len(members) == 1 else "the answer is among these"
    named = ", ".join(members[:-1]) + " or " + members[-1] if len(members) > 1 else "".join(members)
    said = f"{named} — 95 % sure {among}" if members else "No class fits well enough to name at 95 %"
    assert card.find_element(By.CSS_SELECTOR, ".set").text == said  # the set, in words
    assert card.find_element(By.CSS_SELECTOR, ".model-used").text == "cnn"
    assert card.find_element(By.CSS_SELECTOR, ".file").text == "my coat.png"
    assert len(card.find_elements(By.CSS_SELECTOR, ".bars li")) == 3
    preview = card.find_element(By.CSS_SELECTOR, "img.preview")
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", preview))
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", preview) == [28, 28]
    source = preview.get_attribute("src").removeprefix("data:image/png;base64,")
    (tmp_path / "preview.png").write_bytes(base64.b64decode(source))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "preview.png")), seen)

    browser.find_element(By.ID, "files").send_keys(str(Path(__file__)))  # not an image: an error card, no crash
    wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, ".result.error"))
    assert "not an image file" in browser.find_element(By.CSS_SELECTOR, ".result.error").text
    browser.save_screenshot(str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 10_000
    if shot := os.environ.get("FMNIST_SCREENSHOT"):  # where to keep a copy, e.g. docs/serve.png for the README
        shutil.copy(tmp_path / "serve.png", shot)


def test_page_says_plainly_that_noise_is_not_clothing(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    picture = tmp_path / "static.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(picture)
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("cnn")
    browser.find_element(By.ID, "files").send_keys(str(picture))
    card = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".result.unknown")))
    assert card.find_element(By.CSS_SELECTOR, ".class-name").text == "Unknown"
    note = card.find_element(By.CSS_SELECTOR, ".unknown-note")
    assert note.is_displayed() and "does not look like any Fashion-MNIST class" in note.text
    assert len(card.find_elements(By.CSS_SELECTOR, ".bars li")) == 3  # the closest classes, still shown


def test_the_heat_map_appears_when_asked(browser, server, serve_items, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    photo = tmp_path / "my shirt.png"
    product_photo(serve_items[0][1]).save(photo)
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
    browser.find_element(By.ID, "files").send_keys(str(photo))  # without the box: no heat map
    card = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".result")))
    assert not card.find_element(By.CSS_SELECTOR, ".heat-figure").is_displayed()
    browser.find_element(By.ID, "explain").click()
    browser.find_element(By.ID, "files").send_keys(str(photo))
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".result")) == 2)
    heat = browser.find_elements(By.CSS_SELECTOR, ".result")[0].find_element(By.CSS_SELECTOR, "img.heat")
    wait.until(lambda _: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heat))
    assert heat.is_displayed()
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", heat) == [112, 112]
    browser.save_screenshot(str(tmp_path / "explain.png"))
    if shot := os.environ.get("FMNIST_EXPLAIN_SCREENSHOT"):
        shutil.copy(tmp_path / "explain.png", shot)


def test_a_drawn_box_changes_what_the_model_sees(browser, server, serve_run, serve_items, tmp_path):
    """Two garments in one photo on a graded cloth: a box drawn around each (pointer events) gives its own cut-out,
    28x28 preview and answer, the ones `fmnist predict --box` gives."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from fmnist.predict import composites, segment

    images, labels = serve_items
    pair = [images[np.flatnonzero(labels == c)[0]] for c in (1, 8)]  # a trouser and a bag
    rng = np.random.default_rng(1)
    photo = Image.new("RGB", (600, 300))
    for i, item in enumerate(pair):
        half, _ = composites.place(composites.gradient(rng, (300, 300)), item, rng)
        photo.paste(half, (300 * i, 0))
    path = tmp_path / "two.png"
    photo.save(path)
    model = checkpoint.load(serve_run / "cnn")[0]
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))  # a card redrawn
    wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("cnn")
    browser.find_element(By.ID, "files").send_keys(str(path))
    answers_seen = []
    for box in ((0, 0, 300, 300), (300, 0, 600, 300)):
        card = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".result")))
        img = card.find_element(By.CSS_SELECTOR, "img.original")
        wait.until(
            lambda _, img=img: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
        )
        before = card.find_element(By.CSS_SELECTOR, "img.preview").get_attribute("src")
        scale = img.size["width"] / 600  # the photo is shown 224 pixels wide; offsets are from its centre
        start = (round((box[0] + 6 - 300) * scale), round((box[1] + 6 - 150) * scale))
        ActionChains(browser).move_to_element_with_offset(img, *start).click_and_hold().move_by_offset(
            round((box[2] - box[0] - 12) * scale), round((box[3] - box[1] - 12) * scale)
        ).release().perform()
        wait.until(
            lambda driver, before=before: (
                driver.find_element(By.CSS_SELECTOR, "img.preview").get_attribute("src") != before
            )
        )
        card = browser.find_element(By.CSS_SELECTOR, ".result")
        assert card.find_element(By.CSS_SELECTOR, ".cutout-figure").is_displayed()
        source = card.find_element(By.CSS_SELECTOR, "img.preview").get_attribute("src")
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.removeprefix("data:image/png;base64,")))))
        drawn = tuple(int(v) for v in card.get_attribute("data-box").split(","))
        assert all(
            abs(a - b) <= 8 for a, b in zip(drawn, (box[0] + 6, box[1] + 6, box[2] - 6, box[3] - 6), strict=True)
        )
        np.testing.assert_array_equal(shown, segment.convert_file(path, box=drawn).image)
        probs = answers.probabilities(model, shown[None])[0]
        name = card.find_element(By.CSS_SELECTOR, ".class-name").text
        assert name in (CLASS_NAMES[int(np.argmax(probs))], "Unknown")
        answers_seen.append((shown, card.find_element(By.CSS_SELECTOR, ".bars li .name").text))
    assert np.abs(answers_seen[0][0].astype(int) - answers_seen[1][0]).mean() > 10
    assert answers_seen[0][1] != answers_seen[1][1]  # the trouser's box and the bag's box: different answers


def test_page_asks_for_the_key_once_and_keeps_it_for_the_tab(browser, serve_run, serve_items, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from serve_helpers import running_server

    key = "page-key-0123456789abcdef"
    (tmp_path / "keys").write_text(key + "\n")
    photo = tmp_path / "my coat.png"
    product_photo(serve_items[0][0]).save(photo)
    with running_server(serve_run, tmp_path / "log", args=("--api-key-file", str(tmp_path / "keys"))) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 20)
        form = wait.until(ready.visibility_of_element_located((By.ID, "key-form")))
        assert not Select(browser.find_element(By.ID, "model")).options  # nothing listed without the key
        browser.find_element(By.ID, "api-key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
        assert not form.is_displayed()
        browser.find_element(By.ID, "files").send_keys(str(photo))
        card = wait.until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".result")))
        assert card.find_element(By.CSS_SELECTOR, ".class-name").text in CLASS_NAMES
        browser.refresh()  # the same tab: the key is remembered, not asked again
        wait.until(lambda driver: len(Select(driver.find_element(By.ID, "model")).options) == 2)
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        assert browser.execute_script("return sessionStorage.getItem('fmnist-api-key')") == key
        assert httpx.get(url + "/models").status_code == 401  # the page's key is the only way in
        browser.execute_script("sessionStorage.clear()")
