"""What every request leaves behind: its metrics, one JSON line in the access log, its request id.

`Observed` is plain ASGI middleware around the whole app, so it sees every answer, refusals and 401s included.
A handler adds what only it knows (the model that answered, how many images) to `request.state`. The access log
never holds an image or a file name: time, request id, method, endpoint, status, model, images, milliseconds.
"""

import datetime
import json
import re
import time
import uuid

REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # a client's id is echoed only if it is this plain
HEADER = b"x-request-id"


def request_id_of(headers):
    """The client's X-Request-ID when it is a plain token, else a fresh one."""
    for name, value in headers:
        if name.lower() == HEADER:
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def endpoint_of(scope, known_paths):
    """The route's template (/predict, /models...), never the raw path: a label of few values. A request refused
    before routing (401, 429) is named by its path when that is one of the app's own."""
    route = scope.get("route")
    if route is not None:
        return route.path
    return scope.get("path") if scope.get("path") in known_paths else "unmatched"


class AccessLog:
    """One JSON object per line on `stream` (the server's stderr), flushed at once."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, **fields):
        moment = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.stream.write(json.dumps({"time": moment, **fields}, ensure_ascii=True) + "\n")
        self.stream.flush()


class Observed:
    """ASGI middleware: request id in and out, the request counted and timed, one access-log line."""

    def __init__(self, app, metrics, log, known_paths=frozenset()):
        self.app, self.metrics, self.log, self.known_paths = app, metrics, log, known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = request_id_of(scope.get("headers", ()))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = [500]  # what the client gets if the app fails before answering

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), (HEADER, request_id.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - start
            endpoint, model = endpoint_of(scope, self.known_paths), state.get("model")
            self.metrics.answered(endpoint, status[0], model, seconds)
            if self.log is not None:
                fields = {"request_id": request_id, "method": scope.get("method"), "endpoint": endpoint}
                fields |= {"status": status[0], "model": model, "images": state.get("images", 0)}
                self.log.write(**fields, ms=round(seconds * 1000, 2))
