"""End to end: `fmnist train cnn` on an idle machine and with one core held by a busy loop.

    flock /tmp/fmnist-cpu.lock .venv/bin/python bench/bench_busy.py [--subset 24000] [--epochs 3] [--repeats 1]
        [--out FILE]

Runs the real command in fresh processes (fast preset, seed 0, training on `--subset` images) and reads the
training time it records (history.csv: seconds at the end of each epoch, training and validation, not data
loading or the report): images/s = training images x epochs / seconds. Conditions: idle with the default thread
policy (the usable cores), idle on one thread (the reference), a single-threaded busy loop this benchmark starts
(and kills) 1 s before training, and the same loop started only after the first epoch (then only the later
epochs count), each with fmnist's default (OpenMP threads wait passively) and with OMP_WAIT_POLICY=ACTIVE (they
spin, OpenMP's own default). Every run must write the same weights as the idle default one (the thread count no
longer follows the load).
Prints the CPU model, date, a table (median of the repeats), then JSON.
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record
from fmnist.engine import precision
from fmnist.report.tables import table

NAME = "busy"
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def command(args, folder, extra):
    words = [sys.executable, "-m", "fmnist", "train", "cnn", "--seed", "0", "--subset", str(args.subset)]
    return [*words, "--epochs", str(args.epochs), "--no-progress", "--out", str(folder), *extra]


def images_per_s(args, folder, first_epoch):
    """Training images per second over the epochs from `first_epoch` (1-based) on, from history.csv."""
    rows = list(csv.DictReader((folder / "history.csv").open()))
    seconds = [float(row["seconds"]) for row in rows]
    start = seconds[first_epoch - 2] if first_epoch > 1 else 0.0
    return args.subset * (len(rows) - first_epoch + 1) / (seconds[-1] - start)


def train(args, folder, extra, env, busy_after):
    """One run; the busy loop starts `busy_after` seconds into it (None: no loop, 0: 1 s before it starts)."""
    loop = subprocess.Popen(BUSY_LOOP) if busy_after == 0 else None
    try:
        if loop is not None:
            time.sleep(1.0)  # the loop is running before training settles its threads
        log = (folder.parent / f"{folder.name}.log").open("w")
        process = subprocess.Popen(command(args, folder, extra), env=env, stdout=log, stderr=log)
        if busy_after:  # config.json is written as training starts
            while not (folder / "config.json").exists() and process.poll() is None:
                time.sleep(0.01)
            time.sleep(busy_after)
            loop = subprocess.Popen(BUSY_LOOP)
        code = process.wait()
        log.close()
        if code != 0:
            raise SystemExit(f"bench_busy: training failed: {(folder.parent / f'{folder.name}.log').read_text()}")
    finally:
        if loop is not None:
            loop.kill()
            loop.wait()
    config = json.loads((folder / "config.json").read_text())
    weights = next(folder.glob("model.*/weights.safetensors")).read_bytes()
    first = 2 if busy_after else 1
    return {"images_per_s": round(images_per_s(args, folder, first)), "threads": config["threads"]}, weights


def condition(args, name, spec, work, busy_after):
    extra, variables, busy = spec
    unset = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
    env = {k: v for k, v in os.environ.items() if k not in unset} | variables
    after = {"none": None, "before": 0, "after first epoch": busy_after}[busy]
    runs, weights = [], set()
    for _ in range(args.repeats):
        run, written = train(args, work / f"{len(os.listdir(work))}", extra, env, after)
        runs.append(run)
        weights.add(written)
        print(json.dumps({"condition": name, **run}), file=sys.stderr)
    return {"runs": runs, "images_per_s": statistics.median(r["images_per_s"] for r in runs)}, weights


def first_epoch_seconds(args, work):
    """Seconds of the first epoch (training and validation), measured idle."""
    folder = work / "probe"
    subprocess.run(command(args, folder, []), check=True, capture_output=True)
    return float(next(csv.DictReader((folder / "history.csv").open()))["seconds"])


SPIN = {"OMP_WAIT_POLICY": "ACTIVE"}  # waiting OpenMP threads spin (libgomp's default outside fmnist)
CONDITIONS = {  # name: (extra flags, environment, busy loop); fmnist's default waits passively
    "idle, default": ([], {}, "none"),
    "idle, 1 thread": (["--threads", "1"], {}, "none"),
    "idle, spinning": ([], SPIN, "none"),
    "busy core from the start": ([], {}, "before"),
    "busy core from the start, spinning": ([], SPIN, "before"),
    "busy core after epoch 1": ([], {}, "after first epoch"),
    "busy core after epoch 1, spinning": ([], SPIN, "after first epoch"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=24_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", help="write the JSON here (default: bench/results/busy-DATE.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        busy_after = first_epoch_seconds(args, work)
        results, weights = {}, {}
        for name, spec in CONDITIONS.items():
            results[name], weights[name] = condition(args, name, spec, work, busy_after)
    default_weights = weights["idle, default"]
    same = {name: w == default_weights for name, w in weights.items() if "1 thread" not in name}
    reference = results["idle, 1 thread"]["images_per_s"]
    rows = []
    for name, r in results.items():
        threads = ",".join(str(run["threads"]) for run in r["runs"])
        rows.append((name, r["images_per_s"], threads, f"{r['images_per_s'] / reference:.2f}"))
    head = record.header()
    print(record.title("fmnist train cnn, busy machine", head))
    print(table(("condition", "images/s", "threads", "vs idle 1 thread"), rows))
    print("same weights as idle, default: " + ", ".join(f"{n}: {s}" for n, s in same.items()))
    report = {"precision": precision.settle("auto"), "subset": args.subset, "epochs": args.epochs}
    report |= {"busy_loop_after_s": round(busy_after, 1), "results": results, "same_weights_as_idle": same}
    for name in results:
        report.setdefault("vs_idle_one_thread", {})[name] = round(results[name]["images_per_s"] / reference, 2)
    print(json.dumps(report, indent=1))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
