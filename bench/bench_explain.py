"""Do the attribution maps mean something, and how fast are they? Every model of a compare run, every method.

    cpu-run .venv/bin/python bench/bench_explain.py RUN_DIR [--images 1000] [--methods a,b] [--out FILE.json]
    cpu-run .venv/bin/python bench/bench_explain.py RUN_DIR --speed     # fmnist explain's and the page's speed

For each model and method, on the first N test images of the run (test_images.npz; with --split val its
validation images, where the default method was chosen; the target is the predicted class; N = --images for the
default method, --others for the rest):
- deletion: the share of images whose target probability falls more when the 10 % most-attributed pixels are
  blacked out than when 10 % random pixels are (fmnist.predict.explain.evidence.deletion); the acceptance bar is
  80 % for the default method;
- randomisation: the median over images of Spearman's correlation between the absolute maps of the trained
  model and of the same network re-initialised (evidence.randomised); the bar is 0.3;
- seconds for the N maps, and for integrated gradients the median |convergence delta| relative to the
  logit change it should add up to.
Prints the CPU, the date, a JSON document and a table; writes the JSON to bench/results/explain-DATE.json
(explain-val-DATE.json with --split val, explain-speed-DATE.json with --speed), or to --out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import record
from fmnist.predict import explain
from fmnist.predict.explain import attribute, evidence
from fmnist.rundir import checkpoint

NAME = "explain"
BARS = {"deletion": 0.8, "randomisation": 0.3}


def measure(model, images, method, seed):
    start = time.perf_counter()
    result = attribute.explain(model, images, method)
    seconds = time.perf_counter() - start
    top, random = evidence.deletion(model, images, result.maps, result.targets, seed=seed)
    noise = attribute.explain(evidence.randomised(model, seed), images, method, target=result.targets)
    row = {
        "seconds": round(seconds, 3),
        "deletion_wins": round(float((top > random).mean()), 4),
        "drop_top_median": round(float(np.median(top)), 5),
        "drop_random_median": round(float(np.median(random)), 5),
        "randomisation_spearman_median": _median(evidence.rank_correlations(result.maps, noise.maps)),
    }
    if result.delta is not None:
        blank = np.zeros_like(images[:1])
        logits = model.predict_logits(np.concatenate([images, blank]))
        change = logits[np.arange(len(images)), result.targets] - logits[-1, result.targets]
        row["ig_relative_delta_median"] = round(float(np.median(np.abs(result.delta) / np.abs(change).clip(1e-6))), 5)
    row["passes"] = row["deletion_wins"] >= BARS["deletion"] and (
        row["randomisation_spearman_median"] <= BARS["randomisation"]
    )
    return row


def split_images(run, split):
    """The run's test images (test_images.npz), or its validation images (the split again, from its seed)."""
    if split == "test":
        return np.load(run / "test_images.npz")["images"]
    from fmnist.data import dataset

    seed = json.loads((run / "compare.json").read_text(encoding="utf-8"))["seed"]
    return dataset.split(dataset.load(), seed).x_val


def _median(values):
    return round(float(np.median(values)), 4)


def table(results):
    lines = [
        f"{'model':<12} {'method (images)':<21} {'deletion wins':>13} {'rand. Spearman':>14}"
        f" {'seconds':>8} {'IG delta':>9}  both",
    ]
    for name, rows in results.items():
        for method, r in rows.items():
            delta = f"{r['ig_relative_delta_median']:.4f}" if "ig_relative_delta_median" in r else ""
            shown = f"{method} ({r['images']})"
            lines.append(
                f"{name:<12} {shown:<21} {r['deletion_wins']:>13.1%} {r['randomisation_spearman_median']:>14.3f}"
                f" {r['seconds']:>8.2f} {delta:>9}  {'yes' if r['passes'] else 'no'}"
            )
    return "\n".join(lines)


