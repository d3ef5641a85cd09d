"""The audit's report: suspects per file, counts per class pair, the strongest suspects of each file and a gallery
per class pair, as AUDIT/report.md and a self-contained AUDIT/report.html (figures in AUDIT/plots/)."""

import collections
from pathlib import Path

from fmnist.data.dataset import CLASS_NAMES
from fmnist.files import read_json, write_text
from fmnist.report import plots, tiles
from fmnist.report.render import to_html, to_markdown
from fmnist.rundir import labels

STRONGEST = 20  # suspects shown per file
PAIRS, PER_PAIR = 10, 8  # class pairs in the gallery, suspects per pair


def strongest_figure(issues, images, title, count=STRONGEST, columns=10):
    """The `count` strongest suspects of one file: the image, its position, given -> suggested label."""
    chosen = issues[:count]
    cells = tiles.rows_of([images[i.index] for i in chosen], columns)
    names = [f"#{i.index}\n{CLASS_NAMES[i.given]}\n-> {CLASS_NAMES[i.suggested]}" for i in chosen]
    grid = tiles.Grid(len(cells), columns, lines=3)
    return plots.tile_figure(grid, [(cells, {"vmin": 0, "vmax": 255})], title, tiles.rows_of(names, columns))


def pairs_figure(issues, images_of, pairs):
    """One row per class pair (given -> suggested): its strongest suspects of either file."""
    by_pair = collections.defaultdict(list)
    for issue in issues:
        by_pair[(issue.given, issue.suggested)].append(issue)
    cells, names, rows = [], [], []
    for pair, _ in pairs:
        chosen = by_pair[pair][:PER_PAIR]
        cells.append([images_of[i.file][i.index] for i in chosen] + [None] * (PER_PAIR - len(chosen)))
        names.append([f"{i.file} #{i.index}" for i in chosen] + [None] * (PER_PAIR - len(chosen)))
        rows.append(f"{CLASS_NAMES[pair[0]]} -> {CLASS_NAMES[pair[1]]}")
    grid = tiles.Grid(len(cells), PER_PAIR, lines=1)
    title = "Strongest suspects per class pair (given label -> suggested label)"
    return plots.tile_figure(grid, [(cells, {"vmin": 0, "vmax": 255})], title, names, rows, left=2.4)


def pair_counts(issues):
    """[((given, suggested), {file: count})], the most frequent pairs first."""
    counts = collections.defaultdict(collections.Counter)
    for issue in issues:
        counts[(issue.given, issue.suggested)][issue.file] += 1
    return sorted(counts.items(), key=lambda item: (-sum(item[1].values()), item[0]))


def blocks_for(audit_dir, summary, issues, figures):
    """The report's blocks (`fmnist.report.render`)."""
    plan = read_json(Path(audit_dir) / labels.PLAN)
    epochs = plan["epochs"] or "the preset's"
    setting = (
        f"{summary['folds']}-fold cross-fitting of the {plan['model']} ({plan['preset']} preset, {epochs} epochs, "
        f"seed {plan['seed']}): each training image scored by the fold model that never saw it, each test image by "
        "the average of the fold models (all trained on training images only); suspects by confident learning "
        "(cleanlab), strongest (lowest label quality) first."
    )
    rows = [
        (name, f"{summary['images'][name]:,}", f"{count:,}", f"{100 * summary['accuracy'][name]:.2f} %")
        for name, count in summary["suspects"].items()
    ]
    blocks = [("h1", f"Label audit: {Path(audit_dir).name}"), ("p", setting)]
    blocks.append(("table", ["file", "images", "suspects", "out-of-sample accuracy"], rows))
    for file, path in figures["strongest"].items():
        blocks.append(("image", path, f"the {STRONGEST} strongest suspects of the {file} file"))
    blocks.append(("h2", "Suspects per class pair"))
    header = ["given", "suggested", *labels.FILES]
    table = [
        (CLASS_NAMES[g], CLASS_NAMES[s], *(str(counts[f]) for f in labels.FILES))
        for (g, s), counts in pair_counts(issues)
    ]
    blocks += [("table", header, table), ("image", figures["pairs"], "the strongest suspects of the commonest pairs")]
    return blocks


def build(audit_dir, dataset):
    """Write AUDIT/report.md and AUDIT/report.html from the audit's files; return their paths (md, html)."""
    audit_dir = Path(audit_dir)
    summary = read_json(audit_dir / labels.SUMMARY)
    issues = labels.read_issues(audit_dir / labels.ISSUES)
    images_of = {"train": dataset.train_images, "test": dataset.test_images}
    folder = audit_dir / "plots"
    figures = {"strongest": {}}
    for file in labels.FILES:
        path = folder / f"strongest-{file}.png"
        title = f"{file}: the {STRONGEST} strongest suspects (position, given -> suggested)"
        plots.save(strongest_figure([i for i in issues if i.file == file], images_of[file], title), path)
        figures["strongest"][file] = path
    figures["pairs"] = folder / "pairs.png"
    plots.save(pairs_figure(issues, images_of, pair_counts(issues)[:PAIRS]), figures["pairs"])
    blocks = blocks_for(audit_dir, summary, issues, figures)
    md_path, html_path = audit_dir / "report.md", audit_dir / "report.html"
    write_text(md_path, to_markdown(blocks, audit_dir))
    write_text(html_path, to_html(blocks, f"Fashion-MNIST label audit: {audit_dir.name}"))
    return md_path, html_path
