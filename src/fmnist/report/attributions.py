"""The report's attribution figures: correct and wrong test images beside their maps; the linear templates.

Maps are drawn on a diverging scale centred on zero (red: evidence for the class, blue: against), each map
scaled by its own largest |value|, over the image in gray.
"""

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.report.plots import Picture, _bare

CMAP = "RdBu_r"


def _overlay(ax, image, attribution):
    peak = float(np.abs(attribution).max()) or 1.0
    ax.imshow(image, cmap="gray", vmin=0, vmax=255 * 2.5)  # dimmed, so the map reads over it
    ax.imshow(attribution, cmap=CMAP, vmin=-peak, vmax=peak, alpha=0.75)
    _bare(ax)


def gallery(arrays, title):
    """Two rows per image group (correct, wrong): the image with its true / predicted class, and its map."""
    images, labels, targets, maps = (arrays[k] for k in ("images", "labels", "targets", "maps"))
    if not len(images):
        return None
    correct = labels == targets
    columns = max(int(correct.sum()), int((~correct).sum()), 1)
    fig = Picture(figsize=(1.25 * columns + 0.8, 5.6))
    axes = fig.subplots(4, columns, squeeze=False)
    for row, (group, name) in enumerate(((correct, "correct"), (~correct, "wrong"))):
        members = np.flatnonzero(group)
        for j in range(columns):
            top, bottom = axes[2 * row, j], axes[2 * row + 1, j]
            _bare(top)
            _bare(bottom)
            if j >= len(members):
                continue
            i = members[j]
            top.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            top.set_title(f"{CLASS_NAMES[labels[i]]}\n-> {CLASS_NAMES[targets[i]]}", fontsize=6.5)
            _overlay(bottom, images[i], maps[i])
        axes[2 * row, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"{title} ({arrays['method']})")
    return fig


def templates(weights, title):
    """The linear model's ten class templates (weight per pixel), each on its own symmetric scale."""
    fig = Picture(figsize=(10, 2.6))
    axes = fig.subplots(1, len(weights))
    for c, (ax, weight) in enumerate(zip(axes, weights, strict=True)):
        peak = float(np.abs(weight).max()) or 1.0
        ax.imshow(weight, cmap=CMAP, vmin=-peak, vmax=peak)
        ax.set_title(CLASS_NAMES[c], fontsize=8)
        _bare(ax)
    fig.suptitle(title)
    return fig


def pairs(images, maps, titles, title):
    """Images (top row) above their maps (bottom row), one column each; titles per column."""
    columns = max(len(images), 1)
    fig = Picture(figsize=(1.3 * columns + 0.4, 3.2))
    axes = fig.subplots(2, columns, squeeze=False)
    for j in range(columns):
        _bare(axes[0, j])
        _bare(axes[1, j])
        if j < len(images):
            axes[0, j].imshow(images[j], cmap="gray", vmin=0, vmax=255)
            axes[0, j].set_title(titles[j], fontsize=7)
            _overlay(axes[1, j], images[j], maps[j])
    fig.suptitle(title)
    return fig
