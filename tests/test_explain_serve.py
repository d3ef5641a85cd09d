"""The page's heat maps over HTTP: POST /predict?explain=1 (the serve tests' real server and run)."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.predict import explain, explanations
from fmnist.predict import images as image_files
from fmnist.predict.explain import attribute
from fmnist.rundir import checkpoint
from serve_helpers import encoded, product_photo

pytestmark = pytest.mark.slow


def test_heat_maps_come_only_when_asked(server, serve_run, serve_items):
    photo = encoded(product_photo(serve_items[0][5]), "JPEG")
    url = server.url + "/predict"
    plain = httpx.post(url, files=[("files", ("a.jpg", photo))], data={"model": "cnn"}, timeout=30).json()
    assert "heat_png" not in plain["predictions"][0]
    answer = httpx.post(url + "?explain=1", files=[("files", ("a.jpg", photo))], data={"model": "cnn"}, timeout=30)
    entry = answer.json()["predictions"][0]
    assert answer.status_code == 200 and answer.json()["explain_method"] == explain.DEFAULT_METHOD
    heat = np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["heat_png"]))))
    seen = image_files.to_fashion_mnist(image_files.load_image("a.jpg", content=photo))
    maps = attribute.explain(checkpoint.load(serve_run / "cnn")[0], seen[None]).maps
    expected = np.asarray(Image.open(io.BytesIO(base64.b64decode(explanations.heat_png_base64(seen, maps[0])))))
    assert heat.shape == (112, 112, 3) and np.abs(heat.astype(int) - expected).mean() < 1.0
    assert entry["class"] == plain["predictions"][0]["class"]
    bad = httpx.post(url + "?explain=maybe", files=[("files", ("a.jpg", photo))], timeout=30)
    assert bad.status_code == 400 and "explain" in bad.json()["detail"]
