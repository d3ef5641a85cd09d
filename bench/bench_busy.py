"""End to end: `fmnist train cnn` on an idle machine and with one core held by a busy loop.

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_busy.py [--subset 24000] [--epochs 3] [--repeats 2]
        [--out FILE]

Runs the real command in fresh processes (fast preset, seed 0, training on `--subset` images) and reads the
training time it records in metrics.json (training and per-epoch validation, not data loading or the report):
images/s = epochs x training images / training seconds. Conditions: idle with the default thread policy (the
cores free at the start), idle on one thread (the reference), and with a single-threaded busy loop that this
benchmark starts (and kills), both with the default policy and with `--threads` = all cores (what torch alone
would do). The precision is pinned to what `auto` picks here when idle, so every condition runs the same
arithmetic. Prints the CPU model, date, a table (median of the repeats), then JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmnist.engine import precision
from fmnist.engine.machine import cpu_name
from fmnist.report.tables import table

BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def train(args, extra, folder):
    command = [sys.executable, "-m", "fmnist", "train", "cnn", "--seed", "0", "--subset", str(args.subset)]
    command += ["--epochs", str(args.epochs), "--no-progress", "--out", str(folder), *extra]
    subprocess.run(command, check=True, capture_output=True, text=True)
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    images = args.epochs * args.subset / metrics["train_seconds"]
    return {"images_per_s": round(images), "threads": config["threads"]}


def condition(args, name, extra, busy, work):
    runs = []
    for repeat in range(args.repeats):
        loop = subprocess.Popen(BUSY_LOOP) if busy else None
        try:
            time.sleep(1.0 if busy else 0.0)  # the loop is running before training looks for free cores
            runs.append(train(args, extra, work / f"{name}-{repeat}"))
        finally:
            if loop is not None:
                loop.kill()
                loop.wait()
        print(json.dumps({"condition": name, **runs[-1]}), file=sys.stderr)
    return {"runs": runs, "images_per_s": statistics.median(r["images_per_s"] for r in runs)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=24_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    arithmetic = precision.settle("auto")
    cores = len(os.sched_getaffinity(0))
    conditions = {
        "idle, default threads": ([], False),
        "idle, 1 thread": (["--threads", "1"], False),
        "busy core, default threads": ([], True),
        f"busy core, {cores} threads": (["--threads", str(cores)], True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            name: condition(args, name, [*extra, "--precision", arithmetic], busy, Path(tmp))
            for name, (extra, busy) in conditions.items()
        }
    reference = results["idle, 1 thread"]["images_per_s"]
    rows = []
    for name, r in results.items():
        threads = ",".join(str(run["threads"]) for run in r["runs"])
        rows.append((name, r["images_per_s"], threads, f"{r['images_per_s'] / reference:.2f}"))
    print(f"fmnist train cnn, busy machine: {cpu_name()}, {cores} cores, {time.strftime('%Y-%m-%d %H:%M %z')}")
    print(table(("condition", "images/s", "threads", "vs idle 1 thread"), rows))
    report = {"cpu": cpu_name(), "cores": cores, "date": time.strftime("%Y-%m-%d %H:%M %z"), "precision": arithmetic}
    report |= {"subset": args.subset, "epochs": args.epochs, "results": results}
    report["busy_vs_idle_one_thread"] = round(results["busy core, default threads"]["images_per_s"] / reference, 2)
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
