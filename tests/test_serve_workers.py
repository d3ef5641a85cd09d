"""`fmnist serve --workers N`: N processes behind one port, each with its share of the cores."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from fmnist.predict import answers, images
from fmnist.rundir import checkpoint
from fmnist.serve import workers
from serve_helpers import encoded, free_port, product_photo

httpx = pytest.importorskip("httpx")


def test_the_workers_share_the_cores_without_oversubscribing():
    assert [workers.threads_per_worker(n, cores=8) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_a_bad_run_dir_is_one_line_before_anything_listens(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "fmnist", "serve", str(tmp_path / "nothing"), "--workers", "2"]
    done = subprocess.run([*command, "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


async def _healths(url, connections):
    """/health over `connections` connections opened at once: each answered by whichever worker accepted it."""

    async def one():
        async with httpx.AsyncClient() as client:
            return (await client.get(url + "/health", timeout=10)).json()

    return await asyncio.gather(*(one() for _ in range(connections)))


@pytest.mark.slow
def test_two_workers_answer_on_one_port_each_with_its_own_threads(serve_run, serve_items, tmp_path):
    port, url = free_port(), None
    log = tmp_path / "server.log"
    with open(log, "wb") as sink:
        command = [sys.executable, "-m", "fmnist", "serve", str(serve_run), "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        seen = {}
        while len(seen) < 2:  # both workers are up once both have answered
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            with contextlib.suppress(httpx.TransportError):
                seen |= {h["worker"]: h for h in asyncio.run(_healths(url, 8))}
            time.sleep(0.1)
        share = max(1, len(os.sched_getaffinity(0)) // 2)
        assert server.pid not in seen and all(h["threads"] == share for h in seen.values())
        photo = encoded(product_photo(serve_items[0][0]), "JPEG")
        answer = httpx.post(url + "/predict", files={"files": ("shirt.jpg", photo, "image/jpeg")}, timeout=30)
        assert answer.status_code == 200, answer.text
        model, _ = checkpoint.load(serve_run / answer.json()["model"])
        seen_image = images.to_fashion_mnist(images.load_image("shirt.jpg", content=photo))
        expected = int(answers.probabilities(model, seen_image[None]).argmax())
        assert [p["class_index"] for p in answer.json()["predictions"]] == [expected]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text()
    for pid in seen:  # the supervisor took its workers with it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
