"""Photos as people take them: accuracy and "unknown" per background kind, and the conversion's cost.

    cpu-run .venv/bin/python bench/bench_photos.py RUN_DIR [--count 250] [--seed 0] [--conversion after]
        [--family issue|other|both] [--trust 500] [--timing 20] [--out FILE]

Two families of composites of TEST garments, each from --seed: "issue" (fmnist.predict.composites: plain light
/ dark sheets, gradients, stripes and weaves, clutter; a shadow, a tilt, off centre, JPEG), and "other", made
differently here (wood grain, checkerboards, smooth noise, crops of scikit-learn's two sample photographs;
garments lit from one side, larger photos, PNG as well as JPEG) to check that what works on the first family is
not fitted to it. --conversion before: today's dataset-style steps only (`fmnist.predict.images.to_fashion_mnist`);
after: `fmnist.predict.segment.convert` (the plain-background rule, segmentation, normalising).

For every model of RUN_DIR: correct % and unknown % per kind and over all, each photo judged as `fmnist predict`
judges it (a segmented one against the model's photo threshold, `fmnist.predict.photo_trust`, where it has one).
--trust N: the share called unknown of N non-clothing images (the "report" part of fmnist.predict.outliers)
and of N product photos of test items, through the same conversion and judgement. --timing N: the conversion's
p50 / p90 ms (decoding included) over N JPEG photos at 1 MP and at 12 MP.

--segmenters N (default 100 with --conversion after): the choice of segmenter and of the garment's levels, made
on N composites of TRAINING items (known masks): mask IoU and ms per photo of GrabCut (shipped) and of a
scikit-image alternative (SLIC superpixels, those like the border's colours are background); and the cnn's
correct / unknown % for three level rules on GrabCut's masks. Writes bench/results/photos-DATE.json.
"""

import argparse
import io
import sys
import time

import numpy as np
from PIL import Image, ImageFilter

import record
from fmnist.data import dataset
from fmnist.models import trust
from fmnist.predict import composites, outliers, photo_trust, segment
from fmnist.predict.answers import assess
from fmnist.predict.images import load_image, to_fashion_mnist
from fmnist.rundir import checkpoint

NAME = "photos"
OTHER_KINDS = ("wood", "checkerboard", "noise", "photo-crop")


