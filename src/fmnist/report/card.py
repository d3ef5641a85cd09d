"""MODEL_CARD.md per model of a run, in the Hugging Face model-card format (Mitchell et al. 2019).

YAML front matter with a `model-index` of the measured results, then what the model is for and not for, how
it was trained and on what, and how it did: per class, calibration, unknown inputs, robustness and prediction
sets where the run has them, the most confused pairs, the machine and the time it took. Every figure is read
from the run's own JSON (config.json, metrics.json, a compare's robustness.json): nothing is measured here.
The YAML is written without PyYAML (a runtime dependency for one file is not worth it): block mappings whose
scalars are JSON literals, which every YAML 1.2 parser reads.
"""

import json
from pathlib import Path

from fmnist.files import read_json, write_text
from fmnist.rundir import checkpoint, layout, schema

ROBUSTNESS = "robustness.json"  # a compare run's corruption sweep (fmnist.jobs.robustness.FILE)
# The energy estimate's assumption: the power one busy core of a server CPU draws, package and memory share
# included (AMD EPYC and Intel Xeon parts draw roughly 3-6 W per core at full load; the upper end is used).
WATTS_PER_CORE = 6.0
LIBRARY = {"scratch-mlp": "numpy", "hybrid": "pytorch+numpy"}
INTENDED = (
    "Classifying 28×28 grayscale images of single garments, shoes and bags made the way Fashion-MNIST was made "
    "(a product photo on a plain background, trimmed, scaled, negated), into one of the ten Fashion-MNIST classes; "
    "teaching and comparing classifiers; a baseline for such images."
)
OUT_OF_SCOPE = (
    "People (it does not recognise, describe or judge persons), photos of worn clothing, several garments in one "
    "image, cluttered scenes, any class outside the ten, and decisions about people or money. Images unlike the "
    "training data are flagged `unknown` by a rule fitted on validation, but the rule is a screen, not a guarantee."
)


def _yaml(value, indent=0):
    """Block-style YAML lines for dicts and lists; scalars as JSON literals (valid YAML)."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines += [f"{pad}{key}:", *_yaml(item, indent + 2)]
            else:
                lines.append(f"{pad}{key}: {json.dumps(item, ensure_ascii=False)}")
    else:
        for item in value:
            inner = _yaml(item, indent + 2) if isinstance(item, dict | list) else [f"{pad}  {json.dumps(item)}"]
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
    return lines


def _metric(kind, value, name):
    return {"type": kind, "value": value, "name": name}


def _results(metrics):
    """model-index results: one entry per split, each with the measured figures of that split."""
    out = []
    for split in layout.SPLITS:
        detailed = metrics[split]
        found = [_metric("accuracy", detailed["accuracy"], f"{split} accuracy")]
        found.append(_metric("f1", detailed["macro"]["f1"], f"{split} macro F1"))
        found.append(_metric("log_loss", detailed["log_loss"], f"{split} log-loss"))
        calibrated = metrics.get("calibration", {}).get(split)
        if calibrated:
            found.append(_metric("ece", calibrated["after"]["ece"], f"{split} ECE after temperature"))
        rate = metrics.get("unknown", {}).get(f"{split}_unknown_rate")
        if rate is not None:
            found.append(_metric("unknown_rate", rate, f"{split} clothing called unknown"))
        task = {"type": "image-classification", "name": "Image Classification"}
        dataset = {"type": "fashion_mnist", "name": "Fashion-MNIST", "split": split}
        out.append({"task": task, "dataset": dataset, "metrics": found})
    return out


def front_matter(name, metrics):
    """The card's YAML front matter as a dict (what the Hub reads)."""
    meta = {"license": "mit", "library_name": LIBRARY.get(name, "pytorch"), "pipeline_tag": "image-classification"}
    meta |= {"tags": ["image-classification", "fashion-mnist", "fmnist", name], "datasets": ["fashion_mnist"]}
    meta["metrics"] = ["accuracy", "f1", "log_loss"]
    meta["model-index"] = [{"name": f"fmnist-{name}", "results": _results(metrics)}]
    return meta


def _pct(share):
    return f"{100 * share:.2f} %"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def _training(config, metrics):
    data = config["data"]
    val, test = (sum(row["support"] for row in metrics[s]["per_class"]) for s in layout.SPLITS)
    subset = config.get("subset")
    lines = ["## Training data and split", ""]
    lines.append(
        "Fashion-MNIST (Zalando Research, MIT licence): its training images split by a seeded, stratified split "
        f"(seed {config['seed']}) into train and validation; its test images only for the final figures. "
        + (f"This run used a quick subset ({subset:,} training images). " if subset else "")
        + f"Validation images: {val:,}; test images: {test:,}. Every choice (best epoch, temperature, unknown "
        "threshold) was made on validation."
    )
    lines += ["", "Data files (SHA-256 of the decompressed bytes):", ""]
    lines += [f"- `{key}`: `{digest}`" for key, digest in sorted(data["sha256"].items())]
    lines += ["", "## Hyper-parameters", "", f"Preset `{config['preset']}`; seed {config['seed']}.", ""]
    lines += _table(("name", "value"), [(k, f"`{json.dumps(v)}`") for k, v in config["hparams"].items()])
    return lines


