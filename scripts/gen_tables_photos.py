"""docs/photos.md's generated parts: the segmentation's settings (from the code), the choices, the results before
and after, the unknown-input check, the conversion's cost and where the issue's targets stand (from
bench/results/photos-*.json, photos-before-*, photos-segmented-*, photos-choice-* and photos-photometric-*)."""

from gen_common import from_newest, missing, newest, pct, src_module, table, where, yes_no

ISSUE_KINDS = {
    "plain-light": "plain light sheet",
    "plain-dark": "plain dark sheet",
    "gradient": "colour gradient",
    "texture": "texture (stripes, weave)",
    "clutter": "clutter",
    "all": "**all**",
}
OTHER_KINDS = {
    "wood": "wood grain",
    "checkerboard": "checkerboard",
    "noise": "smooth colour noise",
    "photo-crop": "crops of photographs",
    "all": "**all**",
}
# The issue's acceptance (issue 32): on each of its kinds at least this share right and at most this unknown;
# the conversion's p50 at 1 and 12 megapixels at most these milliseconds.
RIGHT_TARGET, UNKNOWN_TARGET = 0.80, 0.15
TIMING_TARGET_MS = {"1MP": 50, "12MP": 150}
HOW = "python bench/bench_photos.py RUN_DIR"


def _cell(result):
    return f"{pct(result['correct'], 1)} / {pct(result['unknown'], 1)}"


def settings_table():
    """The constants of fmnist.predict.segment (and the trim tolerance they build on), as this checkout has them."""
    seg = src_module("fmnist.predict.segment")
    tolerance = src_module("fmnist.predict.images").TRIM_TOLERANCE
    rows = [
        ("`PLAIN_SHARE`", pct(seg.PLAIN_SHARE, 0), "of the outermost pixels close to the corner colour: plain"),
        ("`TRIM_TOLERANCE`", pct(tolerance, 0), 'of the largest RGB distance: "close to the corner colour"'),
        ("`PLAIN_LEVEL`", f"{seg.PLAIN_LEVEL} gray levels", "a plain colour this near white or black: a product shot"),
        ("`SEG_SIDE`", f"{seg.SEG_SIDE} pixels", "GrabCut's working copy, at most"),
        ("`BORDER`", pct(seg.BORDER, 0), "of the side: the band that seeds the background model"),
        ("`ITERATIONS`", seg.ITERATIONS, "GrabCut's iterations"),
        ("`SHADOW_SHARE`", pct(seg.SHADOW_SHARE, 0), "shade-like pixels are dropped only while fewer than this"),
        ("`KEEP_SHARE`", pct(seg.KEEP_SHARE, 0), "of the largest part: connected parts kept with it"),
        ("`LEVEL_MEAN`, `LEVEL_SPREAD`", f"{seg.LEVEL_MEAN:g}, {seg.LEVEL_SPREAD:g}", "the garment's levels"),
        ("`LEVEL_FLOOR`", f"{seg.LEVEL_FLOOR:g}", "no garment pixel darker than this after negation"),
        ("`BOX_MARGIN`", pct(seg.BOX_MARGIN, 0), "of a box's size, cropped around it"),
        ("`BOX_EDGE`", pct(seg.BOX_EDGE, 0), "of a box's size: the band inside it that starts as background"),
        ("`ALIKE`", pct(seg.ALIKE, 0), "of the largest RGB distance: a pixel this near a border colour is alike"),
        ("`MAX_ALIKE`", pct(seg.MAX_ALIKE, 0), "a cut-out more alike than this is no object: old steps"),
    ]
    source = "From `src/fmnist/predict/segment.py` and `src/fmnist/predict/images.py`, as this checkout has them."
    return f"{table(('setting', 'value', 'meaning'), rows)}\n\n{source}"


@from_newest("photos-choice", "python bench/bench_photos.py RUN_DIR --count 0 --segmenters 150")
def choice_table(doc):
    s = doc["segmenters"]
    names = {
        "grabcut": "GrabCut, border seed (shipped)",
        "slic-border": "scikit-image: SLIC superpixels; those like a border superpixel's colour are background",
        "levels: matched (shipped)": "levels: matched to the training images' (shipped)",
        "levels: stretched": "levels: stretched to the full range (2nd-98th percentile)",
        "levels: as is": "levels: as they are",
    }
    rows = []
    for key, label in names.items():
        r = s[key]
        if "iou" in r:
            rows.append((label, f"{r['iou']:.3f}", "", ""))
        else:
            rows.append((label, "", pct(r["correct"], 1), pct(r["unknown"], 1)))
    return table(("choice", "mask IoU", "right", "called unknown"), rows)


