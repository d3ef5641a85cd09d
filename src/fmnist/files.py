"""Files: atomic writes (a file appears complete under its final name, or not at all), JSON, checksums, and the
one reader of every JSON file a run writes: bounded in size and depth, checked against a schema.

A schema is a checker: a function (value, field) that raises `Invalid(field, problem)`; `number`, `whole`,
`text`, `flag`, `listing`, `mapping` and `table` build them, `optional` marks a key that may be absent. Keys a
schema does not name are allowed, so a newer field (or another tool's) is no error; a wrong type always is.
`validated(path, value, schema)` turns the first problem into one line naming the file and the field.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path

import numpy as np

from fmnist.errors import UserError

NAME_MAX = 255  # bytes in one file name on Linux's file systems (ext4, xfs, btrfs, tmpfs)
MAX_JSON_BYTES = 64_000_000  # far above any run file (metrics.json ~30 kB), far below trouble
MAX_JSON_DEPTH = 32  # run files nest 6 deep; the resume state's skeleton about 12
ESCAPE = re.compile(r"\\.", re.DOTALL)
OPENING, CLOSING = (ord("["), ord("{")), (ord("]"), ord("}"))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success move it into place with `os.replace`.

    A crash or exception leaves any previous file at `path` untouched and removes the temporary one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp adds 8 random characters and the suffix: the prefix is cut so the name stays within NAME_MAX.
    prefix = "." + fitting_name(path.name, ".", NAME_MAX - len(".XXXXXXXX.tmp"))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    except OSError as exc:
        raise unwritable(path, exc) from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; a result should be as readable as any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, a quota, a file size limit: one line naming the file
            raise unwritable(path, exc) from None
        raise


def unwritable(path, exc):
    """The UserError for a file that could not be written (the OSError of a write rarely names its file)."""
    return UserError(f"{path}: cannot write ({exc.strerror or exc})")


def fitting_name(stem: str, suffix: str, limit: int | None = None) -> str:
    """stem + suffix, the stem cut (never the suffix) so the name's bytes on disk are at most `limit` (NAME_MAX)."""
    limit = NAME_MAX if limit is None else limit
    room = limit - len(os.fsencode(suffix))
    encoded = os.fsencode(stem)
    if len(encoded) <= room:
        return stem + suffix
    cut = encoded[:room]
    while cut and encoded[len(cut)] & 0xC0 == 0x80:  # never split a UTF-8 character: cut before its first byte
        cut = cut[:-1]
    return os.fsdecode(cut) + suffix


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def json_depth(text):
    """How deeply arrays and objects nest in JSON `text` (brackets inside strings not counted), vectorised."""
    bare = ESCAPE.sub("", text) if "\\" in text else text  # without escapes, quotes alternate in and out
    codes = np.frombuffer(bare.encode("utf-8", "surrogatepass"), np.uint8)
    outside = np.cumsum(codes == ord('"')) % 2 == 0
    step = np.isin(codes, OPENING).astype(np.int64) - np.isin(codes, CLOSING)
    return int(np.cumsum(step * outside).max(initial=0))


