"""`fmnist serve --review AUDIT_DIR`: the page where a person checks the audit's suspects, strongest first.

Routes (a FastAPI APIRouter, added to the server only when --review is given): GET /review (the page), /review.js
and /review.css, GET /review/suspects (the suspects with their images and any review), POST /review/decision (one
decision: right, relabel with the class it should be, or unsure, with the reviewer's name). Each decision rewrites
AUDIT_DIR/reviews.json atomically (`fmnist.rundir.labels`), so a stopped server loses nothing and a restarted one
shows what was reviewed; a reviews file that is malformed or was changed outside the page stops the server at
start-up with one line naming it.
"""

import base64
import datetime
import io
import json
import sys
import threading
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from fmnist.data.dataset import CLASS_NAMES, NUM_CLASSES
from fmnist.errors import UserError
from fmnist.rundir import labels
from fmnist.serve import operate
from fmnist.serve.uploads import RequestError, whole_number

PAGES = {"/review": ("review.html", "text/html"), "/review.js": ("review.js", "text/javascript")}
PAGES["/review.css"] = ("review.css", "text/css")
POLICY = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"
MAX_DECISION_BYTES = 2_000
DECISION_BODY = {  # the route reads its body itself: described here for /openapi.json
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["file", "index", "decision", "label", "reviewer"],
                    "properties": {
                        "file": {"type": "string", "enum": ["train", "test"]},
                        "index": {"type": "integer", "minimum": 0},
                        "decision": {"type": "string", "enum": list(labels.DECISIONS)},
                        "label": {
                            "type": ["integer", "null"],
                            "minimum": 0,
                            "maximum": NUM_CLASSES - 1,
                            "description": "the class it should be with decision relabel, null otherwise",
                        },
                        "reviewer": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
                    },
                    # a label exactly with relabel
                    "if": {"properties": {"decision": {"const": "relabel"}}},
                    "then": {"properties": {"label": {"type": "integer"}}},
                    "else": {"properties": {"label": {"type": "null"}}},
                }
            }
        },
    }
}
PAGE_SIZE = 200
MAX_OFFSET = 10**9


