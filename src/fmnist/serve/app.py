"""`fmnist serve`: a web page and an HTTP API for the models of a run directory (FastAPI + uvicorn).

The run directory is loaded and verified once, before the socket is handed to uvicorn, so a bad one is the
CLI's one-line error. Requests are read into memory under limits (`fmnist.serve.uploads`); images are decoded and
converted in worker threads, as many as cores; all inference runs in one more thread (`InferenceWorker`) that
batches the images of concurrent requests, so torch's threads are never oversubscribed on a small machine.
"""

import asyncio
import contextlib
import os
import socket
import sys
import warnings
from importlib import resources

import anyio
import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fmnist.data.dataset import CLASS_NAMES
from fmnist.engine import threads as threads_of
from fmnist.errors import UserError
from fmnist.predict import answers, explanations, photo_trust, segment
from fmnist.serve import cards, graceful, limits, loading, operate, replies
from fmnist.serve.batcher import InferenceWorker
from fmnist.serve.metrics import ServerMetrics
from fmnist.serve.operate import Operation
from fmnist.serve.state import ServingState
from fmnist.serve.uploads import RequestError, read_multipart

MAX_BODY = 20_000_000  # bytes per request: a few phone photos; checked before and while reading
MAX_FILES = 16  # per request
DECODE_THREADS = None  # None: as many as cores (measured in bench/bench_serve.py)
PAGE_FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript")}
PAGE_FILES["/style.css"] = ("style.css", "text/css")
# The page must work offline: the browser may load nothing but this server's own files.
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"
REFUSALS = {400: "bad_request", 413: "too_large", 415: "not_multipart", 503: "not_ready"}  # metric labels
PREDICT_BODY = {  # /predict reads its body itself (see fmnist.serve.uploads), so its form is described by hand
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_FILES,
                        },
                        "model": {"type": "string", "description": "a name from GET /models (default: the best)"},
                        "top_k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                        "explain": {"type": "integer", "enum": [0, 1], "default": 0, "description": "heat maps"},
                        "coverage": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.95},
                        "box": {
                            "type": "string",
                            "pattern": f"{segment.BOX_PATTERN}|^$",  # empty: no box
                            "description": "X0,Y0,X1,Y1: where the garment is, photo pixels (X0 < X1, Y0 < Y1)",
                        },
                    },
                }
            }
        },
    }
}


def infer(key, images):
    """The inference worker's job: a ServedModel -> its assessment (calibrated probabilities, unknown);
    ("explain", ServedModel) -> its heat maps. The model itself, not its name: a reload may rename."""
    if isinstance(key, tuple):
        return explanations.explained_maps(key[1].model, images)
    return answers.assess(key.model, images)


def create_app(served, default, *, max_body=MAX_BODY, max_files=MAX_FILES, threads=1, operation=None):
    """The app for loaded models ({name: ServedModel} from `fmnist.serve.loading.load_run`, or None:
    `operation.loader` loads them)."""
    operation = operation or Operation()
    state, metrics, worker = serving_parts(served, default, operation)
    # Decoding holds the GIL much of the time: more threads than cores only trade it back and forth.
    decoders = anyio.CapacityLimiter(DECODE_THREADS or os.cpu_count() or 1)
    lifespan = lifespan_of(worker, state, operation, threads)
    app = FastAPI(title="fmnist serve", summary="Fashion-MNIST classifiers over HTTP", lifespan=lifespan)
    operate.add_routes(app, state, metrics, operation.keys is not None)
    cards.add_route(app, state)  # GET /models/NAME/card (after add_routes: it documents every error status)

    @app.exception_handler(RequestError)
    async def refused(_request, exc):
        metrics.refusal(REFUSALS.get(exc.status, str(exc.status)))
        # Closing stops a client still sending a refused body; uvicorn would otherwise read it all to discard it.
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers={"Connection": "close"})

    add_page_and_listing(app, state)

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict_images(request: Request):
        """Classify one or more images (multipart field `files`); 422 with the same document if any is bad."""
        served, default = in_service(state)
        uploads = await read_multipart(request.headers, request.stream(), max_body=max_body, max_files=max_files)
        fields = {u.name: u.content.decode("utf-8", "replace") for u in uploads if u.filename is None}
        options = {**request.query_params, **fields}
        one, top_k, coverage = replies.request_options(served, default, options)
        explain, box = replies.wants_explanation(options), replies.request_box(options)
        files = [u for u in uploads if u.filename is not None]
        if not files:
            raise RequestError(400, "no files: send one or more images in the multipart field 'files'")
        convert = replies.convert_uploads
        names, images, failures, cuts = await anyio.to_thread.run_sync(convert, files, box, limiter=decoders)
        if len(images):
            assessment = await asyncio.wrap_future(worker.submit(one, images))
        else:
            assessment = answers.assess(one.model, images)
        assessment = photo_trust.judged(one.model, assessment, [c is not None for c in cuts])  # photos: own threshold
        request.state.model, request.state.images = one.name, len(images)  # for the access log and metrics
        metrics.classified(one.name, len(images), int(np.sum(assessment.unknown)), len(failures))
        doc = replies.document(one, (names, images, cuts), assessment, failures, (top_k, coverage))  # no hop
        if explain and len(images):  # only on request: answers without it never pay for gradients
            maps = await asyncio.wrap_future(worker.submit(("explain", one), images))
            doc = await anyio.to_thread.run_sync(explanations.add_heat_maps, doc, images, maps, limiter=decoders)
        return JSONResponse(doc, status_code=422 if failures else 200)

    operation.add_middleware(app, metrics, open_paths=set(PAGE_FILES))  # last: it names the routes above
    return app


