"""Prediction sets (fmnist.metrics.conformal): which conformity score, and what the stored sets give on test.

    cpu-run .venv/bin/python bench/bench_sets.py RUN_DIR [RUN_DIR ...] [--halves 20] [--onnx] [--out FILE]

Choice, on validation only: for every model of the run, its temperature-scaled validation probabilities (the
run's predictions.npz and the temperature in metrics.json) are split in two halves with seeds 0..H-1; the
thresholds are computed on one half and the sets measured on the other, for each score (LAC, APS, RAPS), marginal
and class-conditional (Mondrian), at 90, 95 and 99 %: coverage overall, the lowest class's coverage, the mean set
size and the share of one-class sets, averaged over the H splits. Rule (CHOICE): among the class-conditional
sets, the score with the smallest mean set size at 95 %, summed over the models.

δ of the training-conditional thresholds (fmnist.models.sets.DELTA), on validation only: the same halves, LAC,
class-conditional, at 95 %, for each δ of DELTAS (None: the textbook rank ⌈(n + 1)(1 − α)⌉): coverage, the lowest
class's, the share of splits where some class falls more than 2 points under the level on its held-out half, the
mean set size. Rule (DELTA_RULE), fixed before the test figures were looked at: the largest δ whose share,
averaged over the run's models, is at most 10 %.

Widening rate (fmnist.models.sets.WIDEN), on validation only: per rate of WIDENS, the 95 % sets fitted and measured
on the validation images (mean size: what widening costs where nothing is wrong) and, on the first WIDEN_IMAGES
validation images under every corruption, mean size and coverage per severity. Rule (WIDEN_RULE): the largest
rate that adds at most WIDEN_COST classes to the validation mean size, for every model.

Several runs (seeds) go into one file, each with its choices. The exchangeability figures ("shift") are RUN/
robustness.json's sets, recorded when made at this δ (`fmnist evaluate RUN --robustness 1000` remakes them).

Test (the final figures, only where metrics.json's sets were made at this δ with widening: `fmnist evaluate RUN`
remakes them): per model and level, test coverage overall and per class, mean set size, share of one-class sets,
as train and evaluate compute them from the stored scores (fmnist.models.sets.figures, the way answers do).
--onnx: the exported graph's set output against fmnist's sets on all test images (parity: images whose sets
differ). Prints the CPU, the date and tables; writes
the JSON to bench/results/sets-DATE.json (or --out).
"""

import argparse
import time
from pathlib import Path

import numpy as np

import record
from fmnist.data.dataset import CLASS_NAMES
from fmnist.files import read_json
from fmnist.metrics import calibration, conformal
from fmnist.models import sets
from fmnist.rundir import checkpoint, layout

NAME = "sets"
LEVELS = (0.90, 0.95, 0.99)
CHOICE = "class-conditional sets; the score with the smallest mean set size at 95 %, summed over the models"
DELTAS = (None, 0.5, 0.25, 0.1, 0.05, 0.025)
DELTA_LEVEL, SHORT, SHORT_SHARE = 0.95, 0.02, 0.10
DELTA_RULE = "the largest δ whose share of splits with a class over 2 points short at 95 %, mean over models, ≤ 10 %"
WIDENS, WIDEN_COST, WIDEN_IMAGES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5), 0.01, 300
WIDEN_RULE = "the largest rate that adds at most 0.01 classes to the mean 95 % validation set size, for every model"


def val_probs(model_dir):
    """(temperature-scaled validation probabilities (N, 10), labels (N,)) of a saved model."""
    predictions = np.load(model_dir / layout.PREDICTIONS)
    temperature = read_json(model_dir / layout.METRICS)["calibration"]["temperature"]
    return calibration.probabilities(predictions["val_logits"], temperature), predictions["val_labels"]


