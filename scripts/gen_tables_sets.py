"""docs/prediction-sets.md's generated parts: the choice of the score and of δ on validation, the test figures per
model and level, per class and per seed against issue 33's bounds, and the sets where exchangeability breaks (from
bench/results/sets-*.json, written by bench/bench_sets.py)."""

import numpy as np
from gen_common import from_newest, pct, src_module, table, yes_no

HOW = "python bench/bench_sets.py RUN_DIR [RUN_DIR ...] --onnx"
# Issue 33's acceptance: at the default level, test coverage within these bounds, every class at least CLASS_MIN,
# mean set size at most SIZE_MAX, for these models; every model within GAP of each level.
OVERALL, CLASS_MIN, SIZE_MAX, GAP = (0.94, 0.965), 0.93, 1.15, 0.015
BOUNDED = ("cnn", "hybrid")


def _names():
    return src_module("fmnist.data.dataset").CLASS_NAMES


def _level(level):
    return f"{100 * float(level):g} %"


@from_newest("sets", HOW)
def score_table(doc):
    run = doc["runs"][0]
    rows = []
    for name, m in run["models"].items():
        for score, kinds in m["validation"].items():
            a, b = kinds["marginal"]["0.95"], kinds["class"]["0.95"]
            marginal = f"{pct(a['coverage'])} / {pct(a['min_class_coverage'])} / {a['mean_size']:.2f}"
            cells = (pct(b["coverage"]), pct(b["min_class_coverage"]), f"{b['mean_size']:.2f}", pct(b["single"], 1))
            rows.append((name, score, marginal, " / ".join(cells) + f" / {pct(b['empty'], 1)}"))
    head = ("model", "score", "marginal: coverage / lowest class / size")
    head += ("class-conditional: coverage / lowest class / size / one class / empty",)
    chosen = f"Chosen: **{run['chosen']}** ({doc['choice_rule']}); {doc['halves']} half-splits, seed {run['seed']}."
    return f"{table(head, rows)}\n\n{chosen}"


@from_newest("sets", HOW)
def delta_table(doc):
    deltas = next(iter(doc["runs"][0]["models"].values()))["delta"]
    rows = []
    for run in doc["runs"]:
        for name, m in run["models"].items():
            cells = (f"{pct(m['delta'][d]['short'], 0)} / {m['delta'][d]['mean_size']:.3f}" for d in deltas)
            rows.append((run["seed"], name, *cells))
    head = ("seed", "model", *("textbook rank" if d == "None" else f"δ = {d}" for d in deltas))
    chosen = ", ".join(f"seed {run['seed']}: **{run['delta_chosen']}**" for run in doc["runs"])
    rule = f"Rule: {doc['delta_rule']}. Chosen: {chosen}; the stored sets use δ = {doc['delta_used']}."
    return f"{table(head, rows)}\n\n{rule}"


@from_newest("sets", HOW)
def widen_table(doc):
    run = doc["runs"][0]
    rows = []
    for name, m in run["models"].items():
        for rate, f in m["widen"].items():
            sizes = " → ".join(f"{v:.2f}" for v in f["severity_size"])
            covers = " → ".join(pct(v, 0) for v in f["severity_coverage"])
            rows.append((name, rate, f"{f['size']:.3f}", sizes, covers))
    head = ("model", "rate", "mean size (validation)", "mean size, severity 0 → 5", "coverage, severity 0 → 5")
    chosen = ", ".join(f"seed {r['seed']}: **{r['widen_chosen']}**" for r in doc["runs"])
    rule = (
        f"Rule: {doc['widen_rule']}. Chosen: {chosen}; the stored sets use rate {doc['widen_used']} from the "
        f"validation images' {100 * doc['widen_from']:g}th percentile of the unknown-input score. Severities: the "
        f"first {doc['widen_images']:,} validation images of seed {run['seed']} under every corruption (0: clean)."
    )
    return f"{table(head, rows)}\n\n{rule}"


@from_newest("sets", HOW)
def test_table(doc):
    run = doc["runs"][0]
    rows = []
    for name, m in run["models"].items():
        for level, f in (m["test"] or {}).items():
            low = int(np.argmin(f["per_class"]))
            cells = (pct(f["coverage"]), f"{pct(f['per_class'][low])} ({_names()[low]})", f"{f['mean_size']:.3f}")
            rows.append((name, _level(level), *cells, pct(f["single"], 1), pct(f["empty"], 1)))
    head = ("model", "level", "test coverage", "lowest class", "mean size", "one class", "empty")
    return f"{table(head, rows)}\n\nSeed {run['seed']}, δ = {doc['delta_used']}."


