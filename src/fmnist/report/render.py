"""Blocks -> report.md and a self-contained report.html: one list of blocks, so both always say the same thing.

A block is ("h1" | "h2" | "h3", text), ("p", paragraph), ("pre", text), ("table", header, rows) or
("image", path, caption). The HTML embeds every image as a base64 data URI and opens offline with nothing beside
it. Used by the run report, the seeds report and the tuning report.
"""

import base64
import html
import re
from pathlib import Path

NUMBER = re.compile(r"-?[\d,]+(\.\d+)?( %| s| min)?")  # cells right-aligned in HTML tables
CSS = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f0f0; }
figure { margin: 1rem 0; }
img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #555; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
"""


def _is_number(cell):
    return NUMBER.fullmatch(cell) is not None


def to_markdown(blocks, root):
    """Markdown with images linked relative to `root` (the folder report.md is written to)."""
    lines = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "pre":
            lines += ["```", block[1], "```", ""]
        elif kind == "table":
            header, rows = block[1], block[2]

            def cells(row):
                return "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"

            numeric = [bool(rows) and all(_is_number(str(row[i])) for row in rows) for i in range(len(header))]
            rule = "|" + "|".join("---:" if right else "---" for right in numeric) + "|"
            lines += [cells(header), rule, *map(cells, rows), ""]
        elif kind == "image":
            lines += [f"![{block[2]}]({Path(block[1]).relative_to(root).as_posix()})", ""]
    return "\n".join(lines)


def _html_cell(text):
    numeric = ' class="num"' if _is_number(text) else ""
    return f"<td{numeric}>{html.escape(text)}</td>"


def to_html(blocks, title):
    """A complete HTML page; every text is escaped and every image embedded as a data URI."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head><meta charset="utf-8"><title>{esc(title)}</title><style>{CSS}</style></head>',
        "<body>",
    ]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "pre":
            parts.append(f"<pre>{esc(block[1])}</pre>")
        elif kind == "table":
            head = "".join(f"<th>{esc(str(c))}</th>" for c in block[1])
            body = "".join("<tr>" + "".join(_html_cell(str(c)) for c in row) + "</tr>" for row in block[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "image":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
            caption = esc(block[2])
            image = f'<img src="data:image/png;base64,{data}" alt="{caption}">'
            parts.append(f"<figure>{image}<figcaption>{caption}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
