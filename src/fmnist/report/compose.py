"""report.md and a self-contained report.html for a run directory (single-model or compare).

The report holds the comparison table, the plots, per-class tables, the seed, the configuration and the data
checksums. Both files are rendered from one list of blocks, so they always say the same thing; the HTML embeds
every image as a base64 data URI and opens offline with nothing beside it.
"""

import json
import shlex

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.files import write_text
from fmnist.metrics.calibration import probabilities
from fmnist.report import attributions as attribution_plots
from fmnist.report import card, plots, trust
from fmnist.report import sets as sets_report
from fmnist.report.render import to_html, to_markdown
from fmnist.rundir import layout

PLOTS_DIR = "plots"
COMPARISON_HEADER = [
    "model",
    "parameters",
    "training time",
    "val accuracy",
    "test accuracy",
    "test macro F1",
    "test log-loss",
    "inference (images/s)",
]


def _percent(x):
    return f"{100 * x:.2f} %"


def _seconds(s):
    return f"{s:,.1f} s" if s < 120 else f"{s / 60:,.1f} min"


def _model_figures(run, model, test):
    """[(file name, figure, caption)] of one model's figures that have something to show."""
    name = model.name
    out = [
        (
            f"{name}-curves.png",
            plots.learning_curves(model.history, f"{name}: learning curves"),
            f"{name}: loss and accuracy per epoch, train vs validation",
        ),
        (
            f"{name}-confusion.png",
            plots.confusion(test["confusion_matrix"], f"{name}: test confusion matrix"),
            f"{name}: confusion matrix on the test set",
        ),
    ]
    if run.test_images is not None:
        images, labels = run.test_images["images"], run.test_images["labels"]
        probs = probabilities(model.predictions["test_logits"], trust.temperature(model))  # as predict shows them
        mistakes = plots.misclassified(images, labels, probs, f"{name}: most confident test mistakes")
        out.append(
            (
                f"{name}-misclassified.png",
                mistakes,
                f"{name}: the most confident mistakes (true class, predicted class, probability)",
            )
        )
        pairs = plots.confused_pairs(images, labels, probs, test["most_confused"], f"{name}: most-confused class pairs")
        out.append(
            (
                f"{name}-confused-pairs.png",
                pairs,
                f"{name}: test images of the most-confused pairs (predicted probability)",
            )
        )
    if model.features is not None:
        f = model.features
        out.append(
            (
                f"{name}-features.png",
                plots.feature_space(f["features"], f["labels"], f"{name}: feature space by class"),
                f"{name}: learned features of test images in two dimensions, coloured by class",
            )
        )
    return [item for item in out if item[1] is not None] + _attribution_figures(model)


def _attribution_figures(model):
    arrays, name = model.attributions, model.name
    if arrays is None:
        return []
    grid = attribution_plots.gallery(arrays, f"{name}: why it decided")
    out = [(f"{name}-attributions.png", grid, f"{name}: test images, correct and wrong, and what the model looked at")]
    if "templates" in arrays:
        caption = f"{name}: each class's weight per pixel (red: brighter here speaks for the class, blue: against)"
        figure = attribution_plots.templates(arrays["templates"], f"{name}: class templates")
        out.append((f"{name}-templates.png", figure, caption))
    return [item for item in out if item[1] is not None]


def _run_figures(run, results):
    """[(file name, figure, caption)] of the figures about the whole run."""
    out = []
    if len(run.models) > 1:
        out.append(
            (
                "convergence.png",
                plots.convergence({n: m.history for n, m in run.models.items()}),
                "Validation accuracy per epoch and per training second, all models",
            )
        )
        f1 = {n: np.array([r["f1"] for r in results[n]["test"]["per_class"]]) for n in run.models}
        out.append(
            (
                "per-class-f1.png",
                plots.per_class_f1(f1, "Test F1 per class and model"),
                "Test F1 per class for every model",
            )
        )
    if run.test_images is not None:
        images, seed = run.test_images, _record(run)["seed"]
        grid = plots.class_grid(images["images"], images["labels"], seed=seed, title="Test images per class")
        out.append(("examples.png", grid, "Random test images of each class"))
    return out


def _saved(figures, folder, dpi):
    """Write each figure into `folder`; return [(path, caption)]."""
    for file, fig, _ in figures:
        plots.save(fig, folder / file, dpi)
    return [(folder / file, caption) for file, _, caption in figures]


def _comparison_rows(run, results):
    rows = []
    for name, model in run.models.items():
        m, val, test = model.metrics, results[name]["val"], results[name]["test"]
        rows.append(
            [
                name,
                f"{int(m['parameters']):,}",
                _seconds(float(m["train_seconds"])),
                _percent(val["accuracy"]),
                _percent(test["accuracy"]),
                f"{test['macro']['f1']:.4f}",
                f"{test['log_loss']:.4f}",
                f"{float(m['inference_images_per_s']):,.0f}",
            ]
        )
    return rows


MODEL_CONFIG_KEYS = ("model", "preset", "seed", "subset", "hparams")
ENVIRONMENT_KEYS = ("versions", "machine")


def _record(run):
    """What the run as a whole recorded: compare.json, or the config of a single-model run."""
    return run.compare if run.compare is not None else next(iter(run.models.values())).config


