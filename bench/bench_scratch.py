"""The from-scratch NumPy MLP against a PyTorch nn.Sequential of the same shape and scikit-learn's MLPClassifier.

    python bench/bench_scratch.py [--seeds 0,1,2] [--epochs N] [--quick] [--out FILE]

Each (variant, seed) trains in its own subprocess, so that its peak memory (VmHWM) is its own. Scratch and
torch share everything but the engine: the same standardised pixels, He initial weights, seeded batch order, Adam
(or SGD) with the same per-step learning rate, L2 on the weights, a validation pass every epoch and best-on-
validation weights; seconds per epoch include that validation pass for both. scikit-learn gets the same epochs,
batch size, peak learning rate and L2 strength (its alpha is scaled per batch), with its own constant schedule.
Hyper-parameters are the registry's "best" preset (chosen on validation) with early stopping off, so that every
variant trains the same epochs; the test set is only scored, once, at the end. The preset's augmentation
(NumPy, `fmnist.models.scratch.augment`) gives torch the very same batches as the scratch model, inside its timed epoch;
scikit-learn's `fit` has no place for it, so it trains on the plain images for the same number of epochs.
Seconds per epoch are the median over epochs and seeds. On a shared machine, run it under
`flock /tmp/fmnist-cpu.lock`: two-thread BLAS slows down many times when another process competes for the cores.
The JSON report goes to bench/results/scratch-DATE.json, or to --out FILE (--json FILE, its older name).
"""

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

import record
from fmnist.data import dataset
from fmnist.engine.schedule import learning_rate, warmup_steps
from fmnist.models import registry
from fmnist.models.scratch.augment import augment
from fmnist.models.scratch.mlp import MLP

NAME = "scratch"
VARIANTS = ("scratch", "torch", "sklearn")
ENGINES = {"scratch": "fmnist.models.scratch.classifier", "torch": "torch", "sklearn": "sklearn.neural_network"}
TARGET_ACCURACY = 0.895
TARGET_RATIO = 1.2


def status_mb(field):
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024


