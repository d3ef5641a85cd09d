"""ONNX parity of every model of a run on all 10,000 test images: onnxruntime against `fmnist predict`'s answers.

    /work/shared/bin/cpu-run .venv/bin/python bench/bench_export.py RUN_DIR [--out FILE]

RUN_DIR: a compare of the five models on the full data (`make run` writes runs/latest). Each model is exported
(`fmnist export`, next to its checkpoint), then run by onnxruntime on the 10,000 test images at batch 1,000 and
one image at a time, and compared with the probabilities `fmnist predict` computes (fmnist.predict.answers): the
argmax must be equal everywhere, the largest probability difference at most 1e-4, and the graph's test accuracy
equal to metrics.json's. Also times the export and both runtimes' batched inference. Prints the CPU, the date,
a JSON document and a table; writes the JSON to bench/results/export-DATE.json (or --out).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime

import record
from fmnist.data import dataset
from fmnist.predict import answers
from fmnist.rundir import checkpoint, export

NAME = "export"
TOLERANCE = 1e-4


def session(path):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def seconds(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def one_model(folder, images, labels):
    model, manifest = checkpoint.load(folder)
    path, export_s = seconds(lambda: export.export_one(folder))
    runner = session(path)
    batched, onnx_s = seconds(
        lambda: np.concatenate(
            [runner.run(None, {"images": images[i : i + 1000]})[1] for i in range(0, len(images), 1000)]
        )
    )
    single = np.concatenate([runner.run(None, {"images": images[i : i + 1]})[1] for i in range(len(images))])
    expected, torch_s = seconds(lambda: answers.probabilities(model, images))
    recorded = json.loads((folder / "metrics.json").read_text())["test_accuracy"]
    accuracy = float((batched.argmax(1) == labels).mean())
    return {
        "model": manifest["kind"],
        "exporter": export.read_metadata(path)["exporter"],
        "argmax_equal_batch_1000": bool(np.array_equal(batched.argmax(1), expected.argmax(1))),
        "argmax_equal_batch_1": bool(np.array_equal(single.argmax(1), expected.argmax(1))),
        "max_abs_diff_batch_1000": float(np.abs(batched - expected).max()),
        "max_abs_diff_batch_1": float(np.abs(single - expected).max()),
        "onnx_test_accuracy": accuracy,
        "metrics_json_test_accuracy": recorded,
        "export_s": round(export_s, 2),
        "onnx_images_per_s": round(len(images) / onnx_s),
        "torch_images_per_s": round(len(images) / torch_s),
    }


def passed(row):
    diff = max(row["max_abs_diff_batch_1000"], row["max_abs_diff_batch_1"])
    same = row["argmax_equal_batch_1000"] and row["argmax_equal_batch_1"]
    return same and diff <= TOLERANCE and row["onnx_test_accuracy"] == row["metrics_json_test_accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a compare (or train) run on the full data")
    parser.add_argument("--out", metavar="FILE", help="write the JSON here (default: bench/results/export-DATE.json)")
    args = parser.parse_args()
    data = dataset.load()
    images, labels = data.test_images, data.test_labels
    folders = checkpoint.model_dirs(args.run_dir)
    if not folders:
        sys.exit(f"bench_export: no models in {args.run_dir}")
    rows = [one_model(folder, images, labels) for folder in folders]
    for row in rows:
        row["passed"] = passed(row)
    head = record.header()
    document = {
        "benchmark": "ONNX export parity on the 10,000 test images",
        "onnxruntime": onnxruntime.__version__,
        "run_dir": str(args.run_dir),
        "images": len(images),
        "tolerance": TOLERANCE,
        "models": rows,
    }
    print(record.title("ONNX export parity", head))
    print(json.dumps(document, indent=2))
    print(
        f"\n{'model':<12}{'argmax =':>9}{'max |dp|':>10}{'onnx acc':>10}{'metrics':>9}{'export s':>9}"
        f"{'onnx img/s':>11}{'torch img/s':>12}"
    )
    for row in rows:
        diff = max(row["max_abs_diff_batch_1000"], row["max_abs_diff_batch_1"])
        same = "yes" if row["argmax_equal_batch_1000"] and row["argmax_equal_batch_1"] else "NO"
        print(
            f"{row['model']:<12}{same:>9}{diff:>10.1e}{row['onnx_test_accuracy']:>10.2%}"
            f"{row['metrics_json_test_accuracy']:>9.2%}{row['export_s']:>9.1f}{row['onnx_images_per_s']:>11,}"
            f"{row['torch_images_per_s']:>12,}"
        )
    record.save(NAME, document, args.out, head=head)
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