def add_page_and_listing(app, state):
    """The page's files, GET /health and GET /models (the models in service, with their versions)."""
    web = resources.files("fmnist.serve") / "web"
    for route, (file, media) in PAGE_FILES.items():
        content = web.joinpath(file).read_bytes()
        app.add_api_route(route, page_handler(content, media), methods=["GET"], include_in_schema=False)

    @app.get("/health")
    async def health():
        # Which process of `serve --workers N` answered, and the torch threads it runs on.
        return {"status": "ok", "models": list(state.served), "worker": os.getpid(), "threads": torch.get_num_threads()}

    @app.get("/models")
    async def models():
        served, default = in_service(state)
        listed = [one.describe() | {"default": name == default} for name, one in served.items()]
        return {"default": default, "models": listed, "classes": list(CLASS_NAMES)}


def serving_parts(served, default, operation):
    """The app's state (the models in service), its metrics and its inference worker."""
    state = ServingState(operation.loader, None if served is None else (served, default))
    metrics = ServerMetrics()
    worker = InferenceWorker(infer, metrics)
    state.worker_alive = worker.alive
    return state, metrics, worker


def lifespan_of(worker, state, operation, threads):
    """The app's start and stop: the inference worker, the signals, the first load if it is not done yet."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        threads_of.apply(threads)  # process-wide (torch and NumPy's BLAS); only the inference worker computes
        worker.start()
        operation.install_signals(state)
        if state.current is None:
            state.load_in_background()
        yield
        worker.stop()

    return lifespan


def in_service(state):
    """The (served, default) pair a request uses throughout; 503 before the first load has ended."""
    if state.current is None:
        raise RequestError(503, "not ready: the models are still loading (GET /readyz says when)")
    return state.current


def page_handler(content, media):
    async def page():
        return Response(content, media_type=media, headers={"Content-Security-Policy": PAGE_POLICY})

    return page


def listen(host, port):
    """A listening socket, or the one-line error the CLI prints (address in use, unknown host...)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    return sock


def quiet_image_warnings():
    """Images are decoded in threads, where load_image's catch_warnings can race: Pillow's warnings stay out of
    the log for the whole process (its own limits and our checks already refuse what they warn about)."""
    warnings.filterwarnings("ignore", module=r"(PIL|fmnist\.data\.images)(\.|$)")


def run(run_dir, *, host="127.0.0.1", port=8000, runtime=("torch", "auto"), access=operate.OPEN, routers=()):
    """Load and verify the run, then serve until Ctrl-C or SIGTERM. runtime: (torch or onnx, torch's device);
    access: API keys and their rate (fmnist.serve.operate.Access); routers: more routes (the review page of
    `fmnist serve --review`, fmnist.serve.review)."""
    operation = operate.operation_for(access, lambda: loading.load_run(run_dir, runtime), host)
    served, default = loading.load_run(run_dir, runtime)
    quiet_image_warnings()
    sock = listen(host, port)
    app = create_app(served, default, operation=operation)
    for routes in routers:
        app.include_router(routes)
    shown_host = f"[{host}]" if ":" in host else host
    names = ", ".join(name + (" (default)" if name == default else "") for name in served)
    print(
        f"serving {run_dir} on {runtime[0]}: {names} at http://{shown_host}:{sock.getsockname()[1]}/",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5, **limits.config_options()
    )
    graceful.serve(config, sock)  # SIGTERM: what the kernel accepted is answered, then exit 0
    return 0