def photos(images, folder):
    """Product-style JPEGs of test items (dark on white, 6x, margins), as people upload them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(images):
        photo = Image.new("L", (28 * 6 + 70, 28 * 6 + 60), 255)
        photo.paste(Image.fromarray(255 - item).resize((168, 168), Image.Resampling.BICUBIC), (30, 40))
        photo.convert("RGB").save(folder / f"item-{i:03d}.jpg", quality=90)
    return sorted(folder.iterdir())


def speed(run, images, requests=40):
    """`fmnist explain` on 100 photos with the cnn (a fresh process, start-up included), and the server's
    answer to one photo with and without explain=1 (in-process ASGI client; p50 of `requests`)."""
    import os
    import subprocess
    import tempfile

    from fastapi.testclient import TestClient

    from fmnist.serve import app, loading

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = photos(images[:100], Path(tmp) / "photos")
        start = time.perf_counter()
        command = [sys.executable, "-m", "fmnist", "explain", str(run / "cnn"), str(files[0].parent)]
        subprocess.run([*command, "--out", str(Path(tmp) / "maps")], check=True, env=os.environ, capture_output=True)
        out["cli_100_images_cnn_s"] = round(time.perf_counter() - start, 2)
        served, _ = loading.load_run(run / "cnn")
        body = files[0].read_bytes()
        with TestClient(app.create_app(served, "cnn")) as client:  # the server's own settings (1 torch thread)
            for explained in (False, True):
                times = []
                for _ in range(requests):
                    start = time.perf_counter()
                    answer = client.post(f"/predict?explain={int(explained)}", files=[("files", ("a.jpg", body))])
                    times.append(time.perf_counter() - start)
                    assert answer.status_code == 200 and ("heat_png" in answer.json()["predictions"][0]) == explained
                key = "serve_explained_p50_ms" if explained else "serve_plain_p50_ms"
                out[key] = round(1000 * float(np.median(times[2:])), 1)  # the first two warm up
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=1000, help="test images for the default method")
    parser.add_argument("--others", type=int, default=300, help="test images for the other methods (the comparison)")
    parser.add_argument("--methods", help="comma-separated (default: every method a model has)")
    parser.add_argument("--models", help="comma-separated model folders (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split", choices=("val", "test"), default="test", help="val: to choose the default method; test: to report"
    )
    parser.add_argument("--speed", action="store_true", help="only the speed of fmnist explain and the page")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/explain[-val|-speed]-DATE.json)")
    args = parser.parse_args(argv)
    run = Path(args.run_dir)
    images = split_images(run, args.split)[: args.images]
    if args.speed:
        doc = speed(run, images)
        head = record.header()
        print(record.title(f"fmnist explain and the page's explain=1, cnn of {run}", head))
        print(json.dumps(doc, indent=2))
        record.save(f"{NAME}-speed", doc, args.out, head=head)
        return
    wanted = set(args.models.split(",")) if args.models else None
    results = {}
    for folder in checkpoint.model_dirs(run):
        if wanted and folder.name not in wanted:
            continue
        model, _ = checkpoint.load(folder)
        chosen = args.methods.split(",") if args.methods else attribute.methods_for(model)
        results[folder.name] = {}
        for method in (m for m in chosen if m in attribute.methods_for(model)):
            if method != explain.DEFAULT_METHOD and not args.others:
                continue
            some = images if method == explain.DEFAULT_METHOD else images[: args.others]
            results[folder.name][method] = measure(model, some, method, args.seed) | {"images": len(some)}
            print(folder.name, method, results[folder.name][method], file=sys.stderr, flush=True)
    head = record.header()
    doc = {
        "torch_threads": torch.get_num_threads(),
        "run": str(run),
        "images": len(images),
        "split": args.split,
        "default_method": explain.DEFAULT_METHOD,
        "bars": BARS,
        "results": results,
    }
    print(json.dumps(doc, indent=2))
    print("\n" + record.title(f"{len(images)} {args.split} images of {run}", head) + "\n" + table(results))
    record.save(NAME if args.split == "test" else f"{NAME}-{args.split}", doc, args.out, head=head)


if __name__ == "__main__":
    main()
