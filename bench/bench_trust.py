"""Calibration, "unknown" and the end-to-end probabilities of `fmnist serve`, measured on a saved run.

    cpu-run .venv/bin/python bench/bench_trust.py RUN_DIR [--http 2000] [--outliers 1000] [--out FILE]

For every model of the run (calibrated with its recorded split; an older run is calibrated here in memory,
nothing is written): the temperature and the test ECE / NLL / Brier before and after (from the same code that
fills metrics.json). For each out-of-distribution score in fmnist.models.trust.METHODS: the AUROC of telling
non-clothing from clothing, and the share called unknown at the threshold set on validation (5 % of
validation clothing) for test clothing, product-style photos of test items and non-clothing images.

Choosing and reporting never share images: the method is chosen on the "dev" part (validation clothing,
product photos of validation items, the dev non-clothing images of fmnist.predict.outliers); the figures reported
are the "report" part (test clothing, product photos of test items, the report non-clothing images).

--robustness N: the corruption sweep (fmnist.jobs.robustness) over the first N test images, written to the
run's robustness.json too.

--http N: the default model's top-1 probabilities for N test images sent to a real `fmnist serve` as 28x28
PNGs (16 per request), and their ECE. Prints the CPU, the date, a JSON document and tables; writes the JSON to
bench/results/trust-DATE.json (or --out).
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

import record
from fmnist.data import dataset
from fmnist.files import read_json
from fmnist.jobs import robustness
from fmnist.metrics import calibration, ood
from fmnist.models import trust
from fmnist.predict import outliers
from fmnist.rundir import checkpoint, layout

NAME = "trust"
CHOICE = "on dev: meets product photos <= 10 % and non-clothing >= 85 % unknown, then the highest AUROC"


def splits_of(model_dir, data):
    config = read_json(model_dir / layout.CONFIG)
    splits = dataset.split(data, config["seed"])
    return splits.quick(config["subset"]) if config.get("subset") else splits


def measure_methods(model, splits, sets):
    """{method: {auroc_dev, auroc_report, unknown rates...}} for the OOD scores of trust.METHODS."""
    val_logits = model.predict_logits(splits.x_val)
    logits = {name: model.predict_logits(images) for name, images in sets.items()}
    out = {}
    for method in (m for m in trust.METHODS if trust.parts(model, m)):
        record = trust.calibrate(model, splits, method=method, val_logits=val_logits)
        score = {name: trust.scores(model, sets[name], logits[name], method, record) for name in sets}
        val = trust.scores(model, splits.x_val, val_logits, method, record)
        row = {
            "auroc_dev": ood.auroc(val, score["outliers_dev"]),
            "auroc_report": ood.auroc(score["test"], score["outliers_report"]),
        }
        row |= {f"unknown_{name}": ood.unknown_rate(score[name], record["threshold"]) for name in sets}
        out[method] = row
    return out


def choose(methods):
    ok = [m for m, r in methods.items() if r["unknown_photos_dev"] <= 0.10 and r["unknown_outliers_dev"] >= 0.85]
    return max(ok or methods, key=lambda m: methods[m]["auroc_dev"])


def calibration_rows(model, splits):
    logits = model.predict_logits(splits.x_test)
    temperature = trust.of(model)["temperature"]
    return {"temperature": temperature, **calibration.before_after(logits, splits.y_test, temperature)}


def http_ece(run_dir, splits, count):
    """Top-1 probabilities POST /predict returns for `count` test images sent as PNGs, and their ECE."""
    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from serve_helpers import running_server

    top, labels = [], splits.y_test[:count]
    with running_server(run_dir, Path("/tmp") / f"bench-trust-{time.time_ns()}.log") as url:
        for start in range(0, count, 16):
            files = []
            for i in range(start, min(start + 16, count)):
                buffer = io.BytesIO()
                Image.fromarray(splits.x_test[i]).save(buffer, format="PNG")
                files.append(("files", (f"{i}.png", buffer.getvalue(), "image/png")))
            answer = httpx.post(url + "/predict", files=files, data={"top_k": "10"}, timeout=60).json()
            for entry in answer["predictions"]:
                probs = np.zeros(10)
                for item in entry["top_k"]:
                    probs[item["class_index"]] = item["probability"]
                top.append(probs)
    probs = np.array(top)
    return {
        "images": count,
        "ece": calibration.ece(probs, labels),
        "accuracy": float(np.mean(probs.argmax(1) == labels)),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--outliers", type=int, default=1000, help="non-clothing images per part")
    parser.add_argument("--photos", type=int, default=1000, help="product photos per part")
    parser.add_argument("--http", type=int, default=0, help="test images sent to the server (0: skip)")
    parser.add_argument("--default", default="cnn", help="the model --http is measured on")
    parser.add_argument("--robustness", type=int, default=0, help="test images for the corruption sweep (0: skip)")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/trust-DATE.json)")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    data = dataset.load()
    started = time.perf_counter()
    head = record.header()
    doc = {"run": str(run_dir)}
    doc |= {"outliers_per_part": args.outliers, "photos_per_part": args.photos, "choice_rule": CHOICE}
    doc["models"] = {}
    for model_dir in checkpoint.model_dirs(run_dir):
        model, manifest = checkpoint.load(model_dir)
        splits, name = splits_of(model_dir, data), manifest["kind"]
        sets = {
            "test": splits.x_test,
            "photos_dev": outliers.product_photos(splits.x_val[: args.photos], seed=0),
            "photos_report": outliers.product_photos(splits.x_test[: args.photos], seed=1),
            "outliers_dev": outliers.non_clothing(args.outliers, "dev")[0],
            "outliers_report": outliers.non_clothing(args.outliers, "report")[0],
        }
        entry = {"methods": measure_methods(model, splits, sets)}
        entry["chosen"] = choose(entry["methods"])
        trust.calibrate(model, splits)
        entry["calibration_test"] = calibration_rows(model, splits)
        doc["models"][name] = entry
    if args.http:
        model_dir = next(
            d
            for d in checkpoint.model_dirs(run_dir)
            if d.name == args.default or len(checkpoint.model_dirs(run_dir)) == 1
        )
        doc["http"] = http_ece(run_dir, splits_of(model_dir, data), args.http)
    if args.robustness:
        doc["robustness"] = robustness.run_saved(run_dir, data, args.robustness, progress=False)
    doc["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(doc, indent=2)
    print(text)
    print_tables(doc, head)
    record.save(NAME, doc, args.out, head=head)


def print_tables(doc, head):
    print("\n" + record.title(f"calibration and unknown, {doc['run']}", head))
    print(
        f"{'model':<12} {'T':>6} {'ECE before':>10} {'ECE after':>9} {'NLL before':>10} {'NLL after':>9} "
        f"{'Brier after':>11}"
    )
    for name, entry in doc["models"].items():
        c = entry["calibration_test"]
        print(
            f"{name:<12} {c['temperature']:>6.3f} {c['before']['ece']:>10.4f} {c['after']['ece']:>9.4f} "
            f"{c['before']['nll']:>10.4f} {c['after']['nll']:>9.4f} {c['after']['brier']:>11.4f}"
        )
    for name, entry in doc["models"].items():
        if "methods" not in entry:
            continue
        print(f"\n{name}: OOD scores (threshold: 5 % of validation clothing); chosen: {entry['chosen']}")
        print(
            f"{'method':<16} {'AUROC dev':>9} {'dev photos':>10} {'dev non-cl.':>11} | {'AUROC rep':>9} "
            f"{'test':>6} {'photos':>7} {'non-cl.':>7}"
        )
        for method, r in entry["methods"].items():
            print(
                f"{method:<16} {r['auroc_dev']:>9.4f} {r['unknown_photos_dev']:>10.1%} "
                f"{r['unknown_outliers_dev']:>11.1%} | {r['auroc_report']:>9.4f} {r['unknown_test']:>6.1%} "
                f"{r['unknown_photos_report']:>7.1%} {r['unknown_outliers_report']:>7.1%}"
            )
    if "robustness" in doc:
        print("\n" + robustness.table(doc["robustness"]))
    if "http" in doc:
        h = doc["http"]
        print(f"\nPOST /predict, {h['images']} test PNGs: ECE {h['ece']:.4f}, accuracy {h['accuracy']:.2%}")


if __name__ == "__main__":
    sys.exit(main())
