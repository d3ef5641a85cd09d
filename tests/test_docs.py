"""The front door and the documentation site: a short README, no hand-typed figure, references that match the
code, a site that builds --strict and opens offline, and a version that matches the changelog."""

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist import api
from fmnist.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 150
# A measured figure: a number with a unit of share, time or speed ("93.16 %", "74 s", "4.63×", "8,343 images/s").
FIGURE = re.compile(
    r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:%|ms\b|s\b|min\b|minutes\b|seconds\b|×(?!\s?\d)|images/s|requests/s)"
)
GENERATED = re.compile(r"<!-- gen:([\w-]+) -->.*?<!-- /gen:\1 -->", re.S)
CODE = re.compile(r"^```.*?^```|`[^`\n]+`", re.S | re.M)


def gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def newest(prefix):
    """(path, document) of the newest bench/results/PREFIX-*.json, as the generator reads it."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))
    return importlib.import_module("gen_common").newest(prefix)


def pages():
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def hand_typed_figures(text):
    """Figures outside the generated blocks and outside code (commands and flags may hold numbers)."""
    prose = CODE.sub("", GENERATED.sub("", text))
    return FIGURE.findall(prose)


def test_the_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES
    assert "<!-- gen:models -->" in README.read_text(encoding="utf-8")  # the model table is generated


def test_the_figure_check_finds_typed_figures_and_spares_generated_ones():
    typed = "The CNN reached 93.16 % in 74 s, 4.63× sooner, at 8,343 images/s."
    assert hand_typed_figures(typed) == ["93.16 %", "74 s", "4.63×", "8,343 images/s"]
    spared = "<!-- gen:x -->\n| 93.16 % | 74 s |\n<!-- /gen:x -->\n`--epochs 11` and\n```sh\nsleep 5s\n```\n28×28"
    assert hand_typed_figures(spared) == []


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_no_figure_is_typed_by_hand(page):
    assert hand_typed_figures(page.read_text(encoding="utf-8")) == []


def test_generated_parts_are_up_to_date():
    """README's and the docs' tables and docs/cli.md are what scripts/gen_docs.py makes now (run it if not)."""
    assert gen_docs().main(["--check"]) == 0


def test_generated_tables_come_from_the_results_files():
    module = gen_docs()
    block = module.best_table()
    path, doc = newest("models-best")
    seeds = doc["results"]["cnn_best_seeds"]
    for test in seeds["test_accuracy"]:
        assert f"{100 * test:.2f} %" in block
    assert str(path.relative_to(ROOT)) in block


def test_the_pages_tables_show_their_results_files_figures():
    """The audit's and the leaderboard's tables print what their files hold, and name them."""
    module = gen_docs()
    path, doc = newest("audit-exclude")
    block = module.TABLES["audit-exclude"]()
    for run in doc["runs"]:
        assert f"{100 * run['without_suspects']['test_accuracy']:.2f} %" in block
    assert str(path.relative_to(ROOT)) in block
    path, doc = newest("leaderboard")
    block = module.TABLES["leaderboard-seeds"]()
    cnn = next(r for r in doc["rows"] if r["recipe"] == "fmnist cnn (fast) + refit")
    for accuracy in cnn["test_accuracy"]["values"]:
        assert f"{100 * accuracy:.2f} %" in block
    assert str(path.relative_to(ROOT)) in block
    path, doc = newest("sets")
    block = module.TABLES["sets-seeds"]()
    for run in doc["runs"]:
        for name in ("cnn", "hybrid"):
            assert f"{100 * run['models'][name]['test']['0.95']['coverage']:.2f} %" in block
    assert str(path.relative_to(ROOT)) in block


def parsers(parser, name="fmnist"):
    """(command, parser) for the command line and every sub-command below it."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from parsers(child, f"{name} {sub}")


def test_every_cli_flag_is_in_the_cli_reference():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `(.+?)`\n(.*?)(?=^## `|\Z)", text, re.S | re.M))
    missing = []
    for command, parser in parsers(build_parser()):
        section = sections.get(command)
        if section is None:
            missing.append(command)
            continue
        flags = [flag for action in parser._actions for flag in action.option_strings]
        missing += [f"{command} {flag}" for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", section)]
    assert missing == []


def test_the_version_is_the_changelogs_newest():
    done = subprocess.run([sys.executable, "-m", "fmnist", "--version"], capture_output=True, text=True, check=True)
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert done.stdout.strip() == f"fmnist {released[0]}"


# Commits from this one on keep their subject within 72 characters (the detail in the body); older history stays.
SUBJECTS_SINCE = "56398f0"


def test_commit_subjects_fit_in_72_characters():
    command = ["git", "log", "--format=%s", f"{SUBJECTS_SINCE}..HEAD"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no git history with {SUBJECTS_SINCE} here: {done.stderr.strip()[:100]}")
    assert [subject for subject in done.stdout.splitlines() if len(subject) > 72] == []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `make docs` builds it (--strict: a broken link, anchor or reference fails the build)."""
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_every_api_function_is_in_the_reference_with_its_parameters_and_return(site):
    html = (site / "api.html").read_text(encoding="utf-8")
    faults = []
    for name in api.__all__:
        value = getattr(api, name)
        if not callable(value):
            continue  # CLASS_NAMES
        start = html.find(f'id="fmnist.api.{name}"')
        if start < 0:
            faults.append(f"{name}: not in the reference")
            continue
        following = html.find('id="fmnist.api.', start + 1)
        section = html[start : following if following > 0 else len(html)]
        if isinstance(value, type):
            continue
        for parameter in inspect.signature(value).parameters:
            if not re.search(rf"<code>\*{{0,2}}{parameter}</code>", section):
                faults.append(f"{name}: parameter {parameter} not documented")
        if "Returns:" not in section:
            faults.append(f"{name}: no Returns section")
    assert faults == []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium (make test installs it)")
def test_the_site_opens_offline_and_search_finds_the_trust_words(site, tmp_path):
    """From the file system in headless Chromium: every request the pages make stays on this machine (file: and
    data: URLs, read from Chromium's network log), and the search box finds "unknown" and "prediction set"."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_serve_browser import CHROMEDRIVER, CHROMIUM, QUIET

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (*QUIET, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    driver.set_window_size(1400, 900)
    try:
        found = {}
        for query in ("unknown", "prediction set"):
            driver.get((site / "index.html").as_uri())
            box = WebDriverWait(driver, 20).until(lambda d: d.find_element(By.CSS_SELECTOR, "input.md-search__input"))
            box.click()  # the header's search field, shown at this window width
            box.send_keys(query)
            items = WebDriverWait(driver, 30).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item") or None
            )
            found[query] = [item.text for item in items]
        requested = {
            entry["message"]["params"]["request"]["url"]
            for entry in (json.loads(e["message"]) for e in driver.get_log("performance"))
            if entry["message"]["method"] == "Network.requestWillBeSent"
        }
    finally:
        driver.quit()
    # chrome:// pages are the browser's own new-tab page, drawn before the first get(); they load from its binary
    leaving = sorted(url for url in requested if not url.startswith(("file:", "data:", "blob:", "chrome:")))
    assert leaving == []
    local = [url for url in requested if url.startswith("file:")]
    assert any(url.endswith("index.html") for url in local) and any("search" in url for url in local), local
    assert any("unknown" in text.lower() for text in found["unknown"])
    assert any("prediction set" in text.lower() for text in found["prediction set"])
