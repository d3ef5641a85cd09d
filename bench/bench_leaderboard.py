"""A CPU leaderboard: fmnist's models and presets (with and without --refit) against the recipes people would use
instead (bench/peers.py), on this machine, in one run, on the same data and split.

    /work/shared/bin/cpu-run .venv/bin/python bench/bench_leaderboard.py [--quick] [--peer-seeds 0]
        [--peers logistic,...] [--epochs pytorch-examples=14,fastai-resnet=20] [--fmnist MODELS@SEEDS ...]
        [--with-best [--best-seeds 0,1,2,3,4]] [--work DIR] [--out FILE] [--plot FILE.png] [--doc FILE.md]
    .venv/bin/python bench/bench_leaderboard.py --render bench/results/leaderboard-DATE.json --plot ... --doc ...

fmnist's rows come from `fmnist compare --refit --seeds ...` (a real subprocess; a compare already finished in
--work is reused, one stopped there continues), which gives each model's selection run (chosen on validation,
48,000 training images) and its refit (60,000; its time counts the selection it needs first). The peers train
once per --peer-seeds seed on that seed's training split. Every row: test accuracy (mean, and a Student t 95 %
interval where there are several seeds), training seconds, training multiply-adds per image seen (3x a forward
pass) and in total, inference images/s, parameters. Writes the JSON (bench/record.py), the plot (accuracy against
training seconds, log x, each row a point with its interval) and, with --doc, the table between the markers of
that page. Exits 1 naming each peer whose accuracy beats fmnist's best row trained in at most the peer's time.

--quick: 2,000 training images, 1 epoch everywhere, one seed: checks the machinery in seconds (its figures mean
nothing).
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import peers
import record

NAME = "leaderboard"
ROOT = Path(__file__).resolve().parents[1]
QUICK_SUBSET = 2_000
DEFAULT_FMNIST = "linear,mlp,cnn,scratch-mlp,hybrid@0,1,2,3,4"
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 images, 1 epoch, one seed: the machinery only")
    parser.add_argument("--peer-seeds", default="0", help="the peers' seeds (default 0)")
    parser.add_argument("--peers", default=",".join(peers.PEERS), help="which peers (default: all)")
    parser.add_argument("--epochs", default="", help="peer=N,...: a torch peer's epochs (default: its recipe's)")
    parser.add_argument(
        "--fmnist",
        action="append",
        metavar="MODELS@SEEDS",
        help="fmnist's models of the fast preset and their seeds, one compare each (repeatable; default "
        f"{DEFAULT_FMNIST}; published figures: 5 seeds)",
    )
    parser.add_argument("--with-best", action="store_true", help="also the best preset's CNN (15-20 min a seed)")
    parser.add_argument("--best-seeds", default="0,1,2,3,4", help="the best preset's seeds (default 0,1,2,3,4)")
    parser.add_argument("--work", default="runs/leaderboard", help="where fmnist's compares go (and are reused)")
    parser.add_argument("--out", help="the JSON (default bench/results/leaderboard-DATE.json)")
    parser.add_argument("--plot", help="the PNG of accuracy against training seconds")
    parser.add_argument("--doc", help="a Markdown page whose table between the leaderboard markers is rewritten")
    parser.add_argument("--render", metavar="JSON", help="no training: the plot and table of a results file")
    return parser.parse_args(argv)


def seeds_of(text):
    return [int(s) for s in text.split(",") if s.strip()]


def spread(values):
    from fmnist.jobs.compare import spread as t_spread

    return t_spread(values)


# -- fmnist ----------------------------------------------------------------------------------------------------


def compare_dir(args, preset, models, seeds):
    """fmnist's compare of `models` with `preset` into --work (reused when it finished, continued if stopped)."""
    folder = Path(args.work) / f"{'quick-' if args.quick else ''}{preset}-{'-'.join(models)}-seeds{seeds}"
    command = [sys.executable, "-m", "fmnist", "compare", "--no-progress", "--no-report"]
    if (folder / "compare.json").is_file():
        return folder
    if (folder / "plan.json").is_file():
        command += ["--resume", str(folder)]
    else:
        command += ["--models", ",".join(models), "--seeds", seeds, "--refit", "--preset", preset]
        command += ["--out", str(folder)] + (["--subset", str(QUICK_SUBSET), "--epochs", "1"] if args.quick else [])
    print("running:", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, env=os.environ | {"PYTHONPATH": str(ROOT / "src")})
    return folder


