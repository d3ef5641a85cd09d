"""Seconds per training epoch of every model (full data, fast preset, seed 0), for before/after comparisons.

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_epoch.py [--epochs 5] [--out FILE]

Each model trains a few epochs; the figures are the median and the minimum of the per-epoch times after the
first (the first carries one-off costs; the minimum is the least disturbed by anything else on the machine).
The hybrid's MLP trains on the features of a one-epoch CNN. Only the registry, the model
classes and `fit` are used, so the script also runs against an older checkout (PYTHONPATH=OTHER/src) to compare
two versions of the training code on the same machine. Prints a table, then JSON.
"""

import argparse
import itertools
import json
import statistics
import sys

import record
from fmnist.data import dataset
from fmnist.models import registry

NAME = "epoch"
MODELS = ("linear", "mlp", "cnn", "scratch-mlp", "hybrid")


def build(name, **overrides):
    spec = registry.spec(name)
    return spec.load_class()(**spec.resolve("fast", overrides))


def seconds_per_epoch(name, splits, epochs):
    reused = {}
    if name == "hybrid":
        cnn = build("cnn", epochs=1)
        cnn.fit(splits, seed=0, progress=False)
        reused = {"cnn": cnn}
    model = build(name, epochs=epochs, patience=epochs, **reused)
    history = model.fit(splits, seed=0, progress=False)
    times = [b["seconds"] - a["seconds"] for a, b in itertools.pairwise(history)]
    return {"median_s": statistics.median(times), "min_s": min(times), "per_epoch_s": [round(t, 3) for t in times]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per model (default: 5)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/epoch-DATE.json)")
    args = parser.parse_args(argv)
    splits = dataset.split(dataset.load(), seed=0)
    results = {}
    for name in args.models.split(","):
        results[name] = seconds_per_epoch(name, splits, args.epochs)
        print(f"{name}: {results[name]['median_s']:.3f} s/epoch", file=sys.stderr)
    head = record.header()
    report = {"code": registry.__file__, "results": results}
    print(record.title(f"seconds per epoch, epochs 2-{args.epochs}", head))
    print(f"  {'model':<12}{'median':>8}{'min':>8}")
    for name, r in results.items():
        print(f"  {name:<12}{r['median_s']:>8.3f}{r['min_s']:>8.3f}")
    print(json.dumps(report, indent=2))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