def parse_json(text, where, max_depth=MAX_JSON_DEPTH, *, constants=False):
    """JSON text -> value, refusing nesting deeper than `max_depth` and (unless `constants`) NaN and Infinity;
    a UserError naming `where`."""
    if (depth := json_depth(text)) > max_depth:
        raise UserError(f"{where}: JSON nested {depth} deep, more than the {max_depth} a run file needs")
    try:
        return json.loads(text, parse_constant=None if constants else _refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{where}: unreadable JSON ({exc})") from None


def read_json(path, missing="file not found", max_bytes=MAX_JSON_BYTES):
    """Parse a JSON file (a regular file of at most `max_bytes`); a missing or bad one is a UserError naming it."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise UserError(f"{path}: {info.st_size:,} bytes, more than the {max_bytes:,} of a run file")
        with open(path, "rb") as fh:
            text = fh.read(max_bytes + 1).decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc})") from None
    return parse_json(text, path)


def read_versioned(path, key, version, *, missing="file not found", hint="retrain the model"):
    """A JSON object whose `key` must be `version` (a file of this fmnist's format), as `read_json` reads it."""
    return versioned(read_json(path, missing), path, key, version, hint)


def versioned(document, where, key, version, hint):
    """`document` if it is a JSON object whose `key` is `version`; else a UserError naming `where`."""
    if not isinstance(document, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(document).__name__}")
    found = document.get(key)
    if key not in document:
        raise UserError(f"{where}: no {key} — written by an older fmnist; {hint}")
    if type(found) is not type(version) or found != version:
        raise UserError(f"{where}: {key} {shown(found)}, this fmnist reads {version}; {hint}")
    return document


# -- schemas ---------------------------------------------------------------------------------------------------


class Invalid(ValueError):
    """A value against its schema: `field` is where (e.g. "hparams.lr"), `problem` what is wrong."""

    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}" if field else problem)
        self.field, self.problem = field, problem


def shown(value, width=40):
    """A value as a short one-line repr, for messages about any (possibly huge) value."""
    text = ascii(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def validated(path, value, schema):
    """`value` if it fits `schema`, else a UserError naming `path` and the field at fault."""
    try:
        schema(value, "")
    except Invalid as exc:
        raise UserError(f"{path}: {exc}") from None
    return value


def join(field, key):
    return f"{field}.{key}" if field else str(key)


def optional(check):
    """A key that may be absent (it may also be null when `check` allows it)."""

    def checked(value, field):
        check(value, field)

    checked.optional = True
    return checked


def number(low=-math.inf, high=math.inf, *, above=None, null=False, whole=False):
    """A finite JSON number in [low, high] (and > above, if given); whole: an integer."""
    kind = "a whole number" if whole else "a number"

    def check(value, field):
        if value is None and null:
            return
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise Invalid(field, f"is {shown(value)}, not {kind}")
        infinite = isinstance(value, float) and not math.isfinite(value)  # an int may be too large for a float
        if infinite or not low <= value <= high or (above is not None and value <= above):
            bounds = f"above {above:g}" if above is not None else f"in [{low:g}, {high:g}]"
            raise Invalid(field, f"is {shown(value)}, not {kind} {bounds}")

    return check


def whole(low=0, high=2**63 - 1, *, null=False):
    return number(low, high, null=null, whole=True)


def text(choices=None, *, null=False, max_length=10_000):
    def check(value, field):
        if value is None and null:
            return
        if not isinstance(value, str) or len(value) > max_length:
            raise Invalid(field, f"is {shown(value)}, not text")
        if choices is not None and value not in choices:
            raise Invalid(field, f"is {shown(value)}, expected one of {', '.join(map(str, choices))}")

    return check


def flag(value, field):
    if not isinstance(value, bool):
        raise Invalid(field, f"is {shown(value)}, not true or false")


def listing(item, *, low=0, high=1_000_000, null=False):
    """A list of `low` to `high` entries, each checked by `item`."""

    def check(value, field):
        if value is None and null:
            return
        if not isinstance(value, list) or not low <= len(value) <= high:
            raise Invalid(field, f"is {shown(value)}, not a list of {low} to {high:,} entries")
        for i, entry in enumerate(value):
            item(entry, f"{field}[{i}]")

    return check


def mapping(fields, *, null=False):
    """A JSON object holding (at least) `fields`: {key: checker}; a key with an `optional` checker may be absent."""

    def check(value, field):
        if value is None and null:
            return
        if not isinstance(value, dict):
            raise Invalid(field or "the file", f"is {shown(value)}, not a JSON object")
        for key, checker in fields.items():
            if key in value:
                checker(value[key], join(field, key))
            elif not getattr(checker, "optional", False):
                raise Invalid("", f"no {join(field, key)!r} entry")

    return check


def table(key, value_check, *, high=100_000):
    """A JSON object of any keys (each checked as text by `key`), every value checked by `value_check`."""

    def check(value, field):
        if not isinstance(value, dict) or len(value) > high:
            raise Invalid(field, f"is {shown(value)}, not a JSON object of at most {high:,} entries")
        for name, entry in value.items():
            key(name, join(field, name))
            value_check(entry, join(field, name))

    return check


def anything(value, field):
    return None


def sha256_of(path):
    """The SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
