"""The report of a compare over seeds: each model's accuracy as mean ± standard deviation, and which neighbours
in the ranking the seeds cannot tell apart."""

from pathlib import Path

from fmnist.files import write_text
from fmnist.report.render import to_html, to_markdown

LABELS = {"val_accuracy": "val accuracy", "test_accuracy": "test accuracy", "refit_test_accuracy": "refit test"}


def _cell(s):
    """'94.10 % ± 0.20 % [93.85, 94.35]': mean ± standard deviation [95 % t interval of the mean]."""
    shown = f"{s['mean']:.2%} ± {s['std']:.2%}"
    interval = s.get("interval")  # compare.json from before the intervals has none
    return shown + (f" [{interval[0]:.2%}, {interval[1]:.2%}]" if interval else "")


def seeds_table(summary):
    """(header, rows): per measure mean ± standard deviation [95 % interval] per model, then each seed's
    validation figure. A --refit compare adds the refit models' test accuracy."""
    measures = [k for k in LABELS if any(k in s for s in summary.values())]
    header = ["model", *(f"{LABELS[k]} (mean ± sd [95 % CI])" for k in measures), "val accuracy per seed"]
    rows = [
        [
            m,
            *(_cell(s[k]) if k in s else "" for k in measures),
            ", ".join(f"{v:.2%}" for v in s["val_accuracy"]["values"]),
        ]
        for m, s in summary.items()
    ]
    return header, rows


def refit_lines(results):
    """What a --refit compare says about the held-out values its refit models kept (see fmnist.jobs.refit)."""
    if not any("refit_test_accuracy" in s for s in results.values()):
        return []
    return [
        "Refit: each model was trained again on all training images (train + validation) with the epochs, "
        "temperature, unknown threshold and other held-out values its selection run chose on validation; those "
        "values are the selection's, kept unchanged. Whether they still hold is measured on test: each seed-N "
        "folder's compare.json gives, under results.<model>.refit, the test ECE and unknown rate of both models."
    ]


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
        "Standard deviations are over the seeds; the 95 % interval of the mean is Student's t with n - 1 degrees "
        "of freedom (a bootstrap of 3-5 seeds' figures would be far too narrow). Each seed's full report is in "
        "its seed-N folder."
    )
    blocks = [("h1", f"Fashion-MNIST over seeds: {Path(out_dir).name}"), ("p", text), ("table", header, rows)]
    blocks += [("p", line) for line in refit_lines(record["results"])]
    lines = close_call_lines(record["close_calls"]) or [
        "Every neighbour in the ranking differs by more than its seed spread."
    ]
    blocks += [("h2", "Differences against the seed spread"), *(("p", line) for line in lines)]
    write_text(Path(out_dir) / "report.md", to_markdown(blocks, Path(out_dir)))
    write_text(Path(out_dir) / "report.html", to_html(blocks, "Fashion-MNIST over seeds"))
    return Path(out_dir) / "report.md", Path(out_dir) / "report.html"
