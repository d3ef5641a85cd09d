"""`make run`'s figures as data: the five models of one `fmnist compare` run, with the common header.

Usage: python bench/bench_run.py [--run-dir runs/latest] [--from-existing] [--out FILE]
Runs `fmnist compare --out RUN_DIR --no-progress` (the fast preset, seed 0, as `make run`), timing it whole, then
records every model's parameters, validation and test accuracy, training seconds, CPU seconds and inference speed
from its own metrics.json into bench/results/run-DATE.json; the README's model table and the documentation's
benchmarks are generated from that file (scripts/gen_docs.py). --from-existing records a finished run instead of
training one, refused when the run was made on another processor than this one (the header names this machine).
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import record
from fmnist.engine import machine
from fmnist.rundir import layout, schema

NAME = "run"
KEEP = ("parameters", "val_accuracy", "test_accuracy", "train_seconds", "cpu_seconds", "epochs")


def recorded(run_dir):
    """{"preset", "seed", "total_seconds", "created", "models": {name: figures}} from a compare run's files."""
    compare = schema.read_compare(run_dir / layout.COMPARE)
    models = {}
    for name in compare["models"]:
        metrics = schema.read_metrics(run_dir / name / layout.METRICS)
        models[name] = {key: metrics.get(key) for key in KEEP}
        models[name]["inference_images_per_s"] = metrics["inference_images_per_s"]
    doc = {key: compare.get(key) for key in ("preset", "seed", "subset", "total_seconds", "created")}
    return doc | {"processor": compare.get("machine", {}).get("processor"), "models": models}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/latest")
    parser.add_argument("--from-existing", action="store_true", help="record a finished run; train nothing")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/run-DATE.json)")
    args = parser.parse_args()
    run_dir, wall = Path(args.run_dir), None
    if not args.from_existing:
        start = time.perf_counter()
        command = [sys.executable, "-m", "fmnist", "compare", "--out", str(run_dir), "--no-progress"]
        subprocess.run(command, check=True)
        wall = round(time.perf_counter() - start, 1)
    doc = recorded(run_dir) | {"command_seconds": wall}
    if doc["processor"] != machine.cpu_name():
        sys.exit(f"bench_run: {run_dir} was made on {doc['processor']!r}, not on this {machine.cpu_name()!r}")
    if doc["subset"]:
        sys.exit(f"bench_run: {run_dir} trained on a subset ({doc['subset']} images); record full runs only")
    head = record.header()
    print(record.title("make run: fmnist compare, fast preset", head))
    for name, m in doc["models"].items():
        print(
            f"{name:12} {100 * m['val_accuracy']:6.2f} % val {100 * m['test_accuracy']:6.2f} % test "
            f"{m['train_seconds']:8.1f} s"
        )
    record.save(NAME, doc, args.out, head=head)


if __name__ == "__main__":
    main()
