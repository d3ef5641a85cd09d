"""docs/leaderboard.md's generated parts: the CNN's seeds with and without --refit, the leaderboard, the torch
peers' full-length estimates and where the issue's targets stand (bench/results/leaderboard-*.json, and
models-best-*.json for the best preset without refit)."""

import inspect
import statistics

from gen_common import bench_module, from_newest, missing, newest, pct, table, where, yes_no

HOW = "python bench/bench_leaderboard.py --fmnist cnn@0,1,2,3,4 ..."
# The targets: the fast preset's mean test accuracy over SEEDS seeds, each run within SECONDS; the best
# preset's with --refit.
FAST_TARGET = {"accuracy": 0.936, "seeds": 5, "seconds": 90}
BEST_TARGET = {"accuracy": 0.953, "seeds": 5}


def _row(doc, recipe):
    return next((r for r in doc["rows"] if r["recipe"] == recipe), None)


def _seeds(doc, model):
    """The seeds of `model`'s fmnist group, in the order of its rows' values."""
    for group in doc["fmnist"]:
        models, _, seeds = group.partition("@")
        if model in models.split(","):
            return [int(s) for s in (seeds or "0").split(",")]
    return []


def _mean(spread):
    interval = spread.get("interval")
    shown = pct(spread["mean"])
    return f"{shown} [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]" if interval else shown


def seeds_table():
    """The fast CNN per seed: selection and refit test accuracy and training time (the refit's with its selection's)."""
    path, doc = newest("leaderboard")
    sel, refit = (_row(doc, f"fmnist cnn (fast){s}") for s in ("", " + refit")) if doc else (None, None)
    if sel is None or refit is None:
        return missing("leaderboard", HOW)
    acc, secs = (sel["test_accuracy"], refit["test_accuracy"]), (sel["train_seconds"], refit["train_seconds"])
    rows = []
    for i, seed in enumerate(_seeds(doc, "cnn")):
        cells = (pct(acc[0]["values"][i]), f"{secs[0]['values'][i]:.0f} s", sel["epochs"][i])
        rows.append((seed, *cells, pct(acc[1]["values"][i]), f"{secs[1]['values'][i]:.0f} s"))
    rows.append(
        ("mean [95 % t CI]", _mean(acc[0]), f"{secs[0]['mean']:.0f} s", "", _mean(acc[1]), f"{secs[1]['mean']:.0f} s")
    )
    held = [f"{r['test_ece']:.4f}" for r in (sel, refit)], [pct(r["test_unknown_rate"], 1) for r in (sel, refit)]
    rows.append(
        (
            "mean held-out checks on test",
            f"ECE {held[0][0]}, unknown {held[1][0]}",
            "",
            "",
            f"ECE {held[0][1]}, unknown {held[1][1]}",
            "",
        )
    )
    head = ("seed", "selection test", "its training", "epochs chosen", "refit test", "refit training (with selection)")
    return f"{table(head, rows)}\n\n{where(path, doc)}"


@from_newest("leaderboard", HOW)
def leaderboard_table(doc):
    """The table bench/bench_leaderboard.py prints."""
    return bench_module("bench_leaderboard").table(doc)


@from_newest("leaderboard", HOW)
def full_length_table(doc):
    """Peers run for fewer epochs than their recipe: the recipe's length estimated as seconds per epoch x epochs."""
    peers = bench_module("peers")
    rows = []
    for r in (r for r in doc["rows"] if r["kind"] == "peer"):
        default = inspect.signature(peers.PEERS[r["key"]]).parameters.get("epochs")
        ran = statistics.mean(r["epochs"])
        if default is None or ran >= default.default:
            continue
        estimate = r["train_seconds"]["mean"] / ran * default.default
        rows.append(
            (
                r["recipe"],
                f"{ran:g}",
                f"{r['train_seconds']['mean']:.0f} s",
                default.default,
                f"{estimate / 60:.0f} min",
            )
        )
    if not rows:
        return "Every peer ran its recipe's full length."
    head = ("peer", "epochs run", "training", "recipe's epochs", "full length, estimated (not measured)")
    return table(head, rows)


def _fast_rows(doc):
    rows = []
    for recipe in ("fmnist cnn (fast)", "fmnist cnn (fast) + refit"):
        r = _row(doc, recipe)
        if r is None:
            continue
        acc, slowest = r["test_accuracy"]["mean"], max(r["train_seconds"]["values"])
        met = (
            acc >= FAST_TARGET["accuracy"] and r["seeds"] >= FAST_TARGET["seeds"] and slowest <= FAST_TARGET["seconds"]
        )
        measured = f"{pct(acc)} over {r['seeds']} seeds, slowest seed {slowest:.0f} s"
        target = (
            f"≥ {pct(FAST_TARGET['accuracy'], 1)} over {FAST_TARGET['seeds']} seeds, each ≤ {FAST_TARGET['seconds']} s"
        )
        rows.append((recipe, measured, target, yes_no(met)))
    return rows


def _best_rows(doc):
    target = f"≥ {pct(BEST_TARGET['accuracy'], 1)} over {BEST_TARGET['seeds']} seeds"
    r = _row(doc, "fmnist cnn (best) + refit")
    if r is not None:
        acc = r["test_accuracy"]["mean"]
        met = acc >= BEST_TARGET["accuracy"] and r["seeds"] >= BEST_TARGET["seeds"]
        return [("fmnist cnn (best) + refit", f"{pct(acc)} over {r['seeds']} seeds", target, yes_no(met))]
    rows = [("fmnist cnn (best) + refit", "not measured", target, "not shown")]
    path, best = newest("models-best")
    if best is not None:
        seeds = best["results"]["cnn_best_seeds"]
        shown = " / ".join(pct(a) for a in seeds["test_accuracy"])
        minutes = " / ".join(f"{s / 60:.1f}" for s in seeds["train_seconds"])
        known = f"{shown} over {len(seeds['seeds'])} seeds, {minutes} min each; {where(path, best)}"
        rows.append(("fmnist cnn (best), without refit", known, target, "not shown"))
    return rows


@from_newest("leaderboard", HOW)
def targets_table(doc):
    beaten = ", ".join(b["peer"] for b in doc["beaten"]) or "none"
    peers = ("every peer", f"peers above fmnist at their time: {beaten}", "none", yes_no(not doc["beaten"]))
    rows = [*_fast_rows(doc), *_best_rows(doc), peers]
    return table(("row", "measured", "target", "met"), rows)


TABLES = {
    "leaderboard-seeds": seeds_table,
    "leaderboard": leaderboard_table,
    "leaderboard-full-length": full_length_table,
    "leaderboard-targets": targets_table,
}
