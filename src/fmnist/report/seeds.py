"""The report of a compare over seeds: each model's accuracy as mean ± standard deviation, and which neighbours
in the ranking the seeds cannot tell apart."""

from pathlib import Path

from fmnist.files import write_text
from fmnist.report.render import to_html, to_markdown


def _cell(s):
    return f"{s['mean']:.2%} ± {s['std']:.2%}"


def seeds_table(summary):
    """(header, rows): mean ± standard deviation per model, then each seed's figure."""
    header = ["model", "val accuracy (mean ± sd)", "test accuracy (mean ± sd)", "val accuracy per seed"]
    rows = [
        [
            m,
            _cell(s["val_accuracy"]),
            _cell(s["test_accuracy"]),
            ", ".join(f"{v:.2%}" for v in s["val_accuracy"]["values"]),
        ]
        for m, s in summary.items()
    ]
    return header, rows


def close_call_lines(calls):
    return [
        f"{c['better']} vs {c['worse']}: {c['difference']:.2%} apart on validation, within the seed spread "
        f"({c['seed_std']:.2%}); the seeds do not tell them apart."
        for c in calls
    ]


def write(out_dir, record):
    """OUT/report.md and report.html of a compare over seeds (`record`: its compare.json)."""
    header, rows = seeds_table(record["results"])
    text = (
        f"{len(record['models'])} models, each trained with seeds {', '.join(map(str, record['seeds']))} "
        "(the seed fixes the train/validation split, the initial weights, the shuffling and the augmentation). "
        "Standard deviations are over the seeds; each seed's full report is in its seed-N folder."
    )
    blocks = [("h1", f"Fashion-MNIST over seeds: {Path(out_dir).name}"), ("p", text), ("table", header, rows)]
    lines = close_call_lines(record["close_calls"]) or [
        "Every neighbour in the ranking differs by more than its seed spread."
    ]
    blocks += [("h2", "Differences against the seed spread"), *(("p", line) for line in lines)]
    write_text(Path(out_dir) / "report.md", to_markdown(blocks, Path(out_dir)))
    write_text(Path(out_dir) / "report.html", to_html(blocks, "Fashion-MNIST over seeds"))
    return Path(out_dir) / "report.md", Path(out_dir) / "report.html"