class Reviews:
    """The suspects, their images, and the reviews so far; writes go through one lock, each one atomic."""

    def __init__(self, audit_dir):
        self.folder = Path(audit_dir)
        self.path = self.folder / labels.REVIEWS
        self.issues = labels.read_issues(self.folder / labels.ISSUES)
        self.images = _images(self.folder / labels.IMAGES, len(self.issues))
        self.where = {(i.file, i.index): n for n, i in enumerate(self.issues)}
        self.reviews = {(r["file"], r["index"]): r for r in labels.read_reviews(self.path, missing_ok=True)}
        self.lock = threading.Lock()

    def page(self, offset, limit):
        rows = []
        for n in range(offset, min(offset + limit, len(self.issues))):
            issue = self.issues[n]
            row = {"file": issue.file, "index": issue.index, "given": issue.given, "suggested": issue.suggested}
            row |= {"score": issue.score, "image_png": _png(self.images[n])}
            rows.append(row | {"review": self.reviews.get((issue.file, issue.index))})
        return {"classes": list(CLASS_NAMES), "total": len(self.issues), "reviewed": len(self.reviews), "rows": rows}

    def decide(self, body):
        review = _decision(body, self.where)
        review["time"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        with self.lock:
            self.reviews[(review["file"], review["index"])] = review
            labels.write_reviews(self.path, sorted(self.reviews.values(), key=lambda r: r["time"]))
            return {"saved": review, "reviewed": len(self.reviews)}


def _images(path, count):
    try:
        with np.load(path, allow_pickle=False) as npz:
            images = npz["images"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); run fmnist audit on its folder again") from None
    if images.shape != (count, 28, 28) or images.dtype != np.uint8:
        raise UserError(f"{path}: not the images of the {count} suspects in {labels.ISSUES}")
    return images


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image, "L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decision(body, where):
    """A POSTed decision, checked: a suspect of this audit, a known decision, a class exactly for relabel, a name."""
    if not isinstance(body, dict):
        raise RequestError(400, "send a JSON object: file, index, decision, label, reviewer")
    key = (body.get("file"), body.get("index"))
    if not (isinstance(key[0], str) and type(key[1]) is int) or key not in where:  # a list or dict: unhashable
        raise RequestError(404, "file and index: not a suspect of this audit")
    decision, label, reviewer = body.get("decision"), body.get("label"), body.get("reviewer")
    if decision not in labels.DECISIONS:
        raise RequestError(400, f"decision: one of {', '.join(labels.DECISIONS)}")
    relabel = decision == "relabel"
    if relabel != (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < NUM_CLASSES):
        raise RequestError(400, "label: a class 0-9 with decision relabel, null otherwise")
    if not isinstance(reviewer, str) or not 0 < len(reviewer.strip()) <= 200:
        raise RequestError(400, "reviewer: a name of 1 to 200 characters")
    return {"file": key[0], "index": key[1], "decision": decision, "label": label, "reviewer": reviewer.strip()}


def router(audit_dir):
    """The review routes for AUDIT_DIR; its files are read and checked now (a bad one: the CLI's one line)."""
    state = Reviews(audit_dir)
    web = resources.files("fmnist.serve") / "web"
    # every status the routes answer, for /openapi.json (the review page alone has no other routes to say it)
    routes = APIRouter(responses={status: operate.ERROR_RESPONSES[status] for status in (400, 404, 413, 422)})
    for route, (file, media) in PAGES.items():
        content = web.joinpath(file).read_bytes()
        routes.add_api_route(route, _page(content, media), methods=["GET"], include_in_schema=False)

    @routes.get("/review/suspects")
    async def suspects(offset: str = _whole(0, 0, MAX_OFFSET), limit: str = _whole(PAGE_SIZE, 1, PAGE_SIZE)):
        """A page of suspects, strongest first (an offset past the last: no rows)."""
        start = whole_number(str(offset), "offset", 0, MAX_OFFSET)  # str: the default is a number
        return state.page(start, whole_number(str(limit), "limit", 1, PAGE_SIZE))

    @routes.post("/review/decision", openapi_extra=DECISION_BODY)
    async def decision(request: Request):
        body = await request.body()
        if len(body) > MAX_DECISION_BYTES:
            raise RequestError(413, f"a decision is at most {MAX_DECISION_BYTES} bytes")
        try:
            parsed = json.loads(body)
        except ValueError:
            raise RequestError(400, "not JSON") from None
        return state.decide(parsed)

    return routes


def _whole(default, low, high):
    """A query parameter read as text and checked by `whole_number` (a one-line 400), documented as the whole
    number it must be (FastAPI's own check would answer 422 with a list, not the documented one line)."""
    return Query(default, json_schema_extra={"type": "integer", "minimum": low, "maximum": high})


def _page(content, media):
    async def page():
        return Response(content, media_type=media, headers={"Content-Security-Policy": POLICY})

    return page


def app_for(audit_dir):
    """A server with the review routes only (fmnist serve --review AUDIT_DIR without a run directory)."""
    app = FastAPI(title="fmnist review", summary="check the label audit's suspects")

    @app.exception_handler(RequestError)
    async def refused(_request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    app.include_router(router(audit_dir))
    return app


def run(audit_dir, *, host="127.0.0.1", port=8000):
    """Serve the review page alone until Ctrl-C or SIGTERM."""
    import uvicorn

    app = app_for(audit_dir)  # the audit's files checked before anything heavier is imported

    from fmnist.serve import graceful, limits
    from fmnist.serve.app import listen

    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"reviewing {audit_dir} at http://{shown}:{sock.getsockname()[1]}/review", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5, **limits.config_options()
    )
    graceful.serve(config, sock)  # SIGTERM: what the kernel accepted is answered, then exit 0
    return 0
