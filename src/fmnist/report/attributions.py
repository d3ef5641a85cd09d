"""The report's attribution figures: correct and wrong test images beside their maps; the linear templates.

Maps are drawn on a diverging scale centred on zero (red: evidence for the class, blue: against), each map
scaled by its own largest |value|, over the image in gray.
"""

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.report import tiles
from fmnist.report.plots import tile_figure

CMAP = "RdBu_r"
DIM = 2.5  # the image under a map is drawn at 1 / DIM of its brightness, so the map reads over it


def _scaled(attribution):
    """The map over its own largest |value|: in [-1, 1]."""
    return attribution / (float(np.abs(attribution).max()) or 1.0)


def _image_and_map_rows(cells):
    """A row of (image, map) pairs or None -> (base rows, overlay rows): the images at full brightness, then the
    same images dimmed under their maps."""
    images = [None if cell is None else cell[0] / 255 for cell in cells]
    dimmed = [None if cell is None else cell[0] / (255 * DIM) for cell in cells]
    maps = [None if cell is None else _scaled(cell[1]) for cell in cells]
    return [images, dimmed], [[None] * len(cells), maps]


def _layers(base, overlay):
    return [
        (base, {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (overlay, {"cmap": CMAP, "vmin": -1, "vmax": 1, "alpha": 0.75}),
    ]


def gallery(arrays, title):
    """Two rows per image group (correct, wrong): the image with its true / predicted class, and its map."""
    images, labels, targets, maps = (arrays[k] for k in ("images", "labels", "targets", "maps"))
    if not len(images):
        return None
    correct = labels == targets
    columns = max(int(correct.sum()), int((~correct).sum()), 1)
    base, overlay, words = [], [], []
    for group in (correct, ~correct):
        members = list(np.flatnonzero(group)) + [None] * (columns - int(group.sum()))
        cells = [None if i is None else (images[i], maps[i]) for i in members]
        b, o = _image_and_map_rows(cells)
        base, overlay = base + b, overlay + o
        words += [
            [None if i is None else f"{CLASS_NAMES[labels[i]]}\n-> {CLASS_NAMES[targets[i]]}" for i in members],
            [],
        ]
    grid = tiles.Grid(4, columns, lines=2)
    row_labels = ["correct", "", "wrong", ""]
    return tile_figure(grid, _layers(base, overlay), f"{title} ({arrays['method']})", words, row_labels, left=0.8)


def templates(weights, title):
    """The linear model's ten class templates (weight per pixel), each on its own symmetric scale."""
    cells = [[_scaled(w) for w in weights]]
    grid = tiles.Grid(1, len(weights), lines=1)
    layers = [(cells, {"cmap": CMAP, "vmin": -1, "vmax": 1})]
    return tile_figure(grid, layers, title, titles=[list(CLASS_NAMES[: len(weights)])])


def pairs(images, maps, titles, title):
    """Images (top row) above their maps (bottom row), one column each; titles per column."""
    cells = [(image, attribution) for image, attribution in zip(images, maps, strict=True)] or [None]
    base, overlay = _image_and_map_rows(cells)
    grid = tiles.Grid(2, len(cells), lines=2)
    return tile_figure(grid, _layers(base, overlay), title, [list(titles), []])
