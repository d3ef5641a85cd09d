"""Many small images drawn as one picture: a mosaic in a single Axes, with text above tiles and beside rows.

A grid of 24 images made as 24 Axes spends most of its time creating and laying out those Axes: 0.79 s to
build and save one such figure against 0.29 s for the same tiles in one Axes (bench/NOTES.md, "The report's
time"). The report draws about twenty grids, and every one is drawn this way.

Layout, in pixels of the mosaic: tiles of `size` x `size`, GAP pixels apart, and above each row of tiles a
band of LINE pixels per line of title text. Empty cells (None) stay blank (masked, drawn as the background).
"""

import dataclasses

import matplotlib
import numpy as np

GAP = 4
LINE = 5  # pixels of band per line of title text at the figure scale below (7-point text)
INCHES_PER_PIXEL = 0.046
TOP = 0.45  # inches above the mosaic for the figure title


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where the tiles of a rows x columns grid lie in the mosaic."""

    rows: int
    columns: int
    lines: int = 0  # lines of title text above every row
    size: int = 28

    @property
    def band(self):
        return self.lines * LINE

    @property
    def shape(self):
        """(height, width) of the mosaic in pixels."""
        return self.rows * (self.band + self.size + GAP) - GAP, self.columns * (self.size + GAP) - GAP

    def origin(self, row, column):
        """(y, x) of the top-left pixel of tile (row, column)."""
        return row * (self.band + self.size + GAP) + self.band, column * (self.size + GAP)

    def figsize(self, left=0.0):
        """Figure size in inches: the mosaic at INCHES_PER_PIXEL, `left` inches for row labels, TOP for the title."""
        height, width = self.shape
        return width * INCHES_PER_PIXEL + left, height * INCHES_PER_PIXEL + TOP

    def place(self, fig, left=0.0):
        """An Axes on `fig` (of figsize(left)) that holds the mosaic at exactly INCHES_PER_PIXEL."""
        width, height = self.figsize(left)
        return fig.add_axes((left / width, 0, 1 - left / width, 1 - TOP / height))


def mosaic(grid, cells):
    """cells: rows of (size, size) arrays or None -> a masked float mosaic (height, width), masked off-tile."""
    out = np.full(grid.shape, np.nan)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            if cell is not None:
                y, x = grid.origin(r, c)
                out[y : y + grid.size, x : x + grid.size] = cell
    return np.ma.masked_invalid(out)


def draw(ax, grid, layers, titles=None, row_labels=None, fontsize=7):
    """Draw `layers` [(cells, imshow options)], bottom first, with titles (rows of str or None) above the
    tiles and row_labels (str per row) at the left; the Axes itself is hidden."""
    for cells, options in layers:
        options = dict(options)  # the caller's stay as given
        cmap = matplotlib.colormaps[options.pop("cmap", "gray_r")].with_extremes(bad=(1, 1, 1, 0))
        ax.imshow(mosaic(grid, cells), cmap=cmap, interpolation="nearest", **options)
    half = grid.size / 2
    for r, row in enumerate(titles or ()):
        for c, text in enumerate(row):
            if text:
                y, x = grid.origin(r, c)
                ax.text(x + half, y - 1, text, ha="center", va="bottom", fontsize=fontsize)
    for r, label in enumerate(row_labels or ()):
        y, _ = grid.origin(r, 0)
        ax.text(-GAP, y + half, label, ha="right", va="center", fontsize=fontsize + 1.5)
    ax.set_axis_off()
    height, width = grid.shape
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)


def rows_of(items, columns):
    """A flat list -> rows of `columns` (the last padded with None)."""
    items = list(items)
    padded = items + [None] * (-len(items) % columns)
    return [padded[i : i + columns] for i in range(0, len(padded), columns)]
