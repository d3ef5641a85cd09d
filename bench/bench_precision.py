"""fp32 against bf16 training, per torch model and seed: training time and accuracy (the 0.15-point rule).

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_precision.py [--models cnn] [--seeds 0,1,2]
        [--precisions fp32,bf16] [--preset fast] [--out FILE]

Each model is trained from its preset with the given precision (all else equal) and evaluated as `predict` does
(the model's own test-time augmentation); validation decides whether bf16 may be used (`auto`: within 0.15
points of fp32, mean over the seeds). Test accuracy is printed for the record only. Prints the CPU, the date,
whether it has native bf16 (what `auto` decides from), a table, then JSON; writes the JSON to
bench/results/precision-DATE.json (or --out).
"""

import argparse
import json
import statistics
import sys

import record
from fmnist.data import dataset as data
from fmnist.engine import precision
from fmnist.metrics import scores
from fmnist.models import registry
from fmnist.report.tables import table

NAME = "precision"
RULE = 0.0015  # bf16 is used only within 0.15 points of fp32 validation accuracy


def accuracy(model, images, labels):
    return scores.accuracy(model.predict_logits(images), labels)  # as `predict` gives it (the model's own TTA)


def one_run(name, preset, splits, seed, arithmetic):
    model = registry.build(name, preset, precision=arithmetic)
    history = model.fit(splits, seed=seed, progress=sys.stderr.isatty())
    return {
        "model": name,
        "precision": arithmetic,
        "seed": seed,
        "train_seconds": round(history[-1]["seconds"], 1),
        "val_accuracy": accuracy(model, splits.x_val, splits.y_val),
        "test_accuracy": accuracy(model, splits.x_test, splits.y_test),
    }


def verdicts(runs, names):
    """Per model: mean validation accuracy and training time per precision, and whether bf16 passes the rule."""
    out = {}
    for name in names:
        mine = [r for r in runs if r["model"] == name]
        means = {
            p: {
                "val": statistics.mean(r["val_accuracy"] for r in mine if r["precision"] == p),
                "test_median": statistics.median(r["test_accuracy"] for r in mine if r["precision"] == p),
                "seconds": statistics.mean(r["train_seconds"] for r in mine if r["precision"] == p),
            }
            for p in {r["precision"] for r in mine}
        }
        if {"fp32", "bf16"} <= set(means):
            means["bf16_within_rule"] = means["bf16"]["val"] >= means["fp32"]["val"] - RULE
            means["speedup"] = round(means["fp32"]["seconds"] / means["bf16"]["seconds"], 2)
        out[name] = means
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/precision-DATE.json)")
    args = parser.parse_args()
    names, seeds = args.models.split(","), [int(s) for s in args.seeds.split(",")]
    head = record.header()
    setup = {"preset": args.preset, "native_bf16": precision.native_bf16()}
    print(record.title("fp32 against bf16 training", head))
    print(json.dumps(setup))
    dataset, runs = data.load(), []
    for seed in seeds:
        splits = data.split(dataset, seed)
        for name in names:
            for arithmetic in args.precisions.split(","):
                runs.append(one_run(name, args.preset, splits, seed, arithmetic))
                print(json.dumps(runs[-1]), flush=True)
    keys = ("model", "precision", "seed", "train_seconds")
    rows = [(*(r[k] for k in keys), f"{r['val_accuracy']:.2%}", f"{r['test_accuracy']:.2%}") for r in runs]
    print(table(("model", "precision", "seed", "train s", "val acc", "test acc"), rows))
    report = setup | {"runs": runs, "verdicts": verdicts(runs, names)}
    print(json.dumps(report, indent=1))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