def model_macs(name, preset):
    """(forward multiply-adds per image, training ones per image seen, ones once per training image) of an fmnist
    model. The hybrid trains only its MLP (3x its forward per image seen) on CNN features extracted once."""
    import torch

    from fmnist.models import registry

    if name not in ("scratch-mlp", "hybrid"):
        forward = peers.forward_macs(registry.build(name, preset).module)
        return forward, peers.TRAIN_PER_FORWARD * forward, 0
    hparams = registry.spec(name).resolve(preset)
    cnn, first = None, 784
    if name == "hybrid":
        cnn = registry.build("cnn", hparams["cnn_preset"]).module.eval()
        first = cnn.features(torch.zeros(1, 1, 28, 28)).shape[1]
    widths = [first, *hparams["hidden"], 10]
    mlp = sum(a * b for a, b in itertools.pairwise(widths))
    once = 0 if cnn is None else peers.forward_macs(cnn)
    return once + mlp, peers.TRAIN_PER_FORWARD * mlp, once


def fmnist_rows(args, preset, models, seeds):
    """One row per model and phase (selection, refit) of the compare, over its seeds. A reused CNN's training
    time is added to the hybrid's (it cannot be had without it)."""
    folder, rows = compare_dir(args, preset, models, seeds), []
    summary = json.loads((folder / "compare.json").read_text())
    for name in summary["models"]:
        runs = {"selection": [], "refit": []}
        for seed in summary["seeds"]:
            base = folder / f"seed-{seed}"
            for phase, sub in (("selection", ""), ("refit", "refit")):
                metrics = json.loads((base / name / sub / "metrics.json").read_text())
                if name == "hybrid" and "cnn" in summary["models"]:
                    cnn = json.loads((base / "cnn" / sub / "metrics.json").read_text())
                    metrics["train_seconds"] += cnn["train_seconds"]
                runs[phase].append(metrics)
        for selection, refitted in zip(runs["selection"], runs["refit"], strict=True):
            refitted["train_seconds"] += selection["train_seconds"]  # the refit needs its selection first
        macs = model_macs(name, preset)
        for phase, metrics in runs.items():
            images = 48_000 if phase == "selection" else 60_000
            if args.quick:
                images = QUICK_SUBSET if phase == "selection" else QUICK_SUBSET + QUICK_SUBSET // 4
            label = f"fmnist {name} ({preset})" + (" + refit" if phase == "refit" else "")
            rows.append(
                aggregate(label, "fmnist", metrics, macs, images) | {"refit": phase == "refit", **held_out(metrics)}
            )
    return rows


def held_out(runs):
    """The mean over seeds of what the held-out values give on test: ECE at the temperature, the share of test
    clothing called unknown at the threshold (chosen for 5 % of validation clothing); for a refit, the values
    kept from its selection."""
    from fmnist.jobs.refit import checks

    each = [checks(r) for r in runs]
    mean = lambda key: None if any(c[key] is None for c in each) else sum(c[key] for c in each) / len(each)  # noqa: E731
    return {"test_ece": mean("test_ece"), "test_unknown_rate": mean("test_unknown_rate")}


# -- rows ------------------------------------------------------------------------------------------------------


def aggregate(label, kind, runs, macs, images):
    """A leaderboard row from one run per seed (each with test_accuracy, train_seconds, epochs, ...). macs: see
    `model_macs` (None entries where not counted); images: training images per epoch."""
    forward, per_image, once = macs
    epochs = [r["epochs"] for r in runs]
    total = None if per_image is None else sum(per_image * images * e + once * images for e in epochs) / len(epochs)
    return {
        "recipe": label,
        "kind": kind,
        "seeds": len(runs),
        "test_accuracy": spread([r["test_accuracy"] for r in runs]),
        "train_seconds": spread([r["train_seconds"] for r in runs]),
        "epochs": epochs,
        "macs_per_image": forward,
        "train_macs_per_image": per_image,
        "train_macs_total": total,
        "inference_images_per_s": min(r["inference_images_per_s"] for r in runs),
        "parameters": runs[0]["parameters"],
        **{k: runs[0][k] for k in ("source", "note") if k in runs[0]},
    }


