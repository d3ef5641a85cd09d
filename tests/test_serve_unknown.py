"""POST /predict says whether each image looks like any Fashion-MNIST class: "unknown" and "ood_score"."""

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.models import trust
from fmnist.predict import segment
from fmnist.rundir import checkpoint
from serve_helpers import encoded, noise

pytestmark = pytest.mark.slow  # the shared real server on the freshly trained run


def test_every_result_says_unknown_and_its_score(server, serve_run, serve_items):
    items, _ = serve_items
    uploads = [("noise.png", encoded(noise())), ("flat.png", encoded(Image.new("RGB", (90, 60), (200, 30, 90))))]
    uploads += [(f"item-{i}.png", encoded(Image.fromarray(items[i]))) for i in range(12)]
    answer = httpx.post(
        server.url + "/predict", files=[("files", f) for f in uploads], data={"model": "cnn"}, timeout=30
    ).json()
    entries = {entry["file"]: entry for entry in answer["predictions"]}
    assert all(isinstance(e["unknown"], bool) and isinstance(e["ood_score"], float) for e in entries.values())
    assert entries["noise.png"]["unknown"] is True
    assert sum(entries[f"item-{i}.png"]["unknown"] for i in range(12)) <= 2  # about 5 % of clothing is
    model, _ = checkpoint.load(serve_run / "cnn")
    seen = np.stack([segment.convert_file(name, content=data).image for name, data in uploads])
    mine = trust.assess(model, seen)
    got = np.array([entries[name]["ood_score"] for name, _ in uploads])
    np.testing.assert_allclose(got, mine.ood_score, atol=1e-3)
    assert [entries[name]["unknown"] for name, _ in uploads] == list(mine.unknown)
