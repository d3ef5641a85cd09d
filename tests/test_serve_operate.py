"""Operating `fmnist serve` (issue 35): /metrics, probes, keys and rates, versions, reload, SIGTERM, the schema."""

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fmnist.serve import keys as api_keys
from fmnist.serve.app import create_app
from fmnist.serve.operate import Operation
from serve_helpers import encoded, free_port, garment, running_server

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
KEY = "key-for-the-tests-0123456789"


def requests_counted(url, headers=None):
    """{(endpoint, status, model): count} from /metrics, read with the Prometheus client's own parser."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    counts = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fmnist_requests":
            for sample in family.samples:
                if sample.name == "fmnist_requests_total":
                    labels = sample.labels
                    counts[labels["endpoint"], labels["status"], labels["model"]] = sample.value
    return counts


def send_mix(url, headers=None):
    """Requests of several kinds; returns {(endpoint, status): how many were sent}."""
    photo = encoded(garment())
    sent = {}
    for files, status in (([photo], 200), ([photo, photo], 200), ([b"not an image"], 422)):
        named = [("files", (f"{i}.png", content, "image/png")) for i, content in enumerate(files)]
        answer = httpx.post(url + "/predict", files=named, headers=headers, timeout=30)
        assert answer.status_code == status, answer.text
        sent["/predict", str(status)] = sent.get(("/predict", str(status)), 0) + 1
    assert httpx.post(url + "/predict", content=b"x", headers=headers, timeout=10).status_code == 415
    assert httpx.get(url + "/models", headers=headers, timeout=10).status_code == 200
    return sent | {("/predict", "415"): 1, ("/models", "200"): 1}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_count_every_request_with_one_worker_or_two(serve_run, tmp_path, workers):
    args = ("--workers", "2") if workers == 2 else ()
    with running_server(serve_run, tmp_path / "log", args=args) as url:
        before = requests_counted(url)
        sent = {}
        for _ in range(3):  # enough connections that both workers answer some
            for key, count in send_mix(url).items():
                sent[key] = sent.get(key, 0) + count
        after = requests_counted(url)
    grown = {}
    for (endpoint, status, _), value in after.items():
        grown[endpoint, status] = grown.get((endpoint, status), 0) + value
    for (endpoint, status, _), value in before.items():
        grown[endpoint, status] -= value
    for key, count in sent.items():
        assert grown[key] == count, (key, grown)
    log = (tmp_path / "log").read_text()
    assert log.count('"endpoint": "/predict"') == sum(n for (e, _), n in sent.items() if e == "/predict")


@pytest.mark.slow
def test_keys_rates_versions_and_reload(serve_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(serve_run / "scratch-mlp", run)
    (tmp_path / "keys").write_text(f"# the tests' key\n{KEY}\n")
    args = ("--api-key-file", str(tmp_path / "keys"), "--rate-limit", "1")  # bursts of 2
    right, wrong = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {KEY[:-1]}x"}
    with running_server(run, tmp_path / "log", args=args) as url:
        assert httpx.get(url + "/livez").status_code == 200 and httpx.get(url + "/readyz").status_code == 200
        for headers in ({}, wrong, {"Authorization": KEY}):
            answer = httpx.get(url + "/models", headers=headers)
            assert answer.status_code == 401 and "API key" in answer.json()["detail"]
        models = httpx.get(url + "/models", headers=right).json()
        version = models["models"][0]["version"]
        assert len(version) == 12
        answers = [httpx.get(url + "/models", headers=right) for _ in range(8)]
        limited = [a for a in answers if a.status_code == 429]
        assert len(limited) >= 8 - 2 - 4 and all(int(a.headers["Retry-After"]) >= 1 for a in limited)  # 4 s refill
        time.sleep(2.1)
        photo = [("files", ("a.png", encoded(garment()), "image/png"))]
        answer = httpx.post(url + "/predict", files=photo, headers=right | {"X-Request-ID": "abc-123"})
        assert answer.json()["version"] == version and answer.headers["X-Request-ID"] == "abc-123"
        weights = next(run.glob("model.*/weights.safetensors"))
        weights.write_bytes(weights.read_bytes()[:-1] + b"!")  # a broken checkpoint on disk: refused, old kept
        time.sleep(1.1)
        refused = httpx.post(url + "/admin/reload", headers=right, timeout=60)
        assert refused.status_code == 409 and "checksum" in refused.json()["detail"]
        time.sleep(1.1)
        answer = httpx.post(url + "/predict", files=photo, headers=right)
        assert answer.status_code == 200 and answer.json()["version"] == version
    log = (tmp_path / "log").read_text()
    assert KEY not in log and "abc-123" in log


@contextlib.contextmanager
def in_process_server(app):
    """uvicorn in a thread of this process, on a free port; yields the base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    while not server.started:
        time.sleep(0.05)
    try:
        yield url, server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_readyz_is_503_until_the_models_are_loaded_and_while_draining(serve_run):
    from fmnist.serve.loading import load_run

    loaded = threading.Event()

    def loader():
        loaded.wait(30)
        return load_run(serve_run / "scratch-mlp")

    app = create_app(None, None, operation=Operation(loader=loader))
    with in_process_server(app) as (url, _):
        assert httpx.get(url + "/livez").status_code == 200
        assert httpx.get(url + "/readyz").status_code == 503
        assert httpx.get(url + "/models").status_code == 503
        loaded.set()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert httpx.get(url + "/models").json()["default"] == "scratch-mlp"
        app.state.serving.draining = True  # what SIGTERM sets (fmnist.serve.state.ServingState.drain_on_sigterm)
        answer = httpx.get(url + "/readyz")
        assert answer.status_code == 503 and answer.json()["detail"] == "shutting down"


def test_keys_are_kept_hashed_and_buckets_refill():
    ring = api_keys.KeyRing([api_keys.digest(KEY)])
    assert ring.match(f"Bearer {KEY}") and not ring.match(f"Bearer {KEY}x") and not ring.match(KEY)
    assert KEY.encode() not in repr(ring.digests).encode()
    buckets = api_keys.TokenBuckets(rate=2, burst=4)
    waits = [buckets.take("k", now=100.0) for _ in range(5)]
    assert waits[:4] == [0, 0, 0, 0] and waits[4] == pytest.approx(0.5)
    assert buckets.take("k", now=100.5) == 0 and buckets.take("other", now=100.5) == 0


def test_the_schema_documents_every_status_the_server_sends(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    documented = set(spec["paths"]["/predict"]["post"]["responses"])
    assert {"200", "400", "401", "413", "415", "422", "429", "431", "503"} <= documented
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]


@pytest.mark.slow
def test_sigterm_under_load_answers_what_was_accepted_and_exits_0(serve_run, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "fmnist", "serve", str(serve_run), "--port", str(port)]
    with open(tmp_path / "log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        time.sleep(0.1)
    photo = [("files", (f"{i}.png", encoded(garment()), "image/png")) for i in range(8)]

    def one(_):
        try:
            return httpx.post(url + "/predict?explain=1", files=photo, timeout=30).status_code
        except httpx.ConnectError:
            return "refused"  # never accepted: the socket was closed already

    with ThreadPoolExecutor(16) as pool:
        results = pool.map(one, range(16))
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        results = list(results)
    assert process.wait(timeout=10) == 0
    assert 200 in results and set(results) <= {200, "refused"}, results
    assert "Traceback" not in (tmp_path / "log").read_text()
