"""`fmnist serve` as a client sees it: a real server in a subprocess, called over HTTP on 127.0.0.1."""

import base64
import concurrent.futures
import io
import json
import shutil
import socket
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.cli.parser import main
from fmnist.data.dataset import CLASS_NAMES
from fmnist.predict import answers, segment
from fmnist.rundir import checkpoint
from serve_helpers import SERVE_MODELS, bomb, encoded, garment, noise, product_photo, running_server

pytestmark = pytest.mark.slow  # a real server on a freshly trained run: make test-fast leaves it out

MAX_BODY = 20_000_000  # the server's limits (fmnist.serve.app), written out: a test of them must not borrow them
MAX_FILES = 16


def post(url, files, **data):
    return httpx.post(url + "/predict", files=[("files", f) for f in files], data=data, timeout=30)


@pytest.fixture(scope="module")
def models(serve_run):
    return {name: checkpoint.load(serve_run / name)[0] for name in SERVE_MODELS}


def expected(model, content):
    """What the model says about an image in this process: (28x28 image, probabilities)."""
    image = segment.convert_file("x", content=content).image
    return image, answers.probabilities(model, image[None])[0]


def check_answer(entry, model, content, top_k=3):
    image, probs = expected(model, content)
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image_png"]))))
    np.testing.assert_array_equal(shown, image)
    got = {t["class_index"]: t["probability"] for t in entry["top_k"]}
    assert len(got) == top_k and entry["class_index"] == entry["top_k"][0]["class_index"]
    for c, p in got.items():
        assert p == pytest.approx(probs[c], abs=1e-5)
    ranked = np.sort(probs)[::-1]
    if ranked[0] - ranked[1] > 1e-4:  # a near tie may order either way after batching
        assert entry["class"] == CLASS_NAMES[int(np.argmax(probs))]


# -- endpoints -------------------------------------------------------------------------------------------


def test_health_models_page_and_docs(server, serve_run):
    health = httpx.get(server.url + "/health").json()
    assert health == {"status": "ok", "models": list(SERVE_MODELS), "worker": health["worker"], "threads": 1}
    listing = httpx.get(server.url + "/models").json()
    metrics = {n: json.loads((serve_run / n / "metrics.json").read_text()) for n in SERVE_MODELS}
    assert listing["default"] == max(SERVE_MODELS, key=lambda n: metrics[n]["val_accuracy"])
    assert listing["classes"] == list(CLASS_NAMES)
    for entry in listing["models"]:
        assert entry["test_accuracy"] == metrics[entry["name"]]["test_accuracy"]
        assert entry["parameters"] == metrics[entry["name"]]["parameters"] > 0
        assert entry["default"] == (entry["name"] == listing["default"])
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/app.js"' in page.text and 'id="model"' in page.text and "http" not in page.text
    for asset in ("/app.js", "/style.css"):
        response = httpx.get(server.url + asset)
        assert response.status_code == 200 and "http" not in response.text
    assert httpx.get(server.url + "/docs").status_code == 200
    schema = httpx.get(server.url + "/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]


def test_predict_matches_the_model_in_process(server, serve_items, models):
    images, _ = serve_items
    photos = [encoded(product_photo(images[i]), "JPEG", quality=90) for i in range(3)]
    default = httpx.get(server.url + "/models").json()["default"]
    answer = post(server.url, [(f"photo {i} ü.jpg", p) for i, p in enumerate(photos)])
    assert answer.status_code == 200
    doc = answer.json()
    assert doc["model"] == default and doc["errors"] == []
    assert [e["file"] for e in doc["predictions"]] == [f"photo {i} ü.jpg" for i in range(3)]
    for entry, photo in zip(doc["predictions"], photos, strict=True):
        check_answer(entry, models[default], photo)
    for name in SERVE_MODELS:  # chosen by form field and by query parameter
        by_form = post(server.url, [("a.jpg", photos[0])], model=name, top_k="5").json()
        assert by_form["model"] == name
        check_answer(by_form["predictions"][0], models[name], photos[0], top_k=5)
        by_query = httpx.post(f"{server.url}/predict?model={name}&top_k=1", files={"files": ("a.jpg", photos[0])})
        assert by_query.json()["model"] == name and len(by_query.json()["predictions"][0]["top_k"]) == 1


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("deep.png", lambda: encoded(Image.fromarray(np.asarray(garment().convert("L")).astype(np.uint16) * 257))),
        ("cmyk.jpg", lambda: encoded(garment().convert("CMYK"), "JPEG", quality=95)),
        ("anim.gif", lambda: encoded(garment(), "GIF", save_all=True, append_images=[garment().rotate(90)])),
    ],
)
def test_unusual_images_are_converted_as_predict_does(server, models, name, make):
    default = httpx.get(server.url + "/models").json()["default"]
    answer = post(server.url, [(name, make())])
    assert answer.status_code == 200
    check_answer(answer.json()["predictions"][0], models[default], make())


