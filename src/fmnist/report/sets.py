"""The report's section on prediction sets: test coverage per model and level, per class, under corruptions and on
product photos, and a plot of coverage against the nominal level.

From the run's saved files only: metrics.json's "sets" (fmnist.models.sets.figures, written by train and evaluate)
and robustness.json's "sets" (fmnist.jobs.robustness) when the run has one.
"""

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.models import sets as fitted
from fmnist.report.plots import Picture
from fmnist.report.trust import robustness_record

TEXT = (
    "A prediction set lists the classes that, for images like the validation ones, hold the true class at least "
    "the stated share of the time, for every class separately (class-conditional split conformal: one threshold "
    "per class from the sorted scores 1 − p(true class) of that class's validation images, at the rank that keeps "
    f"the promise with probability {1 - fitted.DELTA:g} over the draw of those images; an image unlike the training "
    "images has every score lowered by how far its unknown-input score lies past the validation images' "
    f"{100 * fitted.WIDEN_FROM:g}th percentile, so its set "
    "widens; an image unlike every class can get an empty set). The promise is about many images, not one, and "
    "only for images exchangeable with the validation ones: the corrupted images and the product photos below "
    "show what happens when they are not."
)


def _pct(x):
    return f"{100 * x:.2f}"


def figures(run):
    """[("sets", file name, figure, caption)] when some model has set figures, else []."""
    curves = {n: m.metrics["sets"]["curve"] for n, m in run.models.items() if "sets" in m.metrics}
    if not curves:
        return []
    return [("sets", "sets-coverage.png", coverage_figure(curves), "Test coverage against the nominal level")]


def coverage_figure(curves):
    """Test coverage (left) and mean set size (right) against the nominal level, one line per model."""
    fig = Picture(figsize=(9.0, 3.8))
    left, right = fig.subplots(1, 2)
    for name, points in curves.items():
        level, coverage, size = np.array(points).T
        left.plot(level, coverage, marker=".", label=name)
        right.plot(level, size, marker=".", label=name)
    low = min(p[0] for points in curves.values() for p in points)
    left.plot([low, 1], [low, 1], "k--", linewidth=1, label="coverage = level")
    left.set(xlabel="nominal level", ylabel="test coverage", title="Coverage against the level")
    right.set(xlabel="nominal level", ylabel="mean set size (classes)", title="Set size against the level")
    left.legend(fontsize=7)
    fig.tight_layout()
    return fig


def level_rows(fitted):
    """Per model and level: coverage, the lowest class (its coverage), mean size, share of one-class sets."""
    rows = []
    for name, s in fitted.items():
        for level, f in s["levels"].items():
            low = int(np.argmin(f["per_class"]))
            cells = [_pct(f["coverage"]), f"{_pct(f['per_class'][low])} ({CLASS_NAMES[low]})"]
            rows.append([name, f"{100 * float(level):g} %", *cells, f"{f['mean_size']:.3f}", _pct(f["single"])])
    return ["model", "level", "coverage (%)", "lowest class (%)", "mean size", "one class (%)"], rows


def class_rows(fitted, level="0.95"):
    header = ["model", *CLASS_NAMES]
    return header, [[name, *(_pct(c) for c in s["levels"][level]["per_class"])] for name, s in fitted.items()]


def shift_rows(record):
    """Per model: clean, each severity (mean over corruptions) and photos: mean set size and coverage."""
    shift = record["sets"]
    header = ["model", "clean", *(f"severity {s}" for s in record["severities"]), "photos"]
    size_rows, coverage_rows = [], []
    for name, m in shift["models"].items():
        sizes = np.mean([m["size"][c] for c in record["corruptions"]], axis=0)
        covers = np.mean([m["coverage"][c] for c in record["corruptions"]], axis=0)
        size_rows.append(
            [name, f"{m['clean']['size']:.2f}", *(f"{v:.2f}" for v in sizes), f"{m['photos']['size']:.2f}"]
        )
        cells = [_pct(m["clean"]["coverage"]), *(_pct(v) for v in covers), _pct(m["photos"]["coverage"])]
        coverage_rows.append([name, *cells])
    return header, size_rows, coverage_rows


def blocks(run, plot_path):
    """The section's blocks (see fmnist.report.render)."""
    fitted = {n: m.metrics["sets"] for n, m in run.models.items() if "sets" in m.metrics}
    out = [("h2", "Prediction sets")]
    if not fitted:
        return [*out, ("p", "This run was made before prediction sets: `fmnist evaluate RUN` adds them.")]
    out += [("p", TEXT), ("table", *level_rows(fitted)), ("h3", "Test coverage per class at 95 % (%)")]
    out.append(("table", *class_rows(fitted)))
    if plot_path:
        out.append(("image", plot_path, "Test coverage and set size against the nominal level"))
    record = robustness_record(run)
    if record is not None and "sets" in record:
        header, sizes, covers = shift_rows(record)
        note = (
            f"The 95 % sets on the first {record['images']:,} test images under the corruptions of the robustness "
            "sweep (mean over corruptions per severity) and on the same items re-rendered as product photos."
        )
        out += [("h3", "Sets where the images change"), ("p", note), ("p", "Mean set size (classes):")]
        out += [("table", header, sizes), ("p", "Coverage (%):"), ("table", header, covers)]
    return out
