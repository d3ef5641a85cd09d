"""Does training without the audit's suspects help? The fast CNN trained per seed with and without
`--exclude-labels AUDIT/label_issues.csv`: validation accuracy (the same validation images and labels both ways),
also apart on the validation images the audit flagged and the others (a diagnostic: no label is changed), and
test accuracy on the original labels. A run already finished in --work is read again, not retrained.

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

import numpy as np

import record
from fmnist.data import dataset as data
from fmnist.rundir import labels

NAME = "audit-exclude"


def train(seed, out, extra, flagged_val):
    """Train (unless `out` holds a finished run); its figures, with validation accuracy on the flagged rows
    (`flagged_val`, a mask in the split's validation order) and on the others."""
    command = [sys.executable, "-m", "fmnist", "train", "cnn", "--seed", str(seed), "--out", str(out)]
    if not (Path(out) / "metrics.json").is_file():
        subprocess.run([*command, "--no-progress", "--no-report", *extra], check=True)
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    keys = ("val_accuracy", "test_accuracy", "train_seconds", "epochs")
    with np.load(Path(out) / "predictions.npz") as saved:
        right = saved["val_logits"].argmax(axis=1) == saved["val_labels"]
    apart = {"val_accuracy_unflagged": float(right[~flagged_val].mean())}
    apart["val_accuracy_flagged"] = float(right[flagged_val].mean()) if flagged_val.any() else None
    return {key: metrics[key] for key in keys} | apart | {"command": command[1:] + extra}


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
    suspects = [issue.index for issue in labels.read_issues(issues) if issue.file == "train"]
    flagged = len(suspects)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-exclude-"))
    dataset, runs = data.load(), []
    for seed in (int(s) for s in args.seeds.split(",")):
        train_pos, val_pos = data.split_positions(dataset.train_labels, seed)
        flagged_val = np.isin(val_pos, suspects)
        if args.subset:  # the quick look's validation: the first quarter of the split's
            flagged_val = flagged_val[: max(int(args.subset) // 4, 10)]
        plain = train(seed, work / f"plain-{seed}", quick, flagged_val)
        without = train(seed, work / f"excluded-{seed}", [*quick, "--exclude-labels", str(issues)], flagged_val)
        counts = {"dropped_from_train": int(np.isin(train_pos, suspects).sum()), "flagged_val": int(flagged_val.sum())}
        runs.append({"seed": seed, **counts, "all_labels": plain, "without_suspects": without})
    head = record.header()
    result = {"benchmark": "audit_exclude", "issues": str(issues), "flagged_train_images": flagged, "runs": runs}
    for key in ("val_accuracy", "val_accuracy_unflagged", "test_accuracy"):
        diffs = [r["without_suspects"][key] - r["all_labels"][key] for r in runs]
        result[f"{key}_difference_mean"] = statistics.mean(diffs)
    print(json.dumps(result, indent=2))
    print("\n" + record.title("fast CNN with and without the audit's suspects", head))
    print(f"{'seed':>5}{'val all':>10}{'val excl':>10}{'unflagged':>11}{'excl':>8}{'test all':>10}{'test excl':>11}")
    for r in runs:
        a, b = r["all_labels"], r["without_suspects"]
        print(
            f"{r['seed']:>5}{a['val_accuracy']:>10.2%}{b['val_accuracy']:>10.2%}{a['val_accuracy_unflagged']:>11.2%}"
            f"{b['val_accuracy_unflagged']:>8.2%}{a['test_accuracy']:>10.2%}{b['test_accuracy']:>11.2%}"
        )
    record.save(NAME, result, args.out, head=head)


if __name__ == "__main__":
    main()
