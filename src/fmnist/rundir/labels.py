"""The audit directory's two human-facing files: `label_issues.csv` (what `fmnist audit` suspects) and
`reviews.json` (what a person decided about the suspects on the review page).

label_issues.csv: one row per suspect, strongest first, columns `file,index,given,suggested,score,kind`: file
`train` or `test` (the IDX file), index the position in that file, given and suggested class numbers (0-9), score
the label quality (lower: more suspect), kind `label`.

reviews.json: {"format": "fmnist-reviews", "version": 1, "reviews": [...], "sha256": ...}, one review per image
({"file", "index", "decision": right|relabel|unsure, "label": the class it should be (relabel) else null,
"reviewer", "time"}), and the SHA-256 of the reviews as canonical JSON. A file that fails the schema or whose
checksum does not match (edited by hand, cut short) is refused in one line naming it: reviews decide which
images training drops or relabels, so a changed file must not pass silently.
"""

import csv
import dataclasses
import hashlib
import io
import json
from pathlib import Path

from fmnist.data.dataset import NUM_CLASSES
from fmnist.errors import UserError
from fmnist.files import listing, mapping, read_json, validated, whole, write_json, write_text
from fmnist.files import text as text_field

ISSUES, REVIEWS = "label_issues.csv", "reviews.json"
PLAN, PROBS, SUMMARY = "audit.json", "probabilities.npz", "summary.json"  # the settings, the scores, the counts
IMAGES = "suspect_images.npz"  # the suspects' images in label_issues.csv's order, for the review page
COLUMNS = ("file", "index", "given", "suggested", "score", "kind")
FILES = {"train": 60_000, "test": 10_000}  # the IDX files and their sizes
KINDS = ("label",)
DECISIONS = ("right", "relabel", "unsure")
FORMAT, VERSION = "fmnist-reviews", 1
MAX_ISSUES_BYTES = 20_000_000  # 70,000 rows of ~30 bytes fit many times over
REVIEW = mapping(
    {
        "file": text_field(tuple(FILES)),
        "index": whole(0, max(FILES.values()) - 1),
        "decision": text_field(DECISIONS),
        "label": whole(0, NUM_CLASSES - 1, null=True),
        "reviewer": text_field(max_length=200),
        "time": text_field(max_length=40),
    }
)
REVIEWS_SCHEMA = mapping(
    {
        "format": text_field((FORMAT,)),
        "version": whole(VERSION, VERSION),
        "reviews": listing(REVIEW, high=sum(FILES.values())),
        "sha256": text_field(max_length=64),
    }
)


@dataclasses.dataclass(frozen=True)
class Issue:
    file: str
    index: int
    given: int
    suggested: int
    score: float
    kind: str = "label"


def write_issues(path, issues):
    """label_issues.csv, atomically, in the order given (the caller sorts: strongest suspect first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows((i.file, i.index, i.given, i.suggested, f"{i.score:.6g}", i.kind) for i in issues)
    write_text(path, buffer.getvalue())


def read_issues(path):
    """The rows of a label_issues.csv, checked; a bad file is a UserError naming it and the line at fault."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_ISSUES_BYTES:
            raise UserError(f"{path}: larger than any label_issues.csv fmnist audit writes")
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (write one with fmnist audit)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    rows = list(csv.reader(lines))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise UserError(f"{path}: line 1 is not the header {','.join(COLUMNS)}")
    return [_issue(path, number, row) for number, row in enumerate(rows[1:], 2)]


def _issue(path, number, row):
    try:
        file, index, given, suggested, score, kind = row
        issue = Issue(file, int(index), int(given), int(suggested), float(score), kind)
    except ValueError:
        raise UserError(f"{path}: line {number} is not file,index,given,suggested,score,kind") from None
    bad = (
        issue.file not in FILES
        or not 0 <= issue.index < FILES[issue.file]
        or not (0 <= issue.given < NUM_CLASSES and 0 <= issue.suggested < NUM_CLASSES)
        or issue.kind not in KINDS
        or not 0.0 <= issue.score <= 1.0
    )
    if bad:
        raise UserError(f"{path}: line {number}: {','.join(row)} is out of range")
    return issue


def checksum(reviews):
    """The SHA-256 of a list of reviews as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(reviews, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def write_reviews(path, reviews):
    """reviews.json, atomically, with the checksum of its reviews."""
    write_json(path, {"format": FORMAT, "version": VERSION, "reviews": reviews, "sha256": checksum(reviews)})


def read_reviews(path, *, missing_ok=False):
    """The reviews in `path`, checked (schema, one review per image, a label exactly for relabel, checksum).
    missing_ok: a missing file is no reviews yet."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    document = validated(path, read_json(path, "file not found (written by fmnist serve --review)"), REVIEWS_SCHEMA)
    reviews = document["reviews"]
    if checksum(reviews) != document["sha256"]:
        raise UserError(f"{path}: its reviews do not match its sha256 (changed outside fmnist serve); refused")
    seen = set()
    for number, review in enumerate(reviews):
        key = (review["file"], review["index"])
        if key in seen or review["index"] >= FILES[review["file"]]:
            raise UserError(f"{path}: reviews[{number}] repeats an image or lies outside its file")
        if (review["decision"] == "relabel") != (review["label"] is not None):
            raise UserError(f"{path}: reviews[{number}]: a label goes with decision relabel, and only with it")
        seen.add(key)
    return reviews


def kind_of(path):
    """ "issues" for a label_issues.csv, "reviews" for a reviews.json (by content), else a UserError."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if head.startswith(",".join(COLUMNS).encode()):
        return "issues"
    if head.lstrip().startswith(b"{"):
        return "reviews"
    raise UserError(f"{path}: neither a label_issues.csv (fmnist audit) nor a reviews.json (fmnist serve --review)")
