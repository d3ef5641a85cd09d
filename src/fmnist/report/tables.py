"""Plain-text tables for the terminal and the benchmarks: the first column left-aligned, the others right."""


def table(headers, rows):
    """headers: column titles; rows: lists of already formatted cells. Returns the table as one string."""
    lines = [list(map(str, headers)), *[list(map(str, row)) for row in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]

    def row(cells):
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(row(cells) for cells in lines)


def comparison(results):
    """The `fmnist compare` table of {model: metrics} (metrics.json's summary fields)."""
    headers = ("model", "params", "train s", "val acc", "test acc", "images/s")
    rows = [
        (
            name,
            f"{m['parameters']:,}",
            f"{m['train_seconds']:.0f}",
            f"{m['val_accuracy']:.2%}",
            f"{m['test_accuracy']:.2%}",
            f"{m['inference_images_per_s']:,.0f}",
        )
        for name, m in results.items()
    ]
    return table(headers, rows)
