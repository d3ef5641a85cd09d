"""docs/audit.md's generated parts: the flip benchmark against its targets and the training with and without the
suspects (bench/results/audit-flips-*.json, audit-exclude-*.json)."""

import json

from gen_common import RESULTS, from_newest, missing, pct, table, where, yes_no

TRAIN_FILE_IMAGES = 60_000  # Fashion-MNIST's training file
EXCLUDE_HOW = "python bench/bench_exclude.py AUDIT_DIR --seeds 0,1,2"


def _newest_flips():
    """(path, doc) of the newest audit-flips-RATE-seedS-DATE.json: the name carries the rate and the seed."""
    found = sorted(RESULTS.glob("audit-flips-*-20[0-9][0-9]-[0-9][0-9]-[0-9][0-9].json"), key=lambda p: p.stem[-10:])
    return (found[-1], json.loads(found[-1].read_text())) if found else (None, None)


def flips_table():
    path, doc = _newest_flips()
    if doc is None:
        return missing("audit-flips", "python bench/bench_audit.py --rate 0.02 --seed 0")
    targets = doc["targets"]
    minutes, target_minutes = doc["audit_seconds"] / 60, targets["audit_seconds"] / 60
    rows = [
        ("training labels flipped", f"{doc['flipped']:,} ({pct(doc['rate'], 0)})", "", ""),
        ("training images flagged", f"{doc['flagged_train']:,}", "", ""),
        ("flipped and flagged", f"{doc['flipped_flagged']:,}", "", ""),
        ("recall", pct(doc["recall"], 1), f"≥ {pct(targets['recall'], 0)}", yes_no(doc["recall"] >= targets["recall"])),
        (
            f"top-k precision (k = {doc['flipped']:,})",
            pct(doc["top_k_precision"], 1),
            f"≥ {pct(targets['top_k_precision'], 0)}",
            yes_no(doc["top_k_precision"] >= targets["top_k_precision"]),
        ),
        ("whole audit", f"{minutes:.1f} min", f"≤ {target_minutes:.0f} min", yes_no(minutes <= target_minutes)),
        ("its folds", ", ".join(f"{s:.0f}" for s in doc["fold_seconds"]) + " s", "", ""),
        (
            "out-of-sample accuracy, train / test",
            " / ".join(pct(a) for a in doc["out_of_sample_accuracy"].values()),
            "",
            "",
        ),
    ]
    settings = f"Model `{doc['model']}`, preset `{doc['preset']}`, {doc['folds']} folds, seed {doc['seed']}, "
    settings += f"{doc['threads']} threads."
    return f"{table(('measure', 'measured', 'target', 'met'), rows)}\n\n{where(path, doc)} {settings}"


@from_newest("audit-exclude", EXCLUDE_HOW)
def suspects_table(doc):
    """The real data's training-file suspects, as the exclusion benchmark read them."""
    flagged = doc["flagged_train_images"]
    rows = [("train", f"{TRAIN_FILE_IMAGES:,}", f"{flagged:,}", pct(flagged / TRAIN_FILE_IMAGES, 1))]
    return table(("file", "images", "suspects", "share"), rows)


def _points(difference):
    return f"**{100 * difference:+.2f} points**".replace("-", "−")


@from_newest("audit-exclude", EXCLUDE_HOW)
def exclude_table(doc):
    rows = []
    for r in doc["runs"]:
        a, w = r["all_labels"], r["without_suspects"]
        unflagged = f"{pct(a['val_accuracy_unflagged'])} → {pct(w['val_accuracy_unflagged'])}"
        cells = (pct(a["val_accuracy"]), pct(w["val_accuracy"]), unflagged, pct(a["test_accuracy"]))
        rows.append((r["seed"], f"{r['dropped_from_train']:,}", *cells, pct(w["test_accuracy"])))
    means = (doc["val_accuracy_difference_mean"], doc["val_accuracy_unflagged_difference_mean"])
    rows.append(
        (
            "mean difference",
            "",
            "",
            _points(means[0]),
            _points(means[1]),
            "",
            _points(doc["test_accuracy_difference_mean"]),
        )
    )
    head = ("seed", "dropped from training", "validation, all labels", "validation, without suspects")
    head += ("the same on the unflagged validation images", "test (original labels), all", "test, without suspects")
    return table(head, rows)


TABLES = {"audit-flips": flips_table, "audit-suspects": suspects_table, "audit-exclude": exclude_table}