def _results_text(metrics):
    test, val = metrics["test"], metrics["val"]
    lines = ["## Results", ""]
    rows = [
        (s, _pct(d["accuracy"]), f"{d['macro']['f1']:.4f}", f"{d['log_loss']:.4f}")
        for s, d in (("validation", val), ("test", test))
    ]
    lines += _table(("split", "accuracy", "macro F1", "log-loss"), rows)
    lines += ["", "### Accuracy per class (test)", ""]
    per_class = [
        (r["name"], _pct(r["recall"]), f"{r['precision']:.4f}", f"{r['f1']:.4f}", r["support"])
        for r in test["per_class"]
    ]
    lines += _table(("class", "accuracy (recall)", "precision", "F1", "images"), per_class)
    lines += ["", "### Known failure modes: the most confused pairs (test)", ""]
    pairs = [(p["true_name"], p["predicted_name"], p["count"], _pct(p["rate"])) for p in test["most_confused"][:5]]
    lines += _table(("true class", "predicted as", "images", "share of the true class"), pairs) if pairs else ["None."]
    return lines


def _trust(name, metrics, robustness):
    lines = []
    calibration = metrics.get("calibration")
    if calibration:
        lines += ["## Calibration", "", f"Temperature T = {calibration['temperature']:.4f}, fitted on validation."]
        lines.append("")
        rows = []
        for split in layout.SPLITS:
            before, after = calibration[split]["before"], calibration[split]["after"]
            rows.append((split, *(f"{before[k]:.4f} → {after[k]:.4f}" for k in ("ece", "nll", "brier"))))
        lines += [*_table(("split", "ECE (before → after T)", "NLL", "Brier"), rows), ""]
    unknown = metrics.get("unknown")
    if unknown:
        rates = [f"{s} clothing called unknown: {_pct(unknown[f'{s}_unknown_rate'])}" for s in layout.SPLITS]
        rule = f"Method `{unknown['method']}`, threshold {unknown['threshold']:.4f} (set on validation)"
        lines += ["## Unknown inputs", "", f"{rule}; {'; '.join(rates)}.", ""]
    if robustness and name in robustness.get("mean", {}):
        mce = robustness["mce"].get(name)
        lines += ["## Robustness", "", f"On the first {robustness['images']:,} test images, corrupted: clean accuracy "]
        lines[-1] += f"{_pct(robustness['clean'][name])}, mean over every corruption and severity "
        lines[-1] += _pct(robustness["mean"][name]) + (f", mCE against the linear model {mce:.3f}" if mce else "") + "."
        worst = sorted(robustness["accuracy"][name].items(), key=lambda kv: sum(kv[1]) / len(kv[1]))[:3]
        lines += ["", "Weakest under: " + ", ".join(f"{c} ({_pct(sum(v) / len(v))})" for c, v in worst) + ".", ""]
    sets = metrics.get("prediction_sets")
    if isinstance(sets, dict):
        rows = [(key, value) for key, value in sets.items() if isinstance(value, int | float | str)]
        lines += ["## Prediction sets", "", *_table(("measure", "value"), rows), ""]
    return lines


def _hardware(config, metrics):
    machine, versions = config.get("machine", {}), config.get("versions", {})
    seconds, cpu_seconds = metrics["train_seconds"], metrics.get("cpu_seconds")
    threads = config.get("threads") or 1
    if cpu_seconds is None:  # a run of an older fmnist did not record its CPU time: wall time x threads
        cpu_seconds, basis = seconds * threads, "training seconds × threads (this run recorded no CPU time)"
    else:
        basis = "the training process's CPU time"
    energy = cpu_seconds * WATTS_PER_CORE / 3600
    lines = ["## Hardware, time and energy", ""]
    lines.append(f"- processor: {machine.get('processor', 'unknown')} ({machine.get('cpus', '?')} CPUs), device ")
    lines[-1] += f"`{config.get('device', 'cpu')}`, {threads} torch threads"
    lines.append(
        f"- software: fmnist {versions.get('fmnist')}, torch {versions.get('torch')}, numpy {versions.get('numpy')}"
    )
    lines.append(
        f"- training: {seconds:,.1f} s wall clock; epochs: {metrics.get('epochs')}, best {metrics.get('best_epoch')}"
    )
    lines.append(f"- inference: {metrics['inference_images_per_s']:,.0f} images/s (batched, test split)")
    lines.append(
        f"- energy estimate: {energy:.3f} Wh = {cpu_seconds:,.1f} CPU-seconds ({basis}) × {WATTS_PER_CORE:g} W "
        "per busy core (an assumption: no power meter was read; memory, disk and idle draw are not counted)"
    )
    return [*lines, f"- trained: {config.get('created')}", ""]


def render(name, config, metrics, robustness=None):
    """The card's text for model `name` from its config.json, metrics.json and the run's robustness record."""
    meta = front_matter(name, metrics)
    head = ["---", *_yaml(meta), "---", "", f"# fmnist {name}", ""]
    head.append(
        f"A `{name}` Fashion-MNIST classifier ({metrics['parameters']:,} parameters) trained by "
        f"`fmnist {' '.join(config.get('command', ['', 'train'])[1:])}`."
    )
    head += ["", "## Intended use", "", INTENDED, "", "## Out-of-scope use", "", OUT_OF_SCOPE, ""]
    body = [*_training(config, metrics), "", *_results_text(metrics), ""]
    return "\n".join([*head, *body, *_trust(name, metrics, robustness), *_hardware(config, metrics)])


def write(run_dir):
    """Write MODEL_CARD.md into every model folder of run_dir (one `fmnist train` run or a compare run) that has
    finished (its metrics.json exists); return the paths written."""
    run_dir = Path(run_dir)
    robustness_path = run_dir / ROBUSTNESS
    robustness = read_json(robustness_path) if robustness_path.is_file() else None
    written = []
    for folder in checkpoint.model_dirs(run_dir):
        if not (folder / layout.METRICS).is_file():
            continue
        config = schema.read_config(folder / layout.CONFIG, hparams=False)
        metrics = schema.read_metrics(folder / layout.METRICS)
        write_text(folder / layout.CARD, render(config["model"], config, metrics, robustness))
        written.append(folder / layout.CARD)
    return written
