"""The review page (fmnist serve --review) in a real browser: decisions by mouse and keyboard reach reviews.json,
survive a restart, and a tampered reviews file stops the server in one line naming it."""

import json
import os

import numpy as np
import pytest

from fmnist.rundir import labels
from serve_helpers import running_server
from test_serve_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401  (the fixture)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="needs chromium and its driver"),
]


@pytest.fixture
def audit_dir(tmp_path, dataset):
    """An audit folder with six suspects of the real data (the files fmnist audit writes for the page)."""
    folder = tmp_path / "audit"
    folder.mkdir()
    picked = [("train", 10, 0, 6), ("train", 20, 6, 0), ("test", 5, 2, 4), ("train", 30, 4, 2), ("test", 7, 9, 7)]
    picked.append(("train", 40, 3, 0))
    issues = [labels.Issue(f, i, g, s, 0.001 * (n + 1)) for n, (f, i, g, s) in enumerate(picked)]
    labels.write_issues(folder / labels.ISSUES, issues)
    images = {"train": dataset.train_images, "test": dataset.test_images}
    chosen = np.array([images[i.file][i.index] for i in issues])
    np.savez_compressed(folder / labels.IMAGES, images=chosen)
    return folder


def review_server(folder, log_path):
    """The review page alone; on leaving, SIGTERM and exit status 0 (serve_helpers.running_server)."""
    return running_server(None, log_path, args=("--review", str(folder)), ready="/review")


def test_three_decisions_are_saved_and_shown_after_a_restart(browser, audit_dir, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    with review_server(audit_dir, tmp_path / "one.log") as url:
        browser.get(url + "/review")
        wait.until(lambda d: d.find_element(By.ID, "progress").text == "0 of 6 reviewed")
        assert "train image #10" in browser.find_element(By.ID, "position").text
        assert browser.find_element(By.ID, "given").text == "T-shirt/top"
        assert browser.find_element(By.ID, "suggested").text == "Shirt"
        browser.find_element(By.ID, "reviewer").send_keys("Ada")
        browser.find_element(By.ID, "right").click()  # mouse: the label is right
        wait.until(lambda d: "train image #20" in d.find_element(By.ID, "position").text)
        browser.find_element(By.TAG_NAME, "body").send_keys("s")  # keyboard: the suggested class
        wait.until(lambda d: "test image #5" in d.find_element(By.ID, "position").text)
        browser.find_element(By.CSS_SELECTOR, '#classes button[data-label="3"]').click()  # mouse: another class
        wait.until(lambda d: d.find_element(By.ID, "progress").text == "3 of 6 reviewed")
        saved = labels.read_reviews(audit_dir / labels.REVIEWS)
        decided = {(r["file"], r["index"]): (r["decision"], r["label"], r["reviewer"]) for r in saved}
        assert decided == {
            ("train", 10): ("right", None, "Ada"),
            ("train", 20): ("relabel", 0, "Ada"),
            ("test", 5): ("relabel", 3, "Ada"),
        }
    with review_server(audit_dir, tmp_path / "two.log") as url:
        browser.get(url + "/review")
        wait.until(lambda d: d.find_element(By.ID, "progress").text == "3 of 6 reviewed")
        assert "train image #30" in browser.find_element(By.ID, "position").text  # the first one not reviewed
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        wait.until(lambda d: "test image #5" in d.find_element(By.ID, "position").text)
        assert browser.find_element(By.ID, "status").text.startswith("reviewed: should be Dress (Ada, ")
        if shot := os.environ.get("FMNIST_REVIEW_SCREENSHOT"):  # where to keep it, e.g. docs/review.png
            browser.save_screenshot(shot)


def test_a_tampered_reviews_file_is_refused_in_one_line(audit_dir, capsys):
    from fmnist.cli.parser import main

    labels.write_reviews(audit_dir / labels.REVIEWS, [])
    document = json.loads((audit_dir / labels.REVIEWS).read_text())
    added = {"file": "train", "index": 10, "decision": "right", "label": None, "reviewer": "X", "time": "now"}
    document["reviews"].append(added)
    for broken in (json.dumps(document), "{not json"):  # a review added by hand; a file cut short
        (audit_dir / labels.REVIEWS).write_text(broken)
        assert main(["serve", "--review", str(audit_dir), "--port", "0"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"fmnist: error: {audit_dir / labels.REVIEWS}: "), lines
