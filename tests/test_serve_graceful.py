"""Stopping the server (fmnist.serve.graceful): a connection the kernel accepted before SIGTERM gets its answer.

uvicorn closes its listening socket at the first tick of its loop after the signal; a connection the kernel had
queued a moment before (accepted, to the client, who sent its request) was reset. The loop is kept busy here in
10 ms steps, as a loaded server's is, while clients keep connecting, so such connections exist whenever it stops.
"""

import asyncio
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fmnist.serve import graceful, limits

uvicorn = pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the socket filter and TCP_INFO are Linux's")


def busy_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/busy")
    async def busy():
        for _ in range(120):  # the loop runs, a step of 10 ms at a time (a loaded server's loop)
            time.sleep(0.01)
            await asyncio.sleep(0)
        return {"busy": "done"}

    @app.get("/")
    async def quick():
        return {"ok": True}

    return app


def one_request(port):
    """'answered', 'refused' (never accepted: no connection in 0.5 s, or refused) or 'dropped' (accepted, then
    closed or reset without an answer)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return "refused"
    with sock:
        sock.settimeout(10)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return "answered" if sock.recv(100).startswith(b"HTTP/1.1 200") else "dropped"
        except OSError:
            return "dropped"


def requests_around(port, stop, seconds=0.7):
    """A new connection every 3 ms for `seconds`, calling stop() half-way; their outcomes."""
    with ThreadPoolExecutor(64) as pool:
        outcomes, began, stopped = [], time.monotonic(), False
        while time.monotonic() - began < seconds:
            if not stopped and time.monotonic() - began > seconds / 2:
                stop()
                stopped = True
            outcomes.append(pool.submit(one_request, port))
            time.sleep(0.003)
        return [future.result() for future in outcomes]


def test_sigterm_answers_every_connection_the_kernel_accepted():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    port = sock.getsockname()[1]
    config = uvicorn.Config(busy_app(), log_level="warning", timeout_graceful_shutdown=5, **limits.config_options())
    server = graceful.Server(config, [sock])
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    with socket.create_connection(("127.0.0.1", port)) as busy:
        busy.sendall(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        # handle_exit is what the SIGTERM handler calls (the server runs in a thread here, without handlers)
        results = requests_around(port, lambda: server.handle_exit(signal.SIGTERM, None))
        assert busy.recv(100).startswith(b"HTTP/1.1 200")  # the request under way when the signal came
    thread.join(timeout=15)
    sock.close()
    assert not thread.is_alive()
    assert results.count("dropped") == 0, {kind: results.count(kind) for kind in set(results)}
    assert "answered" in results and "refused" in results


def test_the_review_server_alone_exits_0_on_sigterm(tmp_path):
    import httpx
    import numpy as np

    from fmnist.rundir import labels
    from serve_helpers import running_server

    issues = [labels.Issue("train", 3, 0, 6, 0.01), labels.Issue("test", 8, 4, 2, 0.02)]
    labels.write_issues(tmp_path / labels.ISSUES, issues)
    np.savez_compressed(tmp_path / labels.IMAGES, images=np.zeros((2, 28, 28), np.uint8))
    # running_server sends SIGTERM on leaving and requires exit status 0 and no traceback
    with running_server(None, tmp_path / "log", args=("--review", str(tmp_path)), ready="/review") as url:
        assert httpx.get(url + "/review/suspects").json()["total"] == 2