def peer_rows(args, dataset):
    from fmnist.data import dataset as data

    epochs = dict(part.split("=") for part in args.epochs.split(",") if part.strip())
    rows = []
    for key in [p.strip() for p in args.peers.split(",") if p.strip()]:
        if key not in peers.PEERS:
            raise SystemExit(f"--peers {key}: choose from {', '.join(peers.PEERS)}")
        runs = []
        for seed in seeds_of(args.peer_seeds):
            splits = data.split(dataset, seed)
            splits = splits.quick(QUICK_SUBSET) if args.quick else splits
            extra = {"epochs": int(epochs[key])} if key in epochs else {}
            print(f"peer {key}, seed {seed}", file=sys.stderr)
            run = peers.PEERS[key](splits, seed, args.quick, **extra)
            run["test_accuracy"] = float((run.pop("predictions") == splits.y_test).mean())
            runs.append(run)
        forward = runs[0]["macs_per_image"]
        macs = (forward, None if forward is None else peers.TRAIN_PER_FORWARD * forward, 0)
        rows.append(aggregate(runs[0]["recipe"], "peer", runs, macs, len(splits.x_train)) | {"key": key})
    return rows


def verdict(rows):
    """Each peer that beats fmnist: its mean test accuracy above that of every fmnist row trained in at most the
    peer's mean training seconds (or no fmnist row is that quick)."""
    ours = [r for r in rows if r["kind"] == "fmnist"]
    beaten = []
    for peer in (r for r in rows if r["kind"] == "peer"):
        seconds = peer["train_seconds"]["mean"]
        rivals = [r["test_accuracy"]["mean"] for r in ours if r["train_seconds"]["mean"] <= seconds]
        best = max(rivals, default=None)
        if best is None or peer["test_accuracy"]["mean"] > best:
            beaten.append({"peer": peer["recipe"], "accuracy": peer["test_accuracy"]["mean"], "seconds": seconds})
            beaten[-1]["fmnist_best_at_or_below"] = best
    return beaten


# -- output ----------------------------------------------------------------------------------------------------