def wood(rng, size):
    """Wood grain: rings around a far-off centre, distorted by smooth noise, in two browns."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = rng.uniform(-2, 3) * width, rng.uniform(-2, 3) * height
    noise = _smooth_noise(rng, size, 40) * rng.uniform(5, 20)
    rings = np.sin((np.hypot(xx - cx, yy - cy) + noise) / rng.uniform(3, 9)) * 0.5 + 0.5
    light, dark = np.array([190, 140, 90]) * rng.uniform(0.7, 1.2), np.array([120, 75, 40]) * rng.uniform(0.6, 1.1)
    array = np.clip(dark * rings[..., None] + light * (1 - rings[..., None]), 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def checkerboard(rng, size):
    width, height = size
    cell = int(rng.uniform(0.02, 0.12) * max(size)) + 2
    yy, xx = np.mgrid[0:height, 0:width]
    t = ((xx // cell + yy // cell) % 2)[..., None]
    array = composites.colour(rng) * t + composites.colour(rng) * (1 - t)
    return Image.fromarray(array.astype(np.uint8))


def _smooth_noise(rng, size, blur):
    small = Image.fromarray(rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1)).astype(np.uint8))
    big = small.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(blur / 8))
    array = np.asarray(big, dtype=np.float64)
    return (array - array.mean()) / max(array.std(), 1e-9)


def noise(rng, size):
    """Smooth colour noise (a mottled carpet or bedspread) plus fine grain."""
    channels = [_smooth_noise(rng, size, rng.uniform(10, 60)) for _ in range(3)]
    array = composites.colour(rng, 60, 200) + np.stack(channels, axis=-1) * rng.uniform(15, 50)
    array += rng.normal(0, rng.uniform(2, 12), array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def photo_crop(rng, size, photos):
    photo = Image.fromarray(photos[rng.integers(len(photos))])
    scale = max(size[0] / photo.width, size[1] / photo.height) * rng.uniform(1, 2)
    big = photo.resize((int(photo.width * scale) + 1, int(photo.height * scale) + 1), Image.Resampling.BILINEAR)
    left, top = int(rng.integers(0, big.width - size[0] + 1)), int(rng.integers(0, big.height - size[1] + 1))
    return big.crop((left, top, left + size[0], top + size[1]))


def other_photo(item, kind, rng, photos):
    """The second family: other backgrounds, a light falling from one side, bigger photos, PNG or JPEG."""
    long_side = int(rng.integers(900, 1400))
    size = (long_side, int(long_side * rng.uniform(0.6, 0.9)))
    maker = {"wood": wood, "checkerboard": checkerboard, "noise": noise}.get(kind)
    background = maker(rng, size) if maker else photo_crop(rng, size, photos)
    photo, _ = composites.place(background, item, rng, fill=(0.35, 0.9))
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]] / long_side
    light = 0.75 + 0.35 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + 1) / 2
    photo = Image.fromarray(np.clip(np.asarray(photo) * light[..., None], 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG" if rng.random() < 0.3 else "JPEG", quality=int(rng.integers(60, 95)))
    return buffer.getvalue()


def photos(images, labels, count, seed, family):
    """[(file bytes, label, kind)]: `count` photos of the first `count` items, kinds in turn."""
    rng = np.random.default_rng([seed, 32, 0 if family == "issue" else 1])
    kinds = composites.KINDS if family == "issue" else OTHER_KINDS
    sample = None
    if family == "other":
        from sklearn.datasets import load_sample_images

        sample = load_sample_images().images
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if family == "issue":
            data, _ = composites.composite(images[i], kind, rng)
        else:
            data = other_photo(images[i], kind, rng, sample)
        out.append((data, int(labels[i]), kind))
    return out


def convert(data, conversion):
    """(what the model sees, uint8 (28, 28); whether the photo was segmented)."""
    img = load_image("photo", content=data)
    if conversion == "before":
        return to_fashion_mnist(img), False
    seen = segment.convert(img)
    return seen.image, seen.cutout is not None


def score(model, items, seen, segmented):
    """{kind: {correct, unknown, n}} and "all" for one model over converted photos, each judged as
    `fmnist predict` judges it (segmented photos against the model's photo threshold, where it has one)."""
    answer = photo_trust.judged(model, assess(model, seen), segmented)
    labels, kinds = np.array([i[1] for i in items]), np.array([i[2] for i in items])
    correct = answer.probs.argmax(1) == labels
    rows = {}
    for kind in [*dict.fromkeys(kinds), "all"]:
        pick = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
        rows[kind] = {
            "n": int(pick.sum()),
            "correct": float(correct[pick].mean()),
            "unknown": float(answer.unknown[pick].mean()),
            "correct_known": float((correct & ~answer.unknown)[pick].mean()),
        }
    return rows


def unknown_rates(models, test, count):
    """Per model: the share called unknown of the report part's non-clothing images and of product photos of
    test items, through the conversion and judged as `fmnist predict` judges them (photo threshold included)."""
    nonclothing, nc_segmented, _ = outliers.non_clothing_photos(count, "report")
    rng = np.random.default_rng(1)
    product = [segment.convert(outliers.product_photo(item, rng).convert("RGB")) for item in test.x_test[:count]]
    shots, shot_segmented = np.stack([s.image for s in product]), [s.cutout is not None for s in product]
    rows = {}
    for model, manifest in models:
        nc, shot = assess(model, nonclothing), assess(model, shots)
        rows[manifest["kind"]] = {
            "non_clothing_unknown": float(photo_trust.judged(model, nc, nc_segmented).unknown.mean()),
            "non_clothing_segmented": float(np.mean(nc_segmented)),
            "product_unknown": float(photo_trust.judged(model, shot, shot_segmented).unknown.mean()),
            "product_correct": float((shot.probs.argmax(1) == test.y_test[:count]).mean()),
            "photo_threshold": (trust.of(model) or {}).get(photo_trust.KEY),
            "threshold": (trust.of(model) or {}).get("threshold"),
        }
    return rows


def timing(conversion, count, megapixels, seed):
    rng = np.random.default_rng([seed, 33])
    side = int(np.sqrt(megapixels * 1e6 / 0.75))
    times, cpu_times = [], []
    for i in range(count):
        background = composites.BACKGROUNDS[composites.KINDS[i % 5]](rng, (side, int(side * 0.75)))
        item = np.zeros((28, 28), np.uint8)
        item[4:24, 6:22] = 200
        photo, _ = composites.place(background, item, rng)
        data = composites.jpeg(photo, rng)
        started, cpu = time.perf_counter(), time.process_time()
        convert(data, conversion)
        times.append((time.perf_counter() - started) * 1000)
        cpu_times.append((time.process_time() - cpu) * 1000)
    return {
        "p50_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "cpu_p50_ms": float(np.median(cpu_times)),  # this process's CPU time: what a busy machine cannot inflate
        "n": count,
    }


def slic_border(rgb):
    """The scikit-image alternative: SLIC superpixels; a superpixel whose mean Lab colour is within 12 of a
    border superpixel's is background; the largest parts are kept, as for GrabCut."""
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    lab = rgb2lab(rgb)
    labels = slic(lab, n_segments=150, compactness=10, convert2lab=False, start_label=0)
    count = labels.max() + 1
    sums = np.stack([np.bincount(labels.ravel(), lab[..., c].ravel(), count) for c in range(3)], 1)
    means = sums / np.maximum(np.bincount(labels.ravel(), minlength=count), 1)[:, None]
    band = max(2, round(segment.BORDER * max(rgb.shape[:2])))
    edge = np.unique(np.concatenate([labels[:band].ravel(), labels[-band:].ravel(), labels[:, :band].ravel()]))
    edge = np.union1d(edge, labels[:, -band:].ravel())
    distance = np.sqrt(((means[:, None] - means[edge][None]) ** 2).sum(-1)).min(1)
    return segment.largest_parts((distance > 12)[labels].astype(np.uint8))


def stretched(gray, mask):
    """A level rule screened against the shipped one: the garment's 2nd-98th percentiles stretched to 0-254."""
    low, high = np.percentile(gray[mask], (2, 98)) if mask.any() else (0, 255)
    out = np.where(mask, np.clip((gray - low) / max(high - low, 1) * 254, 0, 254), 255)
    return Image.fromarray(np.rint(out).astype(np.uint8))


def as_is(gray, mask):
    """No normalising: the garment's own gray levels on white."""
    return Image.fromarray(np.where(mask, np.minimum(gray, 254), 255).astype(np.uint8))


def segmenters(model, splits, count, seed):
    """{method: {iou, ms_p50}} and {level rule: {correct, unknown}} on training-item composites (the rules
    applied to GrabCut's masks less their rim, as `fmnist.predict.segment.convert` does)."""
    rng = np.random.default_rng([seed, 34])
    rows = {"grabcut": {"iou": [], "ms": []}, "slic-border": {"iou": [], "ms": []}}
    levels = {"matched (shipped)": segment.on_white, "stretched": stretched, "as is": as_is}
    seen = {name: [] for name in levels}
    for i in range(count):
        data, truth = composites.composite(splits.x_train[i], composites.KINDS[i % 5], rng)
        small, _ = segment._working_copy(load_image("photo", content=data), None)
        truth = np.asarray(Image.fromarray(truth).resize(small.shape[1::-1], Image.Resampling.NEAREST))
        for name, method in (("grabcut", segment.garment_mask), ("slic-border", slic_border)):
            started = time.perf_counter()
            mask = method(small)
            rows[name]["ms"].append((time.perf_counter() - started) * 1000)
            rows[name]["iou"].append((mask & truth).sum() / max((mask | truth).sum(), 1))
            if name == "grabcut":
                gray, inner = np.asarray(Image.fromarray(small).convert("L")), segment.edge_free(mask)
                for rule, make in levels.items():
                    seen[rule].append(to_fashion_mnist(make(gray, inner)))
    out = {name: {"iou": float(np.mean(r["iou"])), "ms_p50": float(np.median(r["ms"]))} for name, r in rows.items()}
    labels = splits.y_train[:count]
    for rule, images in seen.items():
        answer = assess(model, np.stack(images))
        correct = float((answer.probs.argmax(1) == labels).mean())
        out[f"levels: {rule}"] = {"correct": correct, "unknown": float(answer.unknown.mean())}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--count", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conversion", choices=("before", "after"), default="after")
    parser.add_argument("--family", choices=("issue", "other", "both"), default="both")
    parser.add_argument("--timing", type=int, default=0, help="photos timed per size (0: skip)")
    parser.add_argument("--segmenters", type=int, help="training composites for the segmenter choice (see above)")
    parser.add_argument("--trust", type=int, default=0, help="non-clothing and product photos (0: skip)")
    parser.add_argument("--out")
    args = parser.parse_args()
    head = record.header()
    test = dataset.split(dataset.load(), 0)
    doc = {"run": args.run_dir, "count": args.count, "seed": args.seed, "conversion": args.conversion}
    families = ("issue", "other") if args.family == "both" else (args.family,)
    families = families if args.count else ()  # --count 0: the segmenter choice (or the timing) alone
    models = [checkpoint.load(d) for d in checkpoint.model_dirs(args.run_dir)]
    for family in families:
        items = photos(test.x_test, test.y_test, args.count, args.seed, family)
        seen, segmented = zip(*(convert(data, args.conversion) for data, _, _ in items), strict=True)
        seen = np.stack(seen)
        doc[family] = {manifest["kind"]: score(model, items, seen, segmented) for model, manifest in models}
        doc[f"{family}_segmented"] = float(np.mean(segmented))
    if args.trust:
        doc["trust"] = unknown_rates(models, test, args.trust)
    count = args.segmenters if args.segmenters is not None else (100 if args.conversion == "after" else 0)
    if count:
        default = next((m for m, manifest in models if manifest["kind"] == "cnn"), models[0][0])
        doc["segmenters"] = segmenters(default, test, count, args.seed)
    if args.timing:
        doc["timing"] = {f"{mp}MP": timing(args.conversion, args.timing, mp, args.seed) for mp in (1, 12)}
    print(record.title(f"photos, {args.conversion}, {args.run_dir}", head))
    for family in families:
        for name, rows in doc[family].items():
            print(
                f"\n{family} / {name}: "
                + "  ".join(f"{k} {r['correct']:.1%}/{r['unknown']:.1%}" for k, r in rows.items())
            )
    for name, row in doc.get("segmenters", {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    for name, row in doc.get("trust", {}).items():
        print(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if v is not None))
    for size, t in doc.get("timing", {}).items():
        print(
            f"conversion {size}: p50 {t['p50_ms']:.1f} ms, p90 {t['p90_ms']:.1f} ms, CPU p50 {t['cpu_p50_ms']:.1f} ms"
        )
    record.save(NAME, doc, args.out, head=head)


if __name__ == "__main__":
    sys.exit(main())
