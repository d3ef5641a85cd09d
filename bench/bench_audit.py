"""How well `fmnist audit` finds labels known to be wrong, and how long it takes (targets: of the flipped training
images >= 90 % flagged; of the top-k suspects, k = the number flipped, >= 80 % flipped; <= 10 minutes).

A copy of the four IDX files is written with a seeded share of the training labels changed, each to another class
at random; `fmnist audit --allow-unverified` runs on it in a subprocess (timed as a user would see it, alone on
the machine through cpu-run); the flagged training rows of its label_issues.csv are compared with the flips.

Usage: python bench/bench_audit.py [--rate 0.02] [--seed 0] [--work DIR] [--out FILE] [-- extra audit flags]
Prints a JSON document and a table; writes the JSON to bench/results/audit-flips-RATE-seedS-DATE.json (or --out).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import record
from fmnist.data import dataset as data
from fmnist.rundir import labels

NAME = "audit-flips"


def flipped_copy(dataset, folder, rate, seed):
    """Write the four IDX files into `folder` with round(rate * 60,000) training labels moved to another class
    (uniformly among the other nine); return the flipped positions."""
    rng = np.random.default_rng(seed)
    given = dataset.train_labels.copy()
    flips = np.sort(rng.choice(len(given), size=round(rate * len(given)), replace=False))
    given[flips] = (given[flips] + rng.integers(1, data.NUM_CLASSES, size=len(flips))) % data.NUM_CLASSES
    arrays = {"train_images": dataset.train_images, "train_labels": given}
    arrays |= {"test_images": dataset.test_images, "test_labels": dataset.test_labels}
    for role, (name, magic, _) in data.FILES.items():
        array = arrays[role]
        head = struct.pack(">II", magic, len(array)) + (struct.pack(">II", 28, 28) if magic == 2051 else b"")
        (Path(folder) / name).write_bytes(head + np.ascontiguousarray(array, np.uint8).tobytes())
    return flips


def scored(issues, flips):
    """Recall of the flips among the flagged training rows; precision of the top-k (k = number flipped)."""
    train = [issue.index for issue in issues if issue.file == "train"]
    flipped = set(flips.tolist())
    top = train[: len(flips)]
    return {
        "flipped": len(flips),
        "flagged_train": len(train),
        "flipped_flagged": len(flipped.intersection(train)),
        "recall": len(flipped.intersection(train)) / len(flips),
        "top_k_precision": len(flipped.intersection(top)) / len(flips),
        "precision_all_flagged": len(flipped.intersection(train)) / max(len(train), 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.02, help="share of training labels flipped (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flips and of the audit (default 0)")
    parser.add_argument("--work", help="folder for the copied data and the audit (default: a temporary one)")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/audit-flips-RATE-seedS-DATE.json)")
    parser.add_argument("audit_flags", nargs="*", help="extra `fmnist audit` flags, after --")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-audit-"))
    (work / "data").mkdir(parents=True, exist_ok=True)
    flips = flipped_copy(data.load(), work / "data", args.rate, args.seed)
    command = [sys.executable, "-m", "fmnist", "audit", "--data-dir", str(work / "data"), "--allow-unverified"]
    command += ["--seed", str(args.seed), "--out", str(work / "audit"), "--no-report", *args.audit_flags]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=os.environ)
    seconds = time.perf_counter() - start
    summary = json.loads((work / "audit" / labels.SUMMARY).read_text())
    plan = json.loads((work / "audit" / labels.PLAN).read_text())
    head = record.header()
    result = {"benchmark": "audit_flips", "rate": args.rate, "seed": args.seed, "command": command[1:]}
    result |= {"model": plan["model"], "preset": plan["preset"], "epochs": plan["epochs"], "folds": plan["folds"]}
    result |= {"threads": plan["threads"], "audit_seconds": round(seconds, 1), "fold_seconds": summary["fold_seconds"]}
    result |= scored(labels.read_issues(work / "audit" / labels.ISSUES), flips)
    result |= {"suspects": summary["suspects"], "out_of_sample_accuracy": summary["accuracy"]}
    result["targets"] = {"recall": 0.9, "top_k_precision": 0.8, "audit_seconds": 600}
    print(json.dumps(result, indent=2))
    print("\n" + record.title(f"audit of {args.rate:.0%} flipped labels, seed {args.seed}", head))
    print(f"{'flipped':>8}{'flagged':>9}{'recall':>9}{'top-k prec':>12}{'time':>9}")
    print(
        f"{result['flipped']:>8}{result['flagged_train']:>9}{result['recall']:>9.1%}"
        f"{result['top_k_precision']:>12.1%}{seconds / 60:>7.1f} m"
    )
    record.save(f"{NAME}-{args.rate:g}-seed{args.seed}", result, args.out, head=head)


if __name__ == "__main__":
    main()
