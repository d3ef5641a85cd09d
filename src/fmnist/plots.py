"""Matplotlib figures, written atomically as PNG. The Agg backend: no screen is needed."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from fmnist.data import CLASS_NAMES, NUM_CLASSES
from fmnist.files import atomic_path


def save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def class_grid(images, labels, path, per_class=8, seed=0, title="Fashion-MNIST examples per class"):
    """A grid with one row per class: `per_class` random examples, the class name at the left."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(NUM_CLASSES, per_class, figsize=(per_class * 0.9 + 1.6, NUM_CLASSES * 0.95))
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(chosen):
                ax.imshow(images[chosen[j]], cmap="gray_r", vmin=0, vmax=255)
        axes[c, 0].set_ylabel(CLASS_NAMES[c], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title)
    save(fig, path)
