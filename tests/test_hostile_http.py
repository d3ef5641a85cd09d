"""Hostile requests against a real `fmnist serve` (issue 20): never a 5xx or a traceback, memory that comes back."""

import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from serve_helpers import blank_png, bomb, encoded, garment, ico_bomb, running_server

pytestmark = pytest.mark.slow  # real servers on the trained compare run


def post(url, files, **data):
    return httpx.post(url + "/predict", files=[("files", f) for f in files], data=data, timeout=60)


def server_log(server):
    return (server.tmpdir.parent / "server.log").read_text()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as fh:
        status = fh.read()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


@pytest.fixture(scope="module")
def big_ico():
    return ico_bomb(9_000, 9_000)  # 81 MP in 80 kB: Pillow would decode it while opening the file


def nan_tiff():
    pixels = np.zeros((40, 30), np.float32)
    pixels[3, 3] = np.nan
    return encoded(Image.fromarray(pixels, "F"), "TIFF")


def raw(url, head, chunks=(), read=True):
    """Send bytes by hand; stop sending once the server answers or closes. (status line, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sent = 0
        for chunk in [head, *chunks]:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        if not read:
            return "", sent
        try:
            return sock.recv(65536).split(b"\r\n")[0].decode(), sent
        except ConnectionResetError:
            return "reset", sent


@pytest.mark.parametrize("value", ["²", "1" * 5000, "٣", "-1", "0", " 3", "3.0", "11", "0x3"])
def test_top_k_must_be_ascii_digits_in_range(server, value):
    answer = post(server.url, [("a.png", encoded(garment()))], top_k=value)
    assert answer.status_code == 400 and "top_k" in answer.json()["detail"], answer.text
    assert len(answer.json()["detail"]) < 200
    by_query = httpx.post(server.url + "/predict", params={"top_k": value}, files={"files": ("a.png", b"x")})
    assert by_query.status_code == 400, by_query.text


@pytest.mark.parametrize("boundary", ["x" * 71, "x" * 300, "a<b>"])
def test_a_boundary_outside_rfc_2046_is_400(server, boundary):
    part = 'Content-Disposition: form-data; name="files"; filename="a.png"\r\n\r\nx'
    body = f"--{boundary}\r\n{part}\r\n--{boundary}--\r\n"
    answer = httpx.post(
        server.url + "/predict",
        content=body.encode("latin-1"),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert answer.status_code == 400 and "boundary" in answer.json()["detail"], answer.text


def test_request_heads_over_the_limits_are_431(server):
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    status, _ = raw(server.url, head + b"X-Big: " + b"a" * 1_000_000 + b"\r\n\r\n")
    assert " 431 " in status
    status, _ = raw(server.url, head + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n")
    assert " 431 " in status
    status, _ = raw(server.url, b"GET /health?" + b"a" * 200_000 + b" HTTP/1.1\r\n\r\n")
    assert " 431 " in status
    # a head that never ends is refused once it passes the limit, not read to its 50 MB
    status, sent = raw(server.url, head + b"X-Slow: ", [b"a" * 65536] * 800)
    assert " 431 " in status and sent < 30_000_000
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_client_that_disconnects_mid_body_leaves_no_traceback(server):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
        b"Content-Length: 5000000\r\n\r\n"
    )
    part = b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' + b"x" * 100_000
    for _ in range(3):
        raw(server.url, head, [part], read=False)
    time.sleep(1.0)
    assert httpx.get(server.url + "/health").status_code == 200
    log = server_log(server)
    assert "Traceback" not in log and "ClientDisconnect" not in log, log


def test_hostile_images_are_422_and_pillow_stays_quiet(server, big_ico):
    psd = b"8BPS\x00\x01" + bytes(6) + b"\x00\x03" + (10).to_bytes(4, "big") * 2 + b"\x00\x08\x00\x03" + bytes(64)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto showpage\n"
    cases = [
        ("bomb.ico", big_ico, "9000x9000 image, over the limit"),
        ("nan.tif", nan_tiff(), "NaN"),
        ("x.psd", psd, "not an image file Pillow can read"),
        ("x.eps", eps, "not an image file Pillow can read"),
        ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image file"),
    ]
    for name, content, reason in cases:
        answer = post(server.url, [(name, content)])
        assert answer.status_code == 422 and reason in answer.json()["detail"], (name, answer.text)
    # an ICO whose PNG is not the size its directory says: Pillow warns, and the warning must not reach the log
    assert post(server.url, [("small.ico", ico_bomb(300, 200))]).status_code == 200
    log = server_log(server)
    assert "not the expected size" not in log and "PIL" not in log and "Traceback" not in log, log


def test_memory_comes_back_after_refused_bombs(serve_run, tmp_path, big_ico):
    good, png_bomb = encoded(garment()), bomb(9_000, 9_000)
    started = []
    with running_server(serve_run, tmp_path / "log", started=started) as url, httpx.Client(timeout=60) as client:
        pid = started[0].pid

        def predict(files):
            return client.post(url + "/predict", files=[("files", f) for f in files]).status_code

        assert all(predict([("g.png", good)]) == 200 for _ in range(20))
        start = rss_mb(pid)
        for i in range(10):  # 50 bombs, five per request, ICO and PNG
            assert predict([(f"{i}-{j}.ico", big_ico if j % 2 else png_bomb) for j in range(5)]) == 422
        assert all(predict([("g.png", good)]) == 200 for _ in range(300))
        end = rss_mb(pid)
    assert end - start < 200, (start, end)


def test_the_cli_predicting_ten_bombs_stays_small(serve_run, tmp_path, big_ico):
    for i in range(10):
        (tmp_path / f"bomb{i}.ico").write_bytes(big_ico)
    (tmp_path / "nan.tif").write_bytes(nan_tiff())
    (tmp_path / "small.ico").write_bytes(ico_bomb(300, 200))  # good, but Pillow warns about its size
    files = [str(tmp_path / f"bomb{i}.ico") for i in range(10)] + [str(tmp_path / n) for n in ("nan.tif", "small.ico")]
    measure = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(done.stderr, end='')"
    )
    command = [sys.executable, "-m", "fmnist", "predict", str(serve_run / "cnn"), *files]
    out = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True, timeout=120).stdout
    first, *errors = out.splitlines()
    code, peak_kb = map(int, first.split())
    assert code == 2 and len(errors) == 11 and all(e.startswith("fmnist: error: ") for e in errors), out
    assert "PIL" not in out and "Traceback" not in out
    assert peak_kb / 1024 < 800, peak_kb


def test_a_real_png_over_the_pixel_limit_is_refused_before_decoding(server):
    png = blank_png(8_000, 6_000)  # 48 MP of real, decodable data
    answer = post(server.url, [("large.png", png)])
    assert answer.status_code == 422 and "over the limit of 40,000,000" in answer.json()["detail"]
    assert len(png) < 1_000_000  # small on the wire