def _before_after(family, kinds, model="cnn"):
    """before (the dataset's steps), segmented (judged by the dataset's threshold: the run had no photo
    threshold yet) and after (segmented photos judged by the photo threshold)."""
    before_path, before = newest("photos-before")
    middle_path, middle = newest("photos-segmented")
    after_path, after = newest("photos")
    if before is None or middle is None or after is None:
        return missing("photos", HOW + " --conversion before|after")
    rows = []
    for key, label in kinds.items():
        b, m, a = before[family][model][key], middle[family][model][key], after[family][model][key]
        rows.append((label, a["n"], _cell(b), _cell(m), _cell(a)))
    head = (f"default model ({model}): right / called unknown", "photos", "before", "segmented", "after")
    sources = "\n".join(where(path, doc) for path, doc in ((before_path, before), (middle_path, middle)))
    return f"{table(head, rows)}\n\n{sources}\n{where(after_path, after)}"


def issue_kinds_table():
    return _before_after("issue", ISSUE_KINDS)


def other_kinds_table():
    return _before_after("other", OTHER_KINDS)


def models_table():
    before_path, before = newest("photos-before")
    after_path, after = newest("photos")
    if before is None or after is None:
        return missing("photos", HOW + " --conversion before|after")
    rows = []
    for model in after["issue"]:
        cells = [_cell(doc[family][model]["all"]) for family in ("issue", "other") for doc in (before, after)]
        rows.append((model, *cells))
    head = ("all of each family: right / called unknown", "issue before", "issue after", "other before", "other after")
    return f"{table(head, rows)}\n\n{where(before_path, before)}\n{where(after_path, after)}"


def trust_table():
    """The unknown-input check through the conversion, segmented photos judged by the photo threshold
    (bench/bench_photos.py --trust N)."""
    path, doc = newest("photos")
    if doc is None or "trust" not in doc:
        return missing("photos", HOW + " --trust 500")
    rows = []
    for name, r in doc["trust"].items():
        thresholds = f"{r['threshold']:.2f} / {r['photo_threshold']:.2f}"
        cells = (pct(r["non_clothing_unknown"], 1), pct(r["product_unknown"], 1), pct(r["product_correct"], 1))
        rows.append((name, thresholds, pct(r["non_clothing_segmented"], 1), *cells))
    head = (
        "model",
        "threshold: dataset / photos",
        "non-clothing segmented",
        "non-clothing unknown",
        "product photos unknown",
        "product photos right",
    )
    return f"{table(head, rows)}\n\n{where(path, doc)}"


def timing_table():
    path, doc = newest("photos")
    if doc is None or "timing" not in doc:
        return missing("photos", HOW + " --timing 10")
    rows = []
    for size, t in doc["timing"].items():
        target = TIMING_TARGET_MS.get(size)
        met = yes_no(t["p50_ms"] <= target) if target else ""
        times = (f"{t[k]:.0f} ms" for k in ("p50_ms", "p90_ms", "cpu_p50_ms"))
        rows.append((size.replace("MP", " MP"), t["n"], *times, f"{target} ms" if target else "", met))
    head = ("JPEG of a composite", "photos", "p50", "p90", "CPU time p50", "target (p50)", "met")
    return f"{table(head, rows)}\n\n{where(path, doc)}"


def photometric_table():
    base_path, base = newest("photos-segmented")  # judged as the P = 0.5 run was: by the dataset's threshold
    path, doc = newest("photos-photometric")
    if doc is None or base is None:
        return missing("photos-photometric", HOW + " (RUN_DIR trained with --photometric 0.5)")
    rows = [(label, _cell(d["issue"]["cnn"]["all"])) for label, d in (("default (P = 0)", base), ("P = 0.5", doc))]
    head = ("cnn, seed 0: the issue's kinds after segmentation", "right / called unknown")
    return f"{table(head, rows)}\n\n{where(base_path, base)}\n{where(path, doc)}"


@from_newest("photos", HOW)
def targets_table(doc):
    """The issue's acceptance against the default model on each of its kinds, after the conversion."""
    rows = []
    for key, label in ISSUE_KINDS.items():
        r = doc["issue"]["cnn"][key]
        met = r["correct"] >= RIGHT_TARGET and r["unknown"] <= UNKNOWN_TARGET
        rows.append((label, pct(r["correct"], 1), pct(r["unknown"], 1), yes_no(met)))
    head = (
        "cnn, after",
        "right",
        "called unknown",
        f"≥ {pct(RIGHT_TARGET, 0)} right, ≤ {pct(UNKNOWN_TARGET, 0)} unknown",
    )
    return table(head, rows)


TABLES = {
    "photos-settings": settings_table,
    "photos-choice": choice_table,
    "photos-issue-kinds": issue_kinds_table,
    "photos-other-kinds": other_kinds_table,
    "photos-models": models_table,
    "photos-trust": trust_table,
    "photos-timing": timing_table,
    "photos-photometric": photometric_table,
    "photos-targets": targets_table,
}