@from_newest("sets", HOW)
def class_table(doc):
    run = doc["runs"][0]
    rows = [
        (name, *(pct(c, 1) for c in m["test"]["0.95"]["per_class"])) for name, m in run["models"].items() if m["test"]
    ]
    return f"{table(('model', *_names()), rows)}\n\nSeed {run['seed']}, level {doc['levels'][1]}."


def _gap(run):
    """(largest |test coverage - level| over every model and level of a run, where)."""
    gaps = [
        (abs(f["coverage"] - float(level)), f"{name} at {_level(level)}")
        for name, m in run["models"].items()
        for level, f in (m["test"] or {}).items()
    ]
    return max(gaps)


@from_newest("sets", HOW)
def seeds_table(doc):
    rows = []
    for run in doc["runs"]:
        for name in BOUNDED:
            f = (run["models"].get(name) or {}).get("test", {}) or {}
            f = f.get("0.95")
            if f is None:
                continue
            met = OVERALL[0] <= f["coverage"] <= OVERALL[1] and min(f["per_class"]) >= CLASS_MIN
            met = met and f["mean_size"] <= SIZE_MAX
            low = int(np.argmin(f["per_class"]))
            cells = (pct(f["coverage"]), f"{pct(f['per_class'][low])} ({_names()[low]})", f"{f['mean_size']:.3f}")
            rows.append((run["seed"], name, *cells, yes_no(met)))
        gap, at = _gap(run)
        rows.append((run["seed"], "every model, 90 / 95 / 99 %", f"largest gap {100 * gap:.2f} points ({at})", "", ""))
        rows[-1] += (yes_no(gap <= GAP),)
    head = ("seed", "model", "test coverage at 95 %", "lowest class", "mean size", "within the bounds")
    bounds = (
        f"Bounds (issue 33): coverage {pct(OVERALL[0], 1)}–{pct(OVERALL[1], 1)}, every class ≥ {pct(CLASS_MIN, 1)}, "
        f"mean size ≤ {SIZE_MAX}; every model within {100 * GAP:g} points of each level."
    )
    return f"{table(head, rows)}\n\n{bounds} δ = {doc['delta_used']}."


@from_newest("sets", HOW)
def onnx_line(doc):
    run = doc["runs"][0]
    checked = {n: m["onnx"] for n, m in run["models"].items() if m.get("onnx")}
    if not checked:
        return f"ONNX parity not checked (`{HOW}` checks it)."
    cells = ", ".join(f"{name}: {o['differ']} of {o['images']:,} images differ" for name, o in checked.items())
    return f"ONNX parity, the graph's sets against fmnist's on the test split: {cells}."


@from_newest("sets", HOW)
def shift_table(doc):
    run = doc["runs"][0]
    if not run.get("shift"):
        return f"No sweep recorded: `fmnist evaluate RUN --robustness 1000` then `{HOW}`."
    shift = run["shift"]
    rows, worst = [], []
    for name, m in shift["models"].items():
        sizes = np.mean([m["size"][c] for c in shift["corruptions"]], axis=0)
        covers = np.mean([m["coverage"][c] for c in shift["corruptions"]], axis=0)
        rows.append((name, "mean size", f"{m['clean']['size']:.2f}", *(f"{v:.2f}" for v in sizes)))
        rows[-1] += (f"{m['photos']['size']:.2f}",)
        rows.append((name, "coverage", pct(m["clean"]["coverage"], 1), *(pct(v, 1) for v in covers)))
        rows[-1] += (pct(m["photos"]["coverage"], 1),)
        last = {c: m["coverage"][c][-1] for c in shift["corruptions"]}
        bad = min(last, key=last.get)
        worst.append(f"{name}: {bad} {pct(last[bad], 1)} (size {m['size'][bad][-1]:.2f})")
    head = ("model", "", "clean", *(f"severity {s}" for s in shift["severities"]), "photos")
    note = (
        f"The {_level(shift['coverage_level'])} sets on the first {shift['images']:,} test images of seed "
        f"{run['seed']}; severities: mean over the {len(shift['corruptions'])} corruptions. Worst corruption at "
        f"severity {shift['severities'][-1]}: {'; '.join(worst)}."
    )
    return f"{table(head, rows)}\n\n{note}"


TABLES = {
    "sets-score": score_table,
    "sets-delta": delta_table,
    "sets-widen": widen_table,
    "sets-test": test_table,
    "sets-class": class_table,
    "sets-seeds": seeds_table,
    "sets-onnx": onnx_line,
    "sets-shift": shift_table,
}