# -- bad input -------------------------------------------------------------------------------------------


def one_line_error(response, status, *fragments):
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert "\n" not in detail and all(f in detail for f in fragments), detail
    return response.json()


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.png", b"this is a text file, not a picture\n" * 5, "not an image file Pillow can read"),
        ("cut.png", encoded(noise())[:6000], "cannot decode image"),
        ("cut.jpg", encoded(noise(), "JPEG")[:2000], "cannot decode image"),
        ("bomb.png", bomb(50_000, 50_000), "refused as a possible decompression bomb"),
        ("large.png", bomb(7_000, 7_000), "7000x7000 pixels is over the limit of 40,000,000"),
        ("empty.png", b"", "empty file"),
    ],
)
def test_bad_images_are_422_naming_the_file(server, name, content, reason):
    doc = one_line_error(post(server.url, [(name, content)]), 422, name, reason)
    assert [e["file"] for e in doc["errors"]] == [name] and doc["errors"][0]["error"].startswith(reason)
    assert doc["predictions"] == []


def test_a_bad_file_does_not_hide_the_good_ones(server):
    doc = one_line_error(post(server.url, [("good.png", encoded(garment())), ("bad.png", b"nope")]), 422, "bad.png")
    assert [p["file"] for p in doc["predictions"]] == ["good.png"]
    assert doc["errors"] == [{"file": "bad.png", "error": "not an image file Pillow can read"}]


def test_bad_requests_are_4xx_with_a_reason(server):
    png = encoded(garment())
    one_line_error(post(server.url, [(f"{i}.png", png) for i in range(MAX_FILES + 1)]), 400, "too many files")
    one_line_error(httpx.post(server.url + "/predict", files={"model": (None, "cnn")}), 400, "no files")
    one_line_error(httpx.post(server.url + "/predict", data={"files": "x"}), 415, "multipart/form-data")
    one_line_error(httpx.post(server.url + "/predict", content=b"{}"), 415, "multipart/form-data")
    one_line_error(post(server.url, [("a.png", png)], model="resnet"), 400, "'resnet'", "cnn, scratch-mlp")
    one_line_error(post(server.url, [("a.png", png)], top_k="11"), 400, "top_k '11'")
    cut = httpx.post(
        server.url + "/predict",
        content=b'--xx\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n' + png,
        headers={"content-type": "multipart/form-data; boundary=xx"},
    )
    one_line_error(cut, 400, "malformed multipart body")
    assert len(post(server.url, [(f"{i}.png", png) for i in range(MAX_FILES)]).json()["predictions"]) == MAX_FILES