def halves_figures(probs, labels, score, halves):
    """{"marginal"|"class": {level: figures averaged over the splits}} for one score."""
    out = {"marginal": {}, "class": {}}
    each = {(kind, level): [] for kind in out for level in LEVELS}
    scores = conformal.class_scores(probs, score)
    for seed in range(halves):
        order = np.random.default_rng(seed).permutation(len(labels))
        cal, held = order[: len(order) // 2], order[len(order) // 2 :]
        true = scores[cal, labels[cal]]
        per_class = conformal.sorted_by_class(true, labels[cal], len(CLASS_NAMES))
        for level in LEVELS:
            thresholds = {
                "marginal": conformal.marginal_threshold(true, level),
                "class": conformal.class_thresholds(per_class, level),
            }
            for kind, threshold in thresholds.items():
                mask = conformal.sets_from_scores(scores[held], threshold)
                each[kind, level].append(conformal.summary(mask, labels[held]))
    for (kind, level), rows in each.items():
        out[kind][f"{level:.2f}"] = {
            "coverage": float(np.mean([r["coverage"] for r in rows])),
            "min_class_coverage": float(np.mean([min(r["per_class"]) for r in rows])),
            "mean_size": float(np.mean([r["mean_size"] for r in rows])),
            "single": float(np.mean([r["single"] for r in rows])),
            "empty": float(np.mean([r["empty"] for r in rows])),
        }
    return out


def delta_figures(probs, labels, halves):
    """{str(δ): {coverage, min_class_coverage, short, mean_size}} of LAC class-conditional sets at DELTA_LEVEL, each
    a mean over the half-splits; short: the share of splits where some class is SHORT under the level."""
    scores, rows = conformal.class_scores(probs, "lac"), {delta: [] for delta in DELTAS}
    for seed in range(halves):
        order = np.random.default_rng(seed).permutation(len(labels))
        cal, held = order[: len(order) // 2], order[len(order) // 2 :]
        per_class = conformal.sorted_by_class(scores[cal, labels[cal]], labels[cal], len(CLASS_NAMES))
        for delta in DELTAS:
            thresholds = conformal.class_thresholds(per_class, DELTA_LEVEL, delta)
            rows[delta].append(conformal.summary(conformal.sets_from_scores(scores[held], thresholds), labels[held]))
    return {
        str(delta): {
            "coverage": float(np.mean([r["coverage"] for r in each])),
            "min_class_coverage": float(np.mean([min(r["per_class"]) for r in each])),
            "short": float(np.mean([min(r["per_class"]) < DELTA_LEVEL - SHORT for r in each])),
            "mean_size": float(np.mean([r["mean_size"] for r in each])),
        }
        for delta, each in rows.items()
    }


def choose_delta(models):
    """DELTA_RULE over {model: delta_figures}: the largest δ that passes (None when none does)."""
    passing = [
        d for d in DELTAS if d is not None and np.mean([m[str(d)]["short"] for m in models.values()]) <= SHORT_SHARE
    ]
    return max(passing, default=None)


def choose(models):
    sizes = {s: sum(m[s]["class"]["0.95"]["mean_size"] for m in models.values()) for s in conformal.SCORES}
    return min(sizes, key=sizes.get)


def test_figures(model_dir):
    """{level: summary} of the stored sets on the test split, from metrics.json's "sets" (written by train and
    evaluate with fmnist.models.sets.figures, the way answers compute sets), or None where they were made with
    another δ or without widening (`fmnist evaluate RUN` remakes them)."""
    fitted = read_json(model_dir / layout.METRICS).get("sets") or {}
    if fitted.get("delta") != sets.DELTA or fitted.get("widen") is None:
        return None
    return {level: fitted["levels"][level] for level in (f"{x:.2f}" for x in LEVELS)}


def split_of(model_dir, cache):
    """The run's own split (cache: {seed: splits}, one dataset load per seed)."""
    from fmnist.data import dataset

    seed = read_json(model_dir / layout.CONFIG)["seed"]
    if seed not in cache:
        cache[seed] = dataset.split(dataset.load(), seed)
    return cache[seed]


def widen_figures(model_dir, splits, count):
    """The widening's rate, on validation only: per rate of WIDENS, the mean size of the 95 % sets (fitted on the
    validation images, measured on them) and, on the first `count` validation images under every corruption,
    the mean size and coverage per severity (0: clean; mean over corruptions)."""
    from fmnist.data import corruptions
    from fmnist.predict import answers

    model, _ = checkpoint.load(model_dir, calibrated=True)
    val = answers.assess(model, splits.x_val)
    few, labels = splits.x_val[:count], splits.y_val[:count]
    shifted = [answers.assess(model, few)]
    for severity in corruptions.SEVERITIES:
        images = np.concatenate([corruptions.corrupt(few, c, severity, 0) for c in corruptions.CORRUPTIONS])
        shifted.append(answers.assess(model, images))
    out = {}
    for rate in WIDENS:
        fitted = sets.fit(val.probs, splits.y_val, val.ood_score, rate=rate)
        clean = sets.mask(fitted, val.probs, DELTA_LEVEL, val.ood_score).sum(1).mean()
        masks = [sets.mask(fitted, a.probs, DELTA_LEVEL, a.ood_score) for a in shifted]
        truth = [np.tile(labels, len(m) // count) for m in masks]
        out[str(rate)] = {
            "size": float(clean),
            "severity_size": [float(m.sum(1).mean()) for m in masks],
            "severity_coverage": [float(m[np.arange(len(t)), t].mean()) for m, t in zip(masks, truth, strict=True)],
        }
    return out


def choose_widen(models):
    """WIDEN_RULE over {model: widen_figures}: the largest rate that passes."""
    base = str(WIDENS[0])
    passing = [r for r in WIDENS if all(m[str(r)]["size"] - m[base]["size"] <= WIDEN_COST for m in models.values())]
    return max(passing)


def onnx_parity(model_dir):
    """Images of the test split whose set differs between the exported graph and fmnist (at the graph's level)."""
    import onnxruntime

    from fmnist.data import dataset
    from fmnist.models import trust
    from fmnist.predict import answers
    from fmnist.rundir import export

    model, manifest = checkpoint.load(model_dir, calibrated=True)
    config = read_json(model_dir / layout.CONFIG)
    images = dataset.split(dataset.load(), config["seed"]).x_test
    proto = export.to_onnx(model, export.metadata_of(model_dir, manifest, model))
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    graph = np.concatenate(
        [session.run([export.SET_OUTPUT], {export.INPUT: images[i : i + 1000]})[0] for i in range(0, len(images), 1000)]
    )
    assessed = answers.assess(model, images)
    ours = sets.mask(trust.of(model)["sets"], assessed.probs, sets.DEFAULT, assessed.ood_score)
    return {"images": len(images), "differ": int((graph.astype(bool) != ours).any(axis=1).sum())}


def shift_figures(run_dir):
    """The 95 % sets under the robustness sweep's corruptions and on photos (RUN/robustness.json's "sets", made by
    `fmnist compare` or `fmnist evaluate RUN --robustness N`), or None when it is missing or made at another δ."""
    path = Path(run_dir) / "robustness.json"
    swept = read_json(path) if path.is_file() else {}
    if (swept.get("sets") or {}).get("delta") != sets.DELTA:
        return None
    keep = ("images", "severities", "corruptions")
    return {**{k: swept[k] for k in keep}, "coverage_level": swept["sets"]["coverage_level"], **swept["sets"]}


def measure_run(run_dir, args, cache):
    """One run's entry: its seed, per model the validation choices and the test figures, the choices, the shift."""
    out = {"run": str(run_dir), "seed": None, "models": {}}
    for model_dir in checkpoint.model_dirs(Path(run_dir)):
        out["seed"] = read_json(model_dir / layout.CONFIG)["seed"]
        probs, labels = val_probs(model_dir)
        entry = {s: halves_figures(probs, labels, s, args.halves) for s in conformal.SCORES}
        out["models"][model_dir.name] = {"validation": entry, "test": test_figures(model_dir)}
        out["models"][model_dir.name]["delta"] = delta_figures(probs, labels, args.halves)
        out["models"][model_dir.name]["widen"] = widen_figures(model_dir, split_of(model_dir, cache), WIDEN_IMAGES)
        if args.onnx:
            out["models"][model_dir.name]["onnx"] = onnx_parity(model_dir)
    out["chosen"] = choose({n: m["validation"] for n, m in out["models"].items()})
    out["delta_chosen"] = choose_delta({n: m["delta"] for n, m in out["models"].items()})
    out["widen_chosen"] = choose_widen({n: m["widen"] for n, m in out["models"].items()})
    out["shift"] = shift_figures(run_dir)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs of `fmnist compare` (several seeds)")
    parser.add_argument("--halves", type=int, default=20, help="random validation half-splits per model")
    parser.add_argument("--onnx", action="store_true", help="also check the exported graph's sets on test")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/sets-DATE.json)")
    args = parser.parse_args()
    started, head = time.perf_counter(), record.header()
    doc = {"halves": args.halves, "choice_rule": CHOICE, "delta_rule": DELTA_RULE, "delta_used": sets.DELTA}
    doc |= {"widen_rule": WIDEN_RULE, "widen_used": sets.WIDEN, "widen_from": sets.WIDEN_FROM}
    doc |= {"widen_images": WIDEN_IMAGES, "levels": [f"{level:.2f}" for level in LEVELS]}
    cache = {}
    doc["runs"] = [measure_run(run_dir, args, cache) for run_dir in args.run_dirs]
    doc["seconds"] = round(time.perf_counter() - started, 1)
    for run in doc["runs"]:
        print_tables(run, doc, head)
    record.save(NAME, doc, args.out, head=head)


def print_tables(run, doc, head):
    print(record.title(f"prediction sets, {run['run']} (validation halves x{doc['halves']})", head))
    print(f"{'model':<12} {'score':<5} {'kind':<8} {'level':>5} {'cover':>7} {'min cls':>7} {'size':>5} {'single':>6}")
    for name, m in run["models"].items():
        for score, kinds in m["validation"].items():
            for kind, levels in kinds.items():
                for level, f in levels.items():
                    print(
                        f"{name:<12} {score:<5} {kind:<8} {level:>5} {f['coverage']:>7.2%} "
                        f"{f['min_class_coverage']:>7.2%} {f['mean_size']:>5.2f} {f['single']:>6.1%}"
                    )
    print(f"chosen: {run['chosen']} ({doc['choice_rule']})")
    for name, m in run["models"].items():
        for delta, f in m["delta"].items():
            print(
                f"delta {name:<12} {delta:<5} cover {f['coverage']:.2%} min class {f['min_class_coverage']:.2%} "
                f"short {f['short']:.0%} size {f['mean_size']:.3f}"
            )
    print(f"delta chosen: {run['delta_chosen']} ({doc['delta_rule']}); the test figures use {doc['delta_used']}")
    for name, m in run["models"].items():
        for rate, f in m["widen"].items():
            sizes = " ".join(f"{v:.2f}" for v in f["severity_size"])
            covers = " ".join(f"{v:.0%}" for v in f["severity_coverage"])
            print(f"widen {name:<12} {rate:<5} val size {f['size']:.3f}; severity 0-5 sizes {sizes}, coverage {covers}")
    print(f"widen chosen: {run['widen_chosen']} ({doc['widen_rule']}); the stored sets use {doc['widen_used']}")
    for name, m in run["models"].items():
        for level, f in (m["test"] or {}).items():
            low = min(f["per_class"])
            print(
                f"test {name:<12} {level}: coverage {f['coverage']:.2%}, lowest class {low:.2%} "
                f"({CLASS_NAMES[int(np.argmin(f['per_class']))]}), size {f['mean_size']:.3f}, single {f['single']:.1%}"
            )
        if m.get("onnx"):
            print(f"onnx {name}: {m['onnx']['differ']} of {m['onnx']['images']} test images with a different set")


if __name__ == "__main__":
    main()
