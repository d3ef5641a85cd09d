"""The report's sections on trust: calibration (before and after temperature scaling, reliability diagrams), the
"unknown" rule, and robustness under corruptions. All from the run's saved files: metrics.json, the saved
logits and robustness.json (when the run has one).
"""

import numpy as np

from fmnist.files import read_json
from fmnist.metrics import calibration
from fmnist.report.plots import Picture

ROBUSTNESS = "robustness.json"


def temperature(model_run):
    """The temperature metrics.json records (1.0 for a run made before calibration)."""
    return float(model_run.metrics.get("calibration", {}).get("temperature", 1.0))


def reliability_figure(logits, labels, temp, title):
    """Reliability diagram of the top-1 probability, before (T = 1) and after temperature scaling: accuracy per
    confidence bin against the diagonal, with each bin's share of images below."""
    fig = Picture(figsize=(8.4, 4.4))
    axes = fig.subplots(2, 2, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = np.linspace(0, 1, calibration.BINS + 1)
    for column, (label, t) in enumerate((("before", 1.0), (f"after (T = {temp:.3f})", temp))):
        probs = calibration.probabilities(logits, t)
        count, _, accuracy = calibration.reliability(probs, labels)
        top, bottom = axes[0, column], axes[1, column]
        top.bar(edges[:-1], np.nan_to_num(accuracy), width=1 / calibration.BINS, align="edge", edgecolor="k")
        top.plot([0, 1], [0, 1], "r--", linewidth=1)
        top.set_title(f"{label}: ECE {calibration.ece(probs, labels):.3f}", fontsize=10)
        top.set_ylabel("accuracy")
        bottom.bar(edges[:-1], count / count.sum(), width=1 / calibration.BINS, align="edge", color="grey")
        bottom.set_xlabel("top-1 probability")
        bottom.set_ylabel("share")
    fig.suptitle(title)
    return fig


def robustness_figure(record):
    """Accuracy against severity, one panel per corruption, one line per model (severity 0: clean)."""
    names, corruptions = list(record["accuracy"]), record["corruptions"]
    columns = 5
    fig = Picture(figsize=(2.6 * columns, 2.3 * -(-len(corruptions) // columns)))
    axes = fig.subplots(-(-len(corruptions) // columns), columns, sharey=True).ravel()
    severities = [0, *record["severities"]]
    for ax, corruption in zip(axes, corruptions, strict=False):
        for name in names:
            ax.plot(severities, [record["clean"][name], *record["accuracy"][name][corruption]], marker=".", label=name)
        ax.set_title(corruption, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes[len(corruptions) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Accuracy against corruption severity ({record['images']:,} test images)")
    fig.tight_layout()
    return fig


def figures(run):
    """[(model name or None, file name, figure, caption)] of the trust figures."""
    out = []
    for name, model in run.models.items():
        if "calibration" not in model.metrics:
            continue
        p = model.predictions
        fig = reliability_figure(p["test_logits"], p["test_labels"], temperature(model), f"{name}: reliability (test)")
        out.append((name, f"{name}-reliability.png", fig, f"{name}: reliability diagram on the test set"))
    record = robustness_record(run)
    if record is not None:
        out.append((None, "robustness.png", robustness_figure(record), "Accuracy against corruption severity"))
    return out


def robustness_record(run):
    path = run.folder / ROBUSTNESS
    return read_json(path) if path.is_file() else None


def _f(x):
    return f"{x:.4f}"


def blocks(run, plot_paths):
    """The report blocks: calibration table, unknown table, reliability diagrams, robustness table and plot.
    plot_paths: {file name: saved path} of `figures(run)`."""
    calibrated = {n: m.metrics for n, m in run.models.items() if "calibration" in m.metrics}
    out = [("h2", "Calibration, unknown images, robustness")]
    if not calibrated:
        return [*out, ("p", "This run was made before calibration: `fmnist evaluate RUN` calibrates it.")]
    out.append(("p", CALIBRATION_TEXT))
    header = [
        "model",
        "split",
        "T",
        "ECE before",
        "ECE after",
        "NLL before",
        "NLL after",
        "Brier before",
        "Brier after",
    ]
    rows = []
    for name, m in calibrated.items():
        c = m["calibration"]
        for split in ("val", "test"):
            b, a = c[split]["before"], c[split]["after"]
            cells = [_f(b["ece"]), _f(a["ece"]), _f(b["nll"]), _f(a["nll"]), _f(b["brier"]), _f(a["brier"])]
            rows.append([name, split, f"{c['temperature']:.3f}", *cells])
    out.append(("table", header, rows))
    out.append(("p", UNKNOWN_TEXT))
    header = ["model", "score", "threshold", "validation clothing called unknown", "test clothing called unknown"]
    rows = [
        [n, u["method"], f"{u['threshold']:.3f}", f"{u['val_unknown_rate']:.2%}", f"{u['test_unknown_rate']:.2%}"]
        for n, u in ((n, m["unknown"]) for n, m in calibrated.items())
    ]
    out.append(("table", header, rows))
    out += [
        ("image", path, f"{n}: reliability diagram (test)")
        for n, path in plot_paths.items()
        if n not in ("robustness", "sets")
    ]
    return out + robustness_blocks(run, plot_paths.get("robustness"))


def robustness_rows(record):
    """(header, rows) of the robustness table: per model clean accuracy, accuracy per corruption (mean over
    severities), the mean over all, and mCE against the linear model."""
    header = ["model", "clean", *record["corruptions"], "mean", "mCE"]
    rows = []
    for name, per in record["accuracy"].items():
        cells = [f"{100 * np.mean(per[c]):.1f}" for c in record["corruptions"]]
        mce, mean = record["mce"][name], f"{100 * record['mean'][name]:.1f}"
        rows.append([name, f"{100 * record['clean'][name]:.1f}", *cells, mean, "" if mce is None else f"{mce:.3f}"])
    return header, rows


def robustness_blocks(run, plot_path):
    record = robustness_record(run)
    if record is None:
        return []
    text = (
        f"Accuracy (%) on the first {record['images']:,} test images under each corruption (mean of severities "
        f"1-5, seed {record['seed']}); mean: over all corruptions and severities; mCE: the mean corruption error "
        "relative to the linear model (below 1: fewer errors than it)."
    )
    out = [("h3", "Robustness"), ("p", text), ("table", *robustness_rows(record))]
    return out + ([("image", plot_path, "Accuracy against corruption severity")] if plot_path else [])


CALIBRATION_TEXT = (
    "Every probability shown is softmax(logits / T), T fitted on the validation logits (minimum log-loss); "
    "dividing by T > 0 changes no prediction. ECE: 15 equal-width bins of the top-1 probability; NLL: mean "
    "log-loss; Brier: mean squared distance to the one-hot label."
)
UNKNOWN_TEXT = (
    "An image is called unknown (not like any Fashion-MNIST class) when its score is over a threshold set on "
    "validation so that at most 5 % of validation clothing (with a 95 % sampling margin) is. The combined "
    "score is the mean of the energy score and the Mahalanobis distances to the nearest class on the model's "
    "features (the CNN and the hybrid) and on the pixels, each standardised on validation clothing."
)