def raw_request(url, head, body_chunks=()):
    """Send a request by hand on a socket; stop sending once the server answers. (status line, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        sent = 0
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        return sock.recv(65536).split(b"\r\n")[0].decode(), sent


def test_body_over_the_limit_is_413_before_it_is_read(server):
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
    status, _ = raw_request(server.url, head + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))  # no body sent
    assert " 413 " in status

    part = b'--xx\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n\r\n'
    chunks = [part + b"x" * (1_000_000 - len(part))] + [b"x" * 1_000_000] * 99
    chunked = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks]
    status, sent = raw_request(server.url, head + b"Transfer-Encoding: chunked\r\n\r\n", chunked)
    assert " 413 " in status and sent < 50_000_000  # answered and cut off long before the 100 MB


def test_uploads_never_touch_disk(server):
    big = encoded(noise(1200))  # ~4 MB: Starlette's own parser would spool it to TMPDIR
    assert len(big) > 2_000_000
    assert post(server.url, [("big.png", big)]).status_code == 200
    assert list(server.tmpdir.iterdir()) == []


# -- concurrency -----------------------------------------------------------------------------------------


def test_eight_clients_fifty_requests_each_all_right(server, serve_items, models):
    images, _ = serve_items
    photos = [encoded(product_photo(images[i], factor=4), "JPEG", quality=90) for i in range(40)]
    truth = {(n, i): expected(models[n], p) for n in SERVE_MODELS for i, p in enumerate(photos)}

    def client(number):
        answers = []
        with httpx.Client(base_url=server.url, timeout=30) as session:
            for request in range(50):
                index, name = (number * 50 + request) % len(photos), SERVE_MODELS[request % 2]
                response = session.post(
                    "/predict", files={"files": (f"{index}.jpg", photos[index])}, data={"model": name}
                )
                answers.append((name, index, response.status_code, response.json()))
        return answers

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(client, range(8)) for a in batch]
    assert len(answers) == 400
    for name, index, status, doc in answers:
        assert status == 200 and doc["model"] == name and doc["predictions"][0]["file"] == f"{index}.jpg"
        image, probs = truth[name, index]
        entry = doc["predictions"][0]
        assert [t["probability"] for t in entry["top_k"]] == pytest.approx(np.sort(probs)[::-1][:3], abs=1e-5)
        assert np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image_png"])))).tobytes() == image.tobytes()


# -- the run directory -----------------------------------------------------------------------------------


def test_a_single_model_run_is_served(serve_run, tmp_path):
    with running_server(serve_run / "cnn", tmp_path / "log") as url:
        listing = httpx.get(url + "/models").json()
        assert listing["default"] == "cnn" and [m["name"] for m in listing["models"]] == ["cnn"]
        assert post(url, [("a.png", encoded(garment()))]).json()["model"] == "cnn"


def damaged(serve_run, tmp_path, how):
    target = tmp_path / "run"
    if how == "missing":
        return target
    shutil.copytree(serve_run, target)
    if how == "edited weights":
        weights = next((target / "cnn").glob("model.*/*.safetensors"))
        weights.write_bytes(weights.read_bytes()[:-8])
    elif how == "no metrics":
        (target / "scratch-mlp" / "metrics.json").unlink()
    elif how == "empty folder":
        shutil.rmtree(target)
        target.mkdir()
    return target


@pytest.mark.parametrize(
    ("how", "fragment"),
    [
        ("missing", "no such model"),
        ("empty folder", "not a model"),
        ("edited weights", "checksum differs"),
        ("no metrics", "metrics.json: missing"),
    ],
)
def test_a_bad_run_dir_is_one_line_at_start(serve_run, tmp_path, capsys, how, fragment):
    target = damaged(serve_run, tmp_path, how)
    assert main(["serve", str(target), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: ") and fragment in err[0], err


def test_the_real_command_exits_2_on_a_bad_run_dir_and_a_busy_port(serve_run, tmp_path, capsys):
    command = [sys.executable, "-m", "fmnist", "serve"]
    bad = damaged(serve_run, tmp_path, "edited weights")
    done = subprocess.run([*command, str(bad), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "checksum differs" in done.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert main(["serve", str(serve_run), "--port", port]) == 2
    assert f"--port {port}: cannot listen there (Address already in use)" in capsys.readouterr().err
