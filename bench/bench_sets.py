"""Prediction sets (fmnist.metrics.conformal): which conformity score, and what the stored sets give on test.

    cpu-run .venv/bin/python bench/bench_sets.py RUN_DIR [--halves 20] [--onnx] [--out FILE]

Choice, on validation only: for every model of the run, its temperature-scaled validation probabilities (the
run's predictions.npz and the temperature in metrics.json) are split in two halves with seeds 0..H-1; the
thresholds are computed on one half and the sets measured on the other, for each score (LAC, APS, RAPS), marginal
and class-conditional (Mondrian), at 90, 95 and 99 %: coverage overall, the lowest class's coverage, the mean set
size and the share of one-class sets, averaged over the H splits. Rule (CHOICE): among the class-conditional
sets, the score with the smallest mean set size at 95 %, summed over the models.

Test (the final figures, only where the run has stored set scores: `fmnist evaluate RUN` adds them): per model
and level, test coverage overall and per class, mean set size, share of one-class sets, from the stored scores
the way `fmnist predict` computes them (fmnist.models.sets). --onnx: the exported graph's set output against
fmnist's sets on all test images (parity: images whose sets differ). Prints the CPU, the date and tables; writes
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
from fmnist.rundir import checkpoint, layout

NAME = "sets"
LEVELS = (0.90, 0.95, 0.99)
CHOICE = "class-conditional sets; the score with the smallest mean set size at 95 %, summed over the models"


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


def choose(models):
    sizes = {s: sum(m[s]["class"]["0.95"]["mean_size"] for m in models.values()) for s in conformal.SCORES}
    return min(sizes, key=sizes.get)


def test_figures(model_dir):
    """{level: summary} of the stored sets on the test split, or None for a run without stored set scores."""
    from fmnist.models import sets, trust

    holder = type("Holder", (), {})()
    record_ = trust.load(holder, model_dir / checkpoint._read_manifest(model_dir)["weights"])
    if record_ is None or "sets" not in record_:
        return None
    predictions = np.load(model_dir / layout.PREDICTIONS)
    probs = calibration.probabilities(predictions["test_logits"], record_["temperature"])
    return {
        f"{level:.2f}": conformal.summary(sets.mask(record_["sets"], probs, level), predictions["test_labels"])
        for level in LEVELS
    }


def onnx_parity(model_dir):
    """Images of the test split whose set differs between the exported graph and fmnist (at the graph's level)."""
    import onnxruntime

    from fmnist.data import dataset
    from fmnist.models import sets, trust
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
    ours = sets.mask(trust.of(model)["sets"], answers.probabilities(model, images), sets.DEFAULT)
    return {"images": len(images), "differ": int((graph.astype(bool) != ours).any(axis=1).sum())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--halves", type=int, default=20, help="random validation half-splits per model")
    parser.add_argument("--onnx", action="store_true", help="also check the exported graph's sets on test")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/sets-DATE.json)")
    args = parser.parse_args()
    started, head = time.perf_counter(), record.header()
    doc = {"run": str(args.run_dir), "halves": args.halves, "choice_rule": CHOICE, "models": {}}
    for model_dir in checkpoint.model_dirs(Path(args.run_dir)):
        probs, labels = val_probs(model_dir)
        entry = {s: halves_figures(probs, labels, s, args.halves) for s in conformal.SCORES}
        doc["models"][model_dir.name] = {"validation": entry, "test": test_figures(model_dir)}
        if args.onnx:
            doc["models"][model_dir.name]["onnx"] = onnx_parity(model_dir)
    doc["chosen"] = choose({n: m["validation"] for n, m in doc["models"].items()})
    doc["seconds"] = round(time.perf_counter() - started, 1)
    print_tables(doc, head)
    record.save(NAME, doc, args.out, head=head)


def print_tables(doc, head):
    print(record.title(f"prediction sets, {doc['run']} (validation halves x{doc['halves']})", head))
    print(f"{'model':<12} {'score':<5} {'kind':<8} {'level':>5} {'cover':>7} {'min cls':>7} {'size':>5} {'single':>6}")
    for name, m in doc["models"].items():
        for score, kinds in m["validation"].items():
            for kind, levels in kinds.items():
                for level, f in levels.items():
                    print(
                        f"{name:<12} {score:<5} {kind:<8} {level:>5} {f['coverage']:>7.2%} "
                        f"{f['min_class_coverage']:>7.2%} {f['mean_size']:>5.2f} {f['single']:>6.1%}"
                    )
    print(f"chosen: {doc['chosen']} ({doc['choice_rule']})")
    for name, m in doc["models"].items():
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
