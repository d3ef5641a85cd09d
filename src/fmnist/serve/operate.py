"""The operator's routes of `fmnist serve`: probes, metrics, reload; and the error answers the schema documents.

/livez: the process answers (always 200). /readyz: 200 once the models are in service with the inference worker
running, 503 before and from SIGTERM on. /metrics: Prometheus text (fmnist.serve.metrics). POST /admin/reload:
load and verify the run directory again, then swap (fmnist.serve.state); needs --api-key-file, as every call
but the probes does. Under --workers it reloads the worker that answers, then asks the parent (SIGHUP) to
replace every worker the same way: one by one, each new one in service before the old one stops.
"""

import dataclasses
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable

import anyio
from fastapi.responses import JSONResponse, Response

from fmnist.errors import UserError
from fmnist.serve import keys as api_keys
from fmnist.serve import metrics as server_metrics
from fmnist.serve.observe import AccessLog, Observed
from fmnist.serve.state import versions

WORKER_OF_MANY = "FMNIST_SERVE_WORKER"  # set in the workers of `serve --workers N`

_DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}}}}}
# Every status the server answers with besides 200, for /openapi.json (a client generated from it knows them all).
ERROR_RESPONSES = {
    status: {"description": description, "content": _DETAIL}
    for status, description in {
        400: "a malformed request: bad multipart body, unknown model, top_k out of range...",
        401: "no valid API key (only with --api-key-file): send Authorization: Bearer KEY",
        403: "reloading over HTTP needs --api-key-file",
        404: "no such path",
        405: "the path does not take this method",
        409: "the reload failed: the run no longer loads; the previous models keep serving",
        413: "the body is over the size limit",
        415: "not multipart/form-data",
        422: "some images could not be read (the document names them) or a malformed parameter",
        429: "over this key's request rate: retry after the Retry-After header's seconds",
        431: "the request line and headers are over the limits",
        503: "not ready: the models are loading, or the server is shutting down",
    }.items()
}


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may call: `key_file` (one key per line; None: anyone) and each key's `rate` in requests a second."""

    key_file: str | None = None
    rate: float = 20.0


OPEN = Access()  # no keys: anyone who reaches the server may call (it listens on loopback by default)


def operation_for(access, loader, host):
    """The Operation of a server on `host`: keys read (a bad file is the CLI's one-line error), the access log on
    stderr; without keys beyond loopback, a one-line warning."""
    if access.rate <= 0:
        raise UserError(f"--rate-limit {access.rate:g}: must be a positive number of requests a second")
    keys = None if access.key_file is None else api_keys.read_key_file(access.key_file)
    if keys is None and not loopback(host):
        print(
            f"fmnist serve: warning: listening on {host} without --api-key-file: anyone who reaches it may call",
            file=sys.stderr,
            flush=True,
        )
    return Operation(keys=keys, rate=access.rate, log=sys.stderr, loader=loader)


def loopback(host):
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class Operation:
    """How a server is run for others: its keys (SHA-256 digests; None: open), each key's rate (requests a
    second, bursts of twice that), where its access log goes (None: nowhere), what a reload loads."""

    keys: frozenset | None = None
    rate: float = 20.0
    log: object = None
    loader: Callable | None = None

    def add_middleware(self, app, metrics, open_paths=()):
        """Keys inside, observation outside: a 401 or 429 is counted and logged like any answer."""
        if self.keys is not None:
            ring, buckets = api_keys.KeyRing(self.keys), api_keys.TokenBuckets(self.rate, 2 * self.rate)
            app.add_middleware(
                api_keys.KeyCheck, ring=ring, buckets=buckets, open_paths=api_keys.OPEN_PATHS | set(open_paths)
            )
        log = None if self.log is None else AccessLog(self.log)
        known = frozenset(route.path for route in app.routes if "{" not in route.path)  # those added so far
        app.add_middleware(Observed, metrics=metrics, log=log, known_paths=known)

    def install_signals(self, state):
        """SIGHUP reloads, SIGTERM first marks the server draining; only the main thread may set handlers."""
        if threading.current_thread() is threading.main_thread():
            state.drain_on_sigterm()
            signal.signal(signal.SIGHUP, lambda _signum, _frame: state.on_sighup())


def add_routes(routes, state, metrics, keys_required):
    """/livez, /readyz, /metrics and /admin/reload on the app `routes`; the error answers every route documents."""
    routes.router.responses = ERROR_RESPONSES  # for the routes added from now on (GET /openapi.json)
    routes.state.serving = state  # for whoever holds the app: the models in service, readiness

    @routes.get("/livez", responses={200: {"description": "the process answers"}})
    async def livez():
        return {"status": "alive"}

    @routes.get("/readyz", responses={503: ERROR_RESPONSES[503]})
    async def readyz():
        ready, why = state.readiness()
        return JSONResponse({"status": why} if ready else {"detail": why}, status_code=200 if ready else 503)

    @routes.get("/metrics", response_class=Response, responses={200: {"content": {server_metrics.CONTENT_TYPE: {}}}})
    async def metrics_text():
        return Response(metrics.exposition(), media_type=server_metrics.CONTENT_TYPE)

    @routes.post("/admin/reload")
    async def reload():
        """Load and verify the run directory again, then serve it; on failure the old models keep serving."""
        if not keys_required:
            return JSONResponse({"detail": "reloading over HTTP needs --api-key-file; send SIGHUP"}, status_code=403)
        try:
            served, default = await anyio.to_thread.run_sync(state.reload)
        except (UserError, OSError, ValueError, RuntimeError) as exc:  # whatever stops the run loading: kept old
            return JSONResponse({"detail": f"reload failed, still serving the previous models: {exc}"}, 409)
        if os.environ.get(WORKER_OF_MANY):
            os.kill(os.getppid(), signal.SIGHUP)  # the supervisor replaces every worker, each loading anew
        return {"default": default, "models": versions(served)}