def reset_peak_rss():
    """Start VmHWM afresh (Linux >= 4.0), so the training peak is not hidden by the data loading's peak."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def prepare(args, seed):
    splits = dataset.split(dataset.load(args.data_dir), seed)
    if args.quick:
        splits = splits.subset(8000, 2000, 10000)
    x = {
        k: dataset.normalise_flat(getattr(splits, f"x_{k}"), splits.mean, splits.std) for k in ("train", "val", "test")
    }
    y = {k: getattr(splits, f"y_{k}") for k in ("train", "val", "test")}
    return splits, x, y


def blank_pixel(splits):
    return (0.0 - splits.mean) / splits.std


def run_scratch(splits, x, y, hp, seed):
    from fmnist.models.scratch.classifier import ScratchClassifier

    model = ScratchClassifier(**hp)
    # fit_features on the prepared pixels that torch and scikit-learn get too; fit(splits) would standardise anew.
    train, val = (x["train"], y["train"]), (x["val"], y["val"])
    model.mean, model.std = splits.mean, splits.std  # the scale of the prepared pixels, for augmentation
    history = model.fit_features(train, val, seed=seed, progress=False)
    test_acc = float(np.mean(model.logits_from_arrays(x["test"]).argmax(axis=1) == y["test"]))
    return history, test_acc


def run_torch(splits, x, y, hp, seed):
    import torch

    torch.set_num_threads(2)
    # The NumPy model flushes subnormal numbers by hand (they slow x86 arithmetic many times); torch gets the
    # same in hardware, so that neither engine is timed on subnormal arithmetic.
    torch.set_flush_denormal(True)
    # The scratch model's initial weights (same seed stream), so that only the engine differs.
    init = MLP([784, *hp["hidden"], dataset.NUM_CLASSES], rng=np.random.default_rng([seed, 0]))
    layers = []
    for i, (w, b) in enumerate(zip(init.weights, init.biases, strict=True)):
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear] if i == len(init.weights) - 1 else [linear, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers)
    groups = [
        {"params": [p for n, p in net.named_parameters() if n.endswith("weight")], "weight_decay": hp["weight_decay"]},
        {"params": [p for n, p in net.named_parameters() if n.endswith("bias")], "weight_decay": 0.0},
    ]
    if hp["optimizer"] == "adam":
        opt = torch.optim.Adam(groups, lr=hp["lr"])
    else:
        opt = torch.optim.SGD(groups, lr=hp["lr"], momentum=hp["momentum"], nesterov=hp["optimizer"] == "nesterov")
    xt = {k: torch.from_numpy(v) for k, v in x.items()}
    yt = {k: torch.from_numpy(v) for k, v in y.items()}
    loss_fn = torch.nn.CrossEntropyLoss()
    shuffle_rng = np.random.default_rng([seed, 1])
    augment_rng = np.random.default_rng([seed, 2])  # the scratch model's stream: the very same batches
    augmented = hp["flip"] or hp["shift"]
    augmentation = {
        "flip": hp["flip"],
        "shift": hp["shift"],
        "shift_prob": hp["shift_prob"],
        "fill": blank_pixel(splits),
    }
    n, batch = len(x["train"]), hp["batch_size"]
    steps = -(-n // batch)
    total = hp["epochs"] * steps
    warmup = warmup_steps(hp["warmup"], total)
    history, seconds, step, best = [], 0.0, 0, (-1.0, None)
    for epoch in range(1, hp["epochs"] + 1):
        start = time.perf_counter()
        order = shuffle_rng.permutation(n)
        loss_sum, correct = 0.0, 0
        for s in range(0, n, batch):
            idx = order[s : s + batch]
            if augmented:
                xb = torch.from_numpy(augment(x["train"][idx], rng=augment_rng, **augmentation))
            else:
                xb = xt["train"][torch.from_numpy(idx)]
            yb = yt["train"][torch.from_numpy(idx)]
            lr = learning_rate(step, total, hp["lr"], warmup, hp["schedule"])
            for group in opt.param_groups:
                group["lr"] = lr
            out = net(xb)
            loss = loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
            step += 1
        with torch.no_grad():
            val_out = net(xt["val"])
            val_loss = loss_fn(val_out, yt["val"]).item()
            val_acc = float((val_out.argmax(1) == yt["val"]).float().mean())
        seconds += time.perf_counter() - start
        history.append({"epoch": epoch, "loss": loss_sum / n, "val_loss": val_loss, "val_accuracy": val_acc})
        history[-1]["seconds"] = seconds
        if val_acc > best[0]:
            best = (val_acc, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])
    with torch.no_grad():
        test_acc = float((net(xt["test"]).argmax(1) == yt["test"]).float().mean())
    return history, test_acc


def run_sklearn(splits, x, y, hp, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(
        hidden_layer_sizes=tuple(hp["hidden"]),
        solver="adam" if hp["optimizer"] == "adam" else "sgd",
        nesterovs_momentum=hp["optimizer"] == "nesterov",
        momentum=hp["momentum"],
        learning_rate_init=hp["lr"],
        alpha=hp["weight_decay"] * hp["batch_size"],  # sklearn divides the L2 gradient by the batch size
        batch_size=hp["batch_size"],
        max_iter=hp["epochs"],
        tol=0.0,
        n_iter_no_change=hp["epochs"] + 1,  # run every epoch, like the others
        shuffle=True,
        random_state=seed,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x["train"], y["train"])
    seconds = time.perf_counter() - start
    epochs = clf.n_iter_
    history = [{"epoch": e, "seconds": seconds * e / epochs} for e in range(1, epochs + 1)]  # only a total is known
    history[-1]["val_accuracy"] = float(clf.score(x["val"], y["val"]))
    return history, float(clf.score(x["test"], y["test"]))


def worker(args):
    """Train one variant for one seed; print one JSON line."""
    hp = json.loads(args.hparams)
    splits, x, y = prepare(args, args.seed)
    run = {"scratch": run_scratch, "torch": run_torch, "sklearn": run_sklearn}[args.worker]
    # Import the engine first: its code and libraries are not memory that training uses.
    importlib.import_module(ENGINES[args.worker])
    rss_before = status_mb("VmRSS")
    reset_peak_rss()
    history, test_acc = run(splits, x, y, hp, args.seed)
    times = np.diff([0.0] + [row["seconds"] for row in history])
    result = {
        "variant": args.worker,
        "seed": args.seed,
        "epochs_run": len(history),
        "seconds_per_epoch_median": float(np.median(times)),
        "train_seconds": history[-1]["seconds"],
        "best_val_accuracy": max(row.get("val_accuracy", -1) for row in history),
        "test_accuracy": test_acc,
        "rss_before_training_mb": rss_before,
        "peak_rss_training_mb": status_mb("VmHWM"),
    }
    print(json.dumps(result))


def versions():
    """The versions of the engines compared that the header does not carry (it has torch's)."""
    import sklearn

    return {"numpy": np.__version__, "sklearn": sklearn.__version__}


def summarise(runs):
    out = {}
    for variant in VARIANTS:
        rows = [r for r in runs if r["variant"] == variant]
        if rows:
            out[variant] = {
                "test_accuracy_median": statistics.median(r["test_accuracy"] for r in rows),
                "test_accuracies": [r["test_accuracy"] for r in rows],
                "seconds_per_epoch_median": statistics.median(r["seconds_per_epoch_median"] for r in rows),
                "peak_rss_training_mb_max": max(r["peak_rss_training_mb"] for r in rows),
                "training_rss_growth_mb_max": max(
                    r["peak_rss_training_mb"] - r["rss_before_training_mb"] for r in rows
                ),
            }
    if "scratch" in out and "torch" in out:
        out["scratch_over_torch_seconds"] = (
            out["scratch"]["seconds_per_epoch_median"] / out["torch"]["seconds_per_epoch_median"]
        )
    return out


def table(report, head):
    s = report["summary"]
    lines = [
        record.title("bench_scratch", head),
        f"hparams {json.dumps(report['hparams'])}  seeds {report['seeds']}" + ("  QUICK" if report["quick"] else ""),
        f"{'variant':<9}{'test acc (median)':>18}{'per seed':>28}{'s/epoch':>9}{'peak RSS MB':>13}{'+training MB':>13}",
    ]
    for v in VARIANTS:
        if v in s:
            r = s[v]
            seeds = " ".join(f"{a:.4f}" for a in r["test_accuracies"])
            lines.append(
                f"{v:<9}{r['test_accuracy_median']:>18.4f}{seeds:>28}{r['seconds_per_epoch_median']:>9.3f}"
                f"{r['peak_rss_training_mb_max']:>13.0f}{r['training_rss_growth_mb_max']:>13.0f}"
            )
    if "scratch" in s:
        acc = s["scratch"]["test_accuracy_median"]
        verdict = "PASS" if acc >= TARGET_ACCURACY else "MISS"
        lines.append(f"target: scratch test accuracy >= {TARGET_ACCURACY:.3f}: {acc:.4f} {verdict}")
    if "scratch_over_torch_seconds" in s:
        ratio = s["scratch_over_torch_seconds"]
        verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
        lines.append(f"target: s/epoch scratch / torch <= {TARGET_RATIO}: {ratio:.2f} {verdict}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (split, init, shuffle)")
    parser.add_argument("--epochs", type=int, help="override the registry's epochs")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which of scratch,torch,sklearn to run")
    parser.add_argument("--quick", action="store_true", help="8,000 training images, 3 epochs, seed 0: a smoke run")
    parser.add_argument(
        "--out",
        "--json",
        dest="out",
        metavar="FILE",
        help="write the JSON here (default: bench/results/scratch-DATE.json)",
    )
    parser.add_argument("--data-dir", help="folder with the Fashion-MNIST files")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hparams", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    spec = registry.spec("scratch-mlp")
    hp = spec.load_class()(**spec.resolve("best")).hparams  # every hyper-parameter, defaults filled in
    # The early-stopping patience is off so that every variant trains the same number of epochs.
    hp["patience"] = hp["epochs"] = args.epochs or (3 if args.quick else hp["epochs"])
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    runs = []
    for seed in seeds:
        for variant in variants:  # interleaved, so that a slow spell on the machine hits every variant alike
            cmd = [sys.executable, __file__, "--worker", variant, "--seed", str(seed), "--hparams", json.dumps(hp)]
            cmd += ["--quick"] if args.quick else []
            cmd += ["--data-dir", args.data_dir] if args.data_dir else []
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.exit(f"{variant} seed {seed} failed:\n{done.stderr}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  {variant} seed {seed}: {json.dumps(runs[-1])}", file=sys.stderr)
    head = record.header()
    report = {"versions": versions(), "hparams": hp, "seeds": seeds, "quick": args.quick, "runs": runs}
    report["summary"] = summarise(runs)
    print(json.dumps(report, indent=2))
    print(table(report, head))
    record.save(NAME, report, args.out, head=head)


if __name__ == "__main__":
    main()
