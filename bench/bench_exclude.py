"""Does training without the audit's suspects help? The fast CNN trained per seed with and without
`--exclude-labels AUDIT/label_issues.csv`: validation accuracy (the same validation images and labels both ways),
and test accuracy on the original labels.

Usage: python bench/bench_exclude.py AUDIT_DIR [--seeds 0] [--work DIR] [--out FILE] [--subset N]
Each run is `fmnist train cnn` in a subprocess; prints a JSON document and a table; writes the JSON to
bench/results/audit-exclude-DATE.json (or --out).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import record
from fmnist.rundir import labels

NAME = "audit-exclude"


def train(seed, out, extra):
    command = [sys.executable, "-m", "fmnist", "train", "cnn", "--seed", str(seed), "--out", str(out)]
    subprocess.run([*command, "--no-progress", "--no-report", *extra], check=True)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    keys = ("val_accuracy", "test_accuracy", "train_seconds", "epochs")
    return {key: metrics[key] for key in keys} | {"command": command[1:] + extra}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audit_dir", help="a folder written by fmnist audit")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/audit-exclude-DATE.json)")
    parser.add_argument("--subset", help="a quick look on N training images (figures not comparable)")
    args = parser.parse_args()
    quick = ["--subset", args.subset, "--epochs", "1"] if args.subset else []
    issues = Path(args.audit_dir) / labels.ISSUES
    flagged = sum(issue.file == "train" for issue in labels.read_issues(issues))
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-exclude-"))
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        plain = train(seed, work / f"plain-{seed}", quick)
        without = train(seed, work / f"excluded-{seed}", [*quick, "--exclude-labels", str(issues)])
        runs.append({"seed": seed, "all_labels": plain, "without_suspects": without})
    head = record.header()
    result = {"benchmark": "audit_exclude", "issues": str(issues), "flagged_train_images": flagged, "runs": runs}
    for key in ("val_accuracy", "test_accuracy"):
        diffs = [r["without_suspects"][key] - r["all_labels"][key] for r in runs]
        result[f"{key}_difference_mean"] = statistics.mean(diffs)
    print(json.dumps(result, indent=2))
    print("\n" + record.title("fast CNN with and without the audit's suspects", head))
    print(f"{'seed':>5}{'val all':>10}{'val excl':>10}{'test all':>10}{'test excl':>11}")
    for r in runs:
        a, b = r["all_labels"], r["without_suspects"]
        print(
            f"{r['seed']:>5}{a['val_accuracy']:>10.2%}{b['val_accuracy']:>10.2%}"
            f"{a['test_accuracy']:>10.2%}{b['test_accuracy']:>11.2%}"
        )
    record.save(NAME, result, args.out, head=head)


if __name__ == "__main__":
    main()
