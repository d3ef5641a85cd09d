"""report.build on tiny synthetic runs: the HTML is well-formed and self-contained, every image decodes, the
tables list every model, and text from the run is escaped."""

import base64
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from fmnist.report import compose
from rundirs import write_compare_run, write_single_run

VOID = {"meta", "img", "br", "hr", "link", "input"}
DPI = 30  # small images keep the test fast; the layout is the same


class Page(HTMLParser):
    """Collects tags, image sources and table cells, and checks that every element is closed in order."""

    def __init__(self):
        super().__init__()
        self.open, self.tags, self.images, self.tables = [], [], [], []
        self.cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def parse(path):
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    assert page.open == [], f"unclosed elements {page.open}"
    return page


def decode_png(data):
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.verify()
    return image.size


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory):
    folder = write_compare_run(tmp_path_factory.mktemp("report") / "run")
    return folder, compose.build(folder, dpi=DPI)


def test_compare_report_is_self_contained_and_lists_every_model(compare_report):
    folder, (md_path, html_path) = compare_report
    assert (md_path, html_path) == (folder / "report.md", folder / "report.html")
    page = parse(html_path)
    assert {"html", "head", "body", "table", "img"} <= set(page.tags)
    assert not {"script", "link", "iframe"} & set(page.tags)
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    for src in page.images:
        width, height = decode_png(base64.b64decode(src.split(",", 1)[1], validate=True))
        assert width > 50 and height > 50
    comparison = page.tables[0]
    assert comparison[0][:2] == ["model", "parameters"]
    assert [row[0] for row in comparison[1:]] == ["linear", "cnn"]
    assert all(re.fullmatch(r"\d+\.\d\d %", row[4]) for row in comparison[1:])  # test accuracy

    markdown = md_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(page.images)
    assert all((folder / link).is_file() for link in links)
    assert "| linear |" in markdown and "| cnn |" in markdown
    assert "SHA-256" in markdown and "Seed 7" in markdown


def test_compare_report_draws_every_plot_and_leaves_no_temporary_files(compare_report):
    folder, _ = compare_report
    pngs = sorted(p.name for p in (folder / "plots").glob("*.png"))
    for name in ("linear", "cnn"):
        for kind in ("curves", "confusion", "misclassified", "confused-pairs"):
            assert f"{name}-{kind}.png" in pngs
    assert {"cnn-features.png", "convergence.png", "per-class-f1.png", "examples.png"} <= set(pngs)
    assert "linear-features.png" not in pngs
    for path in (folder / "plots").glob("*.png"):
        decode_png(path.read_bytes())
    assert not list(folder.rglob("*.tmp"))
    assert not (folder / "cnn" / "evaluation.json").exists()  # every metric lives in metrics.json


def test_single_run_report_without_mistakes_or_images(tmp_path):
    # A margin far above the noise makes every prediction right: no gallery, no confused pairs to draw.
    folder = write_single_run(tmp_path / "one", margin=50.0)
    md_path, html_path = compose.build(folder, dpi=DPI)
    page = parse(html_path)
    assert [row[0] for row in page.tables[0][1:]] == ["mlp"]
    assert sorted(p.name for p in (folder / "plots").glob("*.png")) == ["mlp-confusion.png", "mlp-curves.png"]
    assert len(page.images) == 2
    assert "100.00 %" in md_path.read_text(encoding="utf-8")


def test_text_from_the_run_is_escaped(tmp_path):
    folder = write_single_run(tmp_path / "x", hparams={"note": "<script>alert('x')</script> & <b>"})
    _, html_path = compose.build(folder, dpi=DPI)
    page = parse(html_path)
    assert "script" not in page.tags and "b" not in page.tags
    assert "&lt;script&gt;" in html_path.read_text(encoding="utf-8")
