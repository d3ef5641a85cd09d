"""API keys for `fmnist serve --api-key-file FILE`: who may call, and how often.

The file holds one key per line (blank lines and lines starting with # ignored). Only the keys' SHA-256 digests
are kept in memory; a request's `Authorization: Bearer KEY` is hashed and compared with every digest with
`hmac.compare_digest`, all of them every time, so neither the comparison nor the number of comparisons says how
much of a guess was right. Without a valid key every path but the probes (/livez, /readyz) and the page's own
static files (which hold no data: the page asks for the key) is 401. Each key has a token bucket: `rate`
requests a second on average, `burst` at once; past it, 429 with Retry-After (whole seconds).
"""

import hashlib
import hmac
import json
import math
import threading
import time

from fmnist.errors import UserError

OPEN_PATHS = frozenset({"/livez", "/readyz"})
MAX_KEY_FILE = 1_000_000  # bytes; a key file is a few lines
MIN_KEY_LENGTH = 16  # characters: a short key is guessed


def digest(key):
    return hashlib.sha256(key.encode("utf-8")).digest()


def read_key_file(path):
    """The SHA-256 digests of the keys in `path`; UserError if it is unreadable or holds no usable key."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_KEY_FILE + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--api-key-file {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if len(text) > MAX_KEY_FILE or not keys:
        raise UserError(f"--api-key-file {path}: expected one key per line (up to {MAX_KEY_FILE:,} bytes)")
    short = [number for number, key in enumerate(keys, 1) if len(key) < MIN_KEY_LENGTH or not key.isprintable()]
    if short:
        raise UserError(f"--api-key-file {path}: key {short[0]} is under {MIN_KEY_LENGTH} printable characters")
    return frozenset(digest(key) for key in keys)


class KeyRing:
    """Hashed keys; `match(header)` -> the matching digest or None, in time that does not depend on the guess."""

    def __init__(self, digests):
        self.digests = tuple(digests)

    def match(self, authorization):
        scheme, _, token = (authorization or "").partition(" ")
        offered = digest(token.strip()) if scheme.lower() == "bearer" else b"\0" * 32
        found = None
        for known in self.digests:  # every digest, always: no early exit
            if hmac.compare_digest(offered, known):
                found = known
        return found


class TokenBuckets:
    """One bucket per key: `rate` tokens a second up to `burst`; `take(key)` -> 0, or seconds until a token."""

    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        self.buckets = {}  # key -> (tokens, time of the last update)
        self.lock = threading.Lock()

    def take(self, key, now=None):
        now = time.monotonic() if now is None else now
        with self.lock:
            tokens, last = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def refusal(status, message, headers=()):
    """A whole JSON answer (start and body messages) for the middleware to send."""
    body = json.dumps({"detail": message}).encode("ascii")
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    head.append((b"connection", b"close"))  # the body of a refused upload is not read: stop its sender
    return [
        {"type": "http.response.start", "status": status, "headers": head},
        {"type": "http.response.body", "body": body},
    ]


class KeyCheck:
    """ASGI middleware: 401 without a valid key, 429 past the key's rate, else the app."""

    def __init__(self, app, ring, buckets, open_paths=OPEN_PATHS):
        self.app, self.ring, self.buckets, self.open_paths = app, ring, buckets, open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            return await self.app(scope, receive, send)
        headers = {name.lower(): value for name, value in scope.get("headers", ())}
        key = self.ring.match(headers.get(b"authorization", b"").decode("latin-1"))
        if key is None:
            message = "a valid API key is needed: send Authorization: Bearer KEY"
            answer = refusal(401, message, [(b"www-authenticate", b'Bearer realm="fmnist"')])
        elif wait := self.buckets.take(key):
            retry = str(max(1, math.ceil(wait))).encode()
            answer = refusal(
                429, f"too many requests for this key: at most {self.buckets.rate:g}/s", [(b"retry-after", retry)]
            )
        else:
            return await self.app(scope, receive, send)
        for message in answer:
            await send(message)
