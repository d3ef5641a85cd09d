"""Matplotlib figures. Each function returns a `Figure` (None when there is nothing to draw): it displays
inline in a notebook, and `save` writes it atomically as PNG.

Figures are made without pyplot, so no backend or screen is needed and nothing global changes. Accuracies are
fractions in [0, 1], drawn as percentages. Class indices become class names on every axis.
"""

import io

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import ConfusionMatrixDisplay

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.files import atomic_path
from fmnist.report import tiles

DPI = 110
TSNE_SAMPLE = 1_000  # t-SNE of 1,000 CNN features: 3.4 s on 2 Zen 3 cores, 9.1 s for 2,000 (bench/NOTES.md)


class Picture(Figure):
    """A Figure that renders itself as PNG for Jupyter, whatever matplotlib backend is (or is not) active."""

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        return buffer.getvalue()


def save(fig, path, dpi=DPI):
    """Write `fig` as a PNG at `path`, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def _bare(ax):
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def tile_figure(grid, layers, title, titles=None, row_labels=None, left=0.0):
    """A Picture holding one grid of tiles (fmnist.report.tiles); `left`: inches kept for the row labels."""
    fig = Picture(figsize=grid.figsize(left))
    tiles.draw(grid.place(fig, left), grid, layers, titles, row_labels)
    fig.suptitle(title)
    return fig


def class_grid(images, labels, per_class=8, seed=0, title="Fashion-MNIST examples per class"):
    """A grid with one row per class: `per_class` random examples, the class name at the left."""
    rng = np.random.default_rng(seed)
    cells = []
    for c in range(NUM_CLASSES):
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        cells.append([images[i] for i in chosen] + [None] * (per_class - len(chosen)))
    grid = tiles.Grid(NUM_CLASSES, per_class)
    return tile_figure(grid, [(cells, {"vmin": 0, "vmax": 255})], title, row_labels=CLASS_NAMES, left=1.2)


def learning_curves(history, title):
    """Train vs validation loss and accuracy per epoch; `history` maps column name -> (epochs,) array."""
    fig = Picture(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(axes, ("loss", "accuracy"), ("loss (cross-entropy)", "accuracy"), strict=True):
        ax.plot(history["epoch"], history[key], marker="o", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{key}"], marker="o", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].yaxis.set_major_formatter(PercentFormatter(xmax=1))
    fig.suptitle(title)
    return fig


def convergence(histories):
    """Validation accuracy of every model against epochs and against cumulative training seconds.

    `histories` maps model name -> history (column -> (epochs,) array). Seconds use a log axis: the models'
    costs differ by orders of magnitude.
    """
    fig = Picture(figsize=(11, 4))
    by_epoch, by_time = fig.subplots(1, 2, sharey=True)
    for name, history in histories.items():
        by_epoch.plot(history["epoch"], history["val_accuracy"], marker="o", ms=3, label=name)
        by_time.plot(history["seconds"], history["val_accuracy"], marker="o", ms=3, label=name)
    by_epoch.set_xlabel("epoch")
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set_ylabel("validation accuracy")
    by_epoch.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    if all((h["seconds"] > 0).all() for h in histories.values()):
        by_time.set_xscale("log")
    by_time.set_xlabel("training time (s)")
    for ax in (by_epoch, by_time):
        ax.grid(alpha=0.3, which="both")
    by_time.legend(loc="lower right")
    fig.suptitle("Convergence: validation accuracy")
    return fig


def confusion(matrix, title):
    """The confusion matrix (C, C) as counts and row-normalised (each row: how one true class was predicted)."""
    counts = np.asarray(matrix)
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig = Picture(figsize=(15, 6.5))
    axes = fig.subplots(1, 2)
    for ax, values, fmt, kind in ((axes[0], counts, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
        display = ConfusionMatrixDisplay(values, display_labels=list(CLASS_NAMES))
        display.plot(ax=ax, cmap="Blues", values_format=fmt, colorbar=False, xticks_rotation=45)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(kind)
        for text in display.text_.ravel():
            text.set_fontsize(7)
    fig.suptitle(title)
    return fig


def _titled_image(ax, image, title):
    _bare(ax)
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=255)
    ax.set_title(title, fontsize=7)


def misclassified(images, labels, probs, title, count=24, columns=8):
    """The most confident mistakes among images uint8 (N, 28, 28) with labels (N,) and probabilities (N, C).

    Returns None when there is no mistake to show.
    """
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    if not len(wrong):
        return None
    chosen = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:count]
    cells = tiles.rows_of((images[i] for i in chosen), columns)
    words = (
        f"true: {CLASS_NAMES[labels[i]]}\npred: {CLASS_NAMES[predicted[i]]} {probs[i, predicted[i]]:.0%}"
        for i in chosen
    )
    grid = tiles.Grid(len(cells), columns, lines=2)
    return tile_figure(grid, [(cells, {"vmin": 0, "vmax": 255})], title, titles=tiles.rows_of(words, columns))


def confused_pairs(images, labels, probs, pairs, title, per_pair=8):
    """One row per confused pair (dicts with true, predicted, count as in metrics.most_confused): examples of
    the true class predicted as the other, most confident first. Returns None when there is no pair."""
    if not pairs:
        return None
    predicted = probs.argmax(axis=1)
    cells, words, row_labels = [], [], []
    for pair in pairs:
        members = np.flatnonzero((labels == pair["true"]) & (predicted == pair["predicted"]))
        members = members[np.argsort(-probs[members, pair["predicted"]], kind="stable")][:per_pair]
        cells += tiles.rows_of([images[i] for i in members], per_pair) or [[None] * per_pair]
        words += tiles.rows_of([f"{probs[i, pair['predicted']]:.0%}" for i in members], per_pair) or [[]]
        row_labels.append(f"{CLASS_NAMES[pair['true']]}\n→ {CLASS_NAMES[pair['predicted']]}\n({pair['count']} images)")
    grid = tiles.Grid(len(pairs), per_pair, lines=1)
    return tile_figure(grid, [(cells, {"vmin": 0, "vmax": 255})], title, words, row_labels, left=1.4)


def feature_space(features, labels, title, seed=0):
    """Features (N, D) in two dimensions, coloured by class: PCA (distances kept linear) and t-SNE (neighbourhoods
    kept) on a seeded sample of at most TSNE_SAMPLE points."""
    rng = np.random.default_rng(seed)
    if len(features) > TSNE_SAMPLE:
        keep = np.sort(rng.choice(len(features), TSNE_SAMPLE, replace=False))
        features, labels = features[keep], labels[keep]
    features = np.asarray(features, dtype=np.float32)
    pca = PCA(n_components=2, random_state=seed)
    views = [("PCA", pca.fit_transform(features))]
    if len(features) > 10:  # t-SNE needs more points than its perplexity
        perplexity = min(30.0, (len(features) - 1) / 3)
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
        views.append(("t-SNE", tsne.fit_transform(features)))
    fig = Picture(figsize=(6.5 * len(views) + 2, 6))
    axes = fig.subplots(1, len(views), squeeze=False)
    colours = matplotlib.colormaps["tab10"]
    for ax, (method, points) in zip(axes[0], views, strict=True):
        for c, name in enumerate(CLASS_NAMES):
            member = labels == c
            ax.scatter(points[member, 0], points[member, 1], s=5, alpha=0.7, color=colours(c), label=name)
        ax.set_title(f"{method} ({len(features):,} test images)")
        _bare(ax)
    explained = pca.explained_variance_ratio_
    axes[0, 0].set_xlabel(f"component 1 ({explained[0]:.0%} of variance)")
    axes[0, 0].set_ylabel(f"component 2 ({explained[1]:.0%} of variance)")
    axes[0, -1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=3, frameon=False)
    fig.suptitle(title)
    return fig


def per_class_f1(f1_by_model, title):
    """Grouped horizontal bars: `f1_by_model` maps model name -> F1 per class (C,)."""
    fig = Picture(figsize=(8, 0.35 * len(CLASS_NAMES) * (0.75 + 0.25 * len(f1_by_model)) + 1.2))
    ax = fig.subplots()
    height = 0.8 / len(f1_by_model)
    positions = np.arange(len(CLASS_NAMES))
    for k, (name, f1) in enumerate(f1_by_model.items()):
        ax.barh(positions + k * height - 0.4 + height / 2, f1, height=height, label=name)
    ax.set_yticks(positions, CLASS_NAMES)
    ax.invert_yaxis()  # class 0 at the top, as in the tables
    ax.set_xlabel("F1 score (test)")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_title(title)
    return fig


def prediction(image, top, title):
    """The uint8 (28, 28) image a model saw beside its top classes ((class index, probability), ...)."""
    fig = Picture(figsize=(8, 2.8))
    left, right = fig.subplots(1, 2, width_ratios=(1, 2), gridspec_kw={"wspace": 0.7})
    _titled_image(left, image, "what the model saw (28x28)")
    classes, probs = zip(*top, strict=True)
    right.bar_label(right.barh(range(len(top)), probs), labels=[f"{p:.1%}" for p in probs], padding=3)
    right.set_yticks(range(len(top)), [CLASS_NAMES[c] for c in classes])
    right.invert_yaxis()  # the most probable at the top
    right.set_xlim(0, 1)
    right.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    right.set_xlabel("probability")
    fig.suptitle(title)
    return fig