def _summary_blocks(run, results, record):
    best = max(run.models, key=lambda n: results[n]["val"]["accuracy"])
    what = f"A comparison of {len(run.models)} models" if run.kind == "compare" else f"A {best} run"
    text = (
        f"{what}, seed {record['seed']}. Best on validation: {best} "
        f"({_percent(results[best]['val']['accuracy'])} validation, {_percent(results[best]['test']['accuracy'])} "
        "test). Models are chosen on validation; the test set gives the final figures only."
    )
    if record.get("subset"):
        text += f" Quick run: trained on {record['subset']:,} training images, not the full 48,000."
    if not record["data"].get("verified", False):
        text += " The data did not match the official Fashion-MNIST checksums (--allow-unverified)."
    return [
        ("h1", f"Fashion-MNIST report: {run.folder.name}"),
        ("p", text),
        ("h2", "Comparison"),
        ("table", COMPARISON_HEADER, _comparison_rows(run, results)),
    ]


def _model_blocks(name, model, test, plot_paths):
    out = [("h2", f"Model: {name}"), *(("image", path, caption) for path, caption in plot_paths)]
    out.append(("h3", f"{name}: precision, recall and F1 per class (test)"))
    rows = [
        [r["name"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['support']:,}"]
        for r in test["per_class"]
    ]
    rows.append(["macro average", *(f"{test['macro'][k]:.3f}" for k in ("precision", "recall", "f1")), ""])
    out.append(("table", ["class", "precision", "recall", "F1", "support"], rows))
    out.append(("h3", f"{name}: most-confused pairs (test)"))
    rows = [
        [p["true_name"], p["predicted_name"], f"{p['count']:,}", _percent(p["rate"])] for p in test["most_confused"]
    ]
    if rows:
        out.append(("table", ["true class", "predicted as", "images", "share of the true class"], rows))
    else:
        out.append(("p", "No test image was misclassified."))
    out.append(("h3", f"{name}: configuration"))
    out.append(("pre", json.dumps({k: model.config[k] for k in MODEL_CONFIG_KEYS if k in model.config}, indent=2)))
    return out


def _reproducibility_blocks(record):
    data = record["data"]
    verified = "yes" if data.get("verified") else "NO (--allow-unverified)"
    out = [
        ("h2", "Reproducibility"),
        ("p", f"Seed {record['seed']}. Data verified against the official Fashion-MNIST checksums: {verified}."),
    ]
    paths = data.get("paths", {})
    rows = [[role, str(paths.get(role, "")), digest] for role, digest in data.get("sha256", {}).items()]
    out.append(("table", ["file", "path", "SHA-256 (decompressed)"], rows))
    out.append(("h3", "Environment"))
    if isinstance(record.get("command"), list):
        out.append(
            ("p", f"Written by `{shlex.join(record['command'])}` at {record.get('created', 'an unknown time')}.")
        )
    environment = {k: record[k] for k in ENVIRONMENT_KEYS if k in record}
    return [*out, ("pre", json.dumps(environment, indent=2))]


def blocks_for(run, results, run_plots, model_plots, trust_plots=None):
    """The report as a list of blocks: ("h1"|"h2"|"h3"|"p"|"pre", text), ("table", header, rows),
    ("image", path, caption). `run_plots` is [(png path, caption)], `model_plots` maps model -> such a list."""
    record = _record(run)
    out = _summary_blocks(run, results, record)
    out += [("image", path, caption) for path, caption in run_plots]
    if len(run.models) > 1:
        rows = [
            [name] + [f"{results[m]['test']['per_class'][c]['f1']:.3f}" for m in run.models]
            for c, name in enumerate(CLASS_NAMES)
        ]
        out += [("h3", "Test F1 per class"), ("table", ["class", *run.models], rows)]
    out += trust.blocks(run, trust_plots or {})
    out += sets_report.blocks(run, (trust_plots or {}).get("sets"))
    for name, model in run.models.items():
        out += _model_blocks(name, model, results[name]["test"], model_plots[name])
    return out + _reproducibility_blocks(record)


def build(run_dir, dpi=plots.DPI):
    """Evaluate, plot and write RUN/report.md and RUN/report.html; return their paths (md, html).

    The PNGs go to RUN/plots/. Every figure comes from the saved files: metrics.json, predictions, history.
    """
    run = layout.load_run(run_dir)
    results = {name: {s: model.metrics[s] for s in layout.SPLITS} for name, model in run.models.items()}
    folder = run.folder / PLOTS_DIR
    run_plots = _saved(_run_figures(run, results), folder, dpi)
    model_plots = {
        name: _saved(_model_figures(run, model, results[name]["test"]), folder, dpi)
        for name, model in run.models.items()
    }
    made = trust.figures(run) + sets_report.figures(run)
    saved = _saved([figure[1:] for figure in made], folder, dpi)
    trust_plots = {(figure[0] or "robustness"): path for figure, (path, _) in zip(made, saved, strict=True)}
    blocks = blocks_for(run, results, run_plots, model_plots, trust_plots)
    md_path, html_path = run.folder / "report.md", run.folder / "report.html"
    write_text(md_path, to_markdown(blocks, run.folder))
    write_text(html_path, to_html(blocks, f"Fashion-MNIST report: {run.folder.name}"))
    card.write(run.folder)  # the model cards follow the metrics `fmnist evaluate` may have rewritten
    return md_path, html_path
