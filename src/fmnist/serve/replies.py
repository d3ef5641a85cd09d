"""What `POST /predict` reads from a request (model, top-k, level, box, explain; each a 400 when unusable) and
the document it answers with: `fmnist predict --json`'s, plus the model's version and the images as PNG."""

import base64
import io

import numpy as np
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.files import shown
from fmnist.predict import answers, segment, sets
from fmnist.predict import images as image_files
from fmnist.serve.uploads import RequestError, whole_number


def png_base64(image):
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def convert_uploads(files, box=None):
    """Uploaded files -> (kept names, uint8 (N, 28, 28) images, [ImageError], cut-outs), as `fmnist predict` does."""
    names, images, failures, cutouts = [], [], [], []
    for number, upload in enumerate(files, 1):
        name = upload.filename or f"file {number}"
        try:
            seen = segment.convert_file(name, content=upload.content, box=box)
        except image_files.ImageError as exc:
            failures.append(image_files.detached(exc))
            continue
        names.append(name)
        images.append(seen.image)
        cutouts.append(seen.cutout)
    return names, np.array(images, np.uint8).reshape(-1, 28, 28), failures, cutouts


def request_box(options):
    """The box a request gives (form field or query parameter `box`, X0,Y0,X1,Y1), or None; RequestError if bad."""
    try:
        return segment.parse_box(options["box"]) if options.get("box") else None
    except UserError as exc:
        raise RequestError(400, str(exc)) from None


def request_options(served, default, options):
    """The model, top-k and prediction-set level a request asks for (form fields or query parameters);
    RequestError if unusable."""
    name = options.get("model") or default
    if name not in served:
        raise RequestError(400, f"model {shown(name)}: not in this run (choose from {', '.join(served)})")
    top_k = whole_number(options.get("top_k") or "3", "top_k", 1, len(CLASS_NAMES))
    return served[name], top_k, request_coverage(options)


def request_coverage(options):
    """The prediction-set level a request asks for (default 95 %); RequestError if it is not in (0, 1)."""
    try:
        return sets.coverage_value(options.get("coverage") or sets.DEFAULT)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None


def wants_explanation(options):
    value = (options.get("explain") or "0").lower()
    if value not in ("0", "1", "true", "false"):
        raise RequestError(400, f"explain {value!r}: 1 (a heat map per image) or 0")
    return value in ("1", "true")


def add_cutouts(doc, cutouts):
    """For each photo that was segmented, the garment cut out on white (`cutout_png`, base64 PNG)."""
    for entry, cutout in zip(doc["predictions"], cutouts, strict=True):
        if cutout is not None:
            entry["cutout_png"] = png_base64(np.asarray(cutout))
    return doc


def document(served, converted, assessment, failures, asked):
    """`fmnist predict --json`'s document plus the model used, each 28x28 image and each cut-out as base64 PNG.
    converted: `convert_uploads`' (names, images, cut-outs); asked: the request's (top-k, prediction-set level)."""
    (names, images, cutouts), (top_k, coverage) = converted, asked
    results = answers.ranked(assessment, names, images, top_k)
    set_mask = sets.mask(served.model, assessment, coverage)
    results = answers.with_sets(results, assessment.probs, set_mask, coverage)
    doc = {"model": served.name, "version": served.version, **answers.as_json(results, failures)}
    for entry, image in zip(doc["predictions"], images, strict=True):
        entry["image_png"] = png_base64(image)
    if failures:
        doc["detail"] = str(failures[0]) + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
    return add_cutouts(doc, cutouts)