def plot(doc, path):
    """Accuracy against training seconds (log x): each row a point with its 95 % interval."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for r in doc["rows"]:
        acc, seconds = r["test_accuracy"], r["train_seconds"]["mean"]
        error = [[acc["mean"] - acc["interval"][0]], [acc["interval"][1] - acc["mean"]]] if acc["interval"] else None
        style = {"fmt": "o" if r["kind"] == "fmnist" else "s", "capsize": 3}
        style["color"] = "tab:blue" if r["kind"] == "fmnist" else "tab:orange"
        yerr = None if error is None else [[100 * e for e in side] for side in error]
        ax.errorbar([seconds], [100 * acc["mean"]], yerr=yerr, **style)
        ax.annotate(r["recipe"], (seconds, 100 * acc["mean"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ours = sorted(
        (r["train_seconds"]["mean"], 100 * r["test_accuracy"]["mean"]) for r in doc["rows"] if r["kind"] == "fmnist"
    )
    if ours:  # fmnist's best so far at each training time: what the bench holds every peer against
        frontier = [max(a for _, a in ours[: i + 1]) for i in range(len(ours))]
        ax.step([t for t, _ in ours], frontier, where="post", color="tab:blue", alpha=0.4, label="fmnist's best so far")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("training seconds (log scale)")
    ax.set_ylabel("test accuracy (%)")
    head = doc["header"]
    ax.set_title(
        f"Fashion-MNIST on {head['cpu']}, {head['cores']} cores, {head['date'][:10]} (blue: fmnist)", fontsize=9
    )
    ax.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _number(value, unit=""):
    if value is None:
        return "-"
    for size, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= size:
            return f"{value / size:.3g}{suffix}{unit}"
    return f"{value:.3g}{unit}"


def table(doc):
    """The Markdown table of the rows, best accuracy first, with where and when it was measured."""
    head = doc["header"]
    lines = [
        f"Measured {head['date']} on {head['cpu']} (family {head['cpu_family']} model {head['cpu_model']}), "
        f"{head['cores']} cores, torch {head['torch']}, commit {(head['commit'] or '?')[:7]}"
        + (" (quick mode: 2,000 images, 1 epoch; the figures mean nothing)" if doc["quick"] else "")
        + ".",
        "",
        "| recipe | seeds | test accuracy (mean [95 % CI]) | training s | train mult-adds/image | in total "
        "| inference images/s | parameters | epochs | test ECE | unknown on test |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(doc["rows"], key=lambda r: -r["test_accuracy"]["mean"]):
        acc = r["test_accuracy"]
        shown = f"{acc['mean']:.2%}" + (
            f" [{acc['interval'][0]:.2%}, {acc['interval'][1]:.2%}]" if acc["interval"] else ""
        )
        cells = [
            r["recipe"] + (" †" if r.get("note") else ""),
            str(r["seeds"]),
            shown,
            f"{r['train_seconds']['mean']:.0f}",
        ]
        cells += [_number(r["train_macs_per_image"]), _number(r["train_macs_total"])]
        cells += [f"{r['inference_images_per_s']:,.0f}", f"{r['parameters']:,}", "/".join(map(str, r["epochs"]))]
        ece = r.get("test_ece")
        cells += [
            "-" if ece is None else f"{ece:.4f}",
            "-" if r.get("test_unknown_rate") is None else f"{r['test_unknown_rate']:.1%}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = sorted({f"- † {r['recipe']}: {r['note']}" for r in doc["rows"] if r.get("note")})
    notes.append(
        "- fmnist's test ECE is at the temperature fitted on validation and its unknown share at the threshold set "
        "for 5 % of validation clothing; a + refit row uses its selection's values, kept, on the refit weights. "
        "A + refit row's training seconds include its selection run's."
    )
    lines += ["", *notes] if notes else []
    beaten = doc["beaten"]
    lines += [
        "",
        "Peers above fmnist's best row at or below their training time: "
        + (
            "; ".join(f"{b['peer']} ({b['accuracy']:.2%} in {b['seconds']:.0f} s)" for b in beaten)
            if beaten
            else "none."
        ),
    ]
    return "\n".join(lines)


def update_doc(path, text):
    page = Path(path).read_text(encoding="utf-8")
    if START not in page or END not in page:
        raise SystemExit(f"{path}: no {START} ... {END} markers to put the table between")
    before, rest = page.split(START, 1)
    after = rest.split(END, 1)[1]
    from fmnist.files import write_text

    write_text(Path(path), f"{before}{START}\n{text}\n{END}{after}")


def run(args):
    from fmnist.data import dataset as data

    head = record.header()
    rows = peer_rows(args, data.load())
    for group in args.fmnist or [DEFAULT_FMNIST]:
        models, _, seeds = group.partition("@")
        rows += fmnist_rows(args, "fast", [m.strip() for m in models.split(",") if m.strip()], seeds or "0")
    if args.with_best:
        rows += fmnist_rows(args, "best", ["cnn"], args.best_seeds)
    doc = {"quick": args.quick, "fmnist": args.fmnist or [DEFAULT_FMNIST], "peer_seeds": seeds_of(args.peer_seeds)}
    doc |= {"with_best": args.best_seeds if args.with_best else None, "rows": rows}
    doc["beaten"] = verdict(rows)
    path = record.save(NAME, doc, args.out, head=head)
    return json.loads(Path(path).read_text())


def main(argv=None):
    args = parse_args(argv)
    doc = json.loads(Path(args.render).read_text()) if args.render else run(args)
    text = table(doc)
    print(record.title("Fashion-MNIST CPU leaderboard", doc["header"]))
    print(text)
    if args.plot:
        print(f"wrote {plot(doc, args.plot)}", file=sys.stderr)
    if args.doc:
        update_doc(args.doc, text)
    for b in doc["beaten"]:
        best = "no fmnist row" if b["fmnist_best_at_or_below"] is None else f"{b['fmnist_best_at_or_below']:.2%}"
        print(
            f"LEADERBOARD FAIL: {b['peer']} reaches {b['accuracy']:.2%} in {b['seconds']:.0f} s; fmnist's best "
            f"at or below that time: {best}",
            file=sys.stderr,
        )
    return 1 if doc["beaten"] else 0


if __name__ == "__main__":
    sys.exit(main())
