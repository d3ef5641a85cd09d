"""People's own photos (issue 32): the garment cut from its background, the box, HEIC and AVIF."""

import io
import struct
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from fmnist.errors import UserError
from fmnist.predict import answers, composites, segment
from fmnist.predict import images as image_files
from fmnist.predict.outliers import product_photo


def item(kind):
    """A small synthetic 28x28 item (light on black, as in the dataset): a top, trousers or a bag."""
    x = np.zeros((28, 28), np.uint8)
    if kind == "top":
        x[6:26, 8:20] = 180
        x[6:14, 2:26] = 200
    elif kind == "trousers":
        x[3:26, 7:12] = 170
        x[3:26, 16:21] = 170
        x[3:8, 7:21] = 170
    else:
        x[12:26, 4:24] = 210
        x[5:13, 9:11] = x[5:13, 17:19] = x[5:7, 9:19] = 150
    return x


def runs(row, level=60):
    """How many separate stretches of a 28x28 image's row are brighter than `level` (two for trousers' legs)."""
    bright = np.concatenate([[0], (row > level).astype(int), [0]])
    return int((np.diff(bright) == 1).sum())


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("kind", composites.KINDS)
def test_grabcut_finds_the_garment_on_every_background_kind(kind):
    rng = np.random.default_rng(["top", "trousers", "bag"].index("top") + composites.KINDS.index(kind))
    scores = []
    for shape in ("top", "trousers", "bag"):
        data, truth = composites.composite(item(shape), kind, rng, long_side=400)
        picture = image_files.load_image("photo.jpg", content=data)
        small, _ = segment._working_copy(picture, None)
        found = segment.garment_mask(small)
        truth_small = np.asarray(Image.fromarray(truth).resize(small.shape[1::-1], Image.Resampling.NEAREST))
        scores.append(iou(found, truth_small))
    assert np.median(scores) >= 0.75, scores


def test_product_shots_and_dataset_images_keep_the_exact_steps():
    rng = np.random.default_rng(0)
    shot = product_photo(item("top"), rng)
    assert segment.is_plain(np.asarray(shot.convert("RGB")))
    seen = segment.convert(shot)
    assert seen.cutout is None
    np.testing.assert_array_equal(seen.image, image_files.to_fashion_mnist(shot))
    dataset_like = Image.fromarray(item("bag"))
    np.testing.assert_array_equal(segment.convert(dataset_like).image, item("bag"))


def test_a_garment_on_stripes_is_cut_out_and_put_on_white():
    data, _ = composites.composite(item("trousers"), "texture", np.random.default_rng(3), long_side=400)
    picture = image_files.load_image("stripes.jpg", content=data)
    assert not segment.is_plain(np.asarray(picture))
    seen = segment.convert(picture)
    assert seen.cutout is not None and np.asarray(seen.cutout)[0, 0] == 255
    assert (seen.image[:, :3] < 40).all() and (seen.image[:, -3:] < 40).all()  # no stripes beside the trousers
    assert runs(seen.image[20]) == 2  # two legs


def two_garments(tmp_path):
    """A 600x300 photo on a beige sheet: trousers on the left, a bag on the right; and its file."""
    rng = np.random.default_rng(7)
    cloth = Image.new("RGB", (600, 300), (205, 190, 170))
    left, _ = composites.place(cloth.crop((0, 0, 300, 300)), item("trousers"), rng)
    right, _ = composites.place(cloth.crop((300, 0, 600, 300)), item("bag"), rng)
    photo = Image.new("RGB", (600, 300))
    photo.paste(left, (0, 0))
    photo.paste(right, (300, 0))
    path = tmp_path / "two.png"
    photo.save(path)
    return path


def test_a_box_chooses_what_the_model_sees(tmp_path):
    path = two_garments(tmp_path)
    left = segment.convert_file(path, box=(0, 0, 300, 300))
    right = segment.convert_file(path, box=(300, 0, 600, 300))
    assert left.cutout is not None and right.cutout is not None
    assert runs(left.image[20]) == 2 and runs(right.image[20]) == 1  # two legs; the bag, one block


def test_bad_boxes_are_one_line_errors(tmp_path):
    path = two_garments(tmp_path)
    for text in ("1,2,3", "a,b,c,d", "10,10,5,50", "-1,0,5,5", "\u00b2,0,5,5", "9" * 5000 + ",0,5,5", "1 2,3,4,5"):
        with pytest.raises(UserError, match="box"):
            segment.parse_box(text)
    with pytest.raises(image_files.ImageError, match=r"two\.png: box 0,0,700,300 is not inside the 600x300 photo"):
        segment.convert_file(path, box=(0, 0, 700, 300))


def heif_bytes(fmt, size=(64, 64), claim=None):
    """A real HEIC or AVIF file of a garment; `claim`: (width, height) its header's 'ispe' box then says."""
    pytest.importorskip("pillow_heif")
    image_files.image_extensions()  # registers pillow-heif's opener
    array = np.full((*size[::-1], 3), 235, np.uint8)
    array[8:-8, size[0] // 4 : -size[0] // 4] = (120, 30, 40)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, quality=90)
    data = buffer.getvalue()
    if claim:
        at = data.index(b"ispe") + 8
        data = data[:at] + struct.pack(">II", *claim) + data[at + 8 :]
    return data


@pytest.mark.parametrize(("fmt", "suffix"), [("HEIF", ".heic"), ("AVIF", ".avif")])
def test_phone_formats_are_read(tmp_path, fmt, suffix):
    path = tmp_path / f"photo{suffix}"
    path.write_bytes(heif_bytes(fmt, (96, 64)))
    assert suffix in image_files.image_extensions()
    picture = image_files.load_image(path)
    assert picture.size == (96, 64) and picture.mode == "RGB"
    assert image_files.collect_inputs([tmp_path])[0] == [path]


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_header_claiming_100_megapixels_is_refused_before_decoding(fmt):
    data = heif_bytes(fmt, claim=(10_000, 10_000))
    with pytest.raises(image_files.ImageError, match=r"bomb|over the limit"):
        image_files.load_image("big", content=data)
    # In a fresh process: twenty such files refused, and the peak memory barely moves (decoding one would take
    # 300 MB).
    code = (
        "import resource, sys\nfrom fmnist.predict import images\ndata = sys.stdin.buffer.read()\n"
        "def refuse():\n"
        "    try:\n        images.load_image('big', content=data)\n"
        "    except images.ImageError:\n        return\n"
        "    raise SystemExit('decoded')\n"
        "refuse()\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for _ in range(20):\n    refuse()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)"
    )
    done = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 20, done.stdout


@pytest.mark.slow
def test_predict_files_reads_heic_and_avif(tmp_path, serve_run):
    from fmnist.rundir import checkpoint

    (tmp_path / "a.heic").write_bytes(heif_bytes("HEIF", (96, 64)))
    (tmp_path / "b.avif").write_bytes(heif_bytes("AVIF", (96, 64)))
    model, _ = checkpoint.load(serve_run / "cnn")
    predictions, failures = answers.predict_files(model, [tmp_path])
    assert not failures and [p.file for p in predictions] == [str(tmp_path / "a.heic"), str(tmp_path / "b.avif")]


@pytest.mark.slow
def test_the_cli_takes_a_box(tmp_path, serve_run):
    path = two_garments(tmp_path)
    command = [sys.executable, "-m", "fmnist", "predict", str(serve_run / "cnn"), str(path), "--json"]
    out = tmp_path / "seen"
    done = subprocess.run([*command, "--box", "300,0,600,300", "--save-preprocessed", str(out)], capture_output=True)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "two.png")), segment.convert_file(path, box=(300, 0, 600, 300)).image
    )
    bad = subprocess.run([*command, "--box", "0,0,900,300"], capture_output=True, text=True)
    assert bad.returncode == 2 and "box 0,0,900,300 is not inside the 600x300 photo" in bad.stdout
    wrong = subprocess.run([*command, "--box", "1,2"], capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1 and "X0,Y0,X1,Y1" in wrong.stderr


@pytest.mark.slow
def test_the_server_takes_a_box_and_phone_formats(server, tmp_path):
    photo = two_garments(tmp_path).read_bytes()
    files = [("files", ("two.png", photo, "image/png"))]
    whole = httpx.post(server.url + "/predict", files=files, timeout=60).json()["predictions"][0]
    boxed = httpx.post(server.url + "/predict?box=0,0,300,300", files=files, timeout=60).json()["predictions"][0]
    assert "cutout_png" in whole and "cutout_png" in boxed and whole["image_png"] != boxed["image_png"]
    form = httpx.post(server.url + "/predict", files=files, data={"box": "0,0,300,300"}, timeout=60).json()
    assert form["predictions"][0]["image_png"] == boxed["image_png"]
    bad = httpx.post(server.url + "/predict?box=5,5", files=files, timeout=60)
    assert bad.status_code == 400 and "X0,Y0,X1,Y1" in bad.json()["detail"]
    phone = [("files", ("a.heic", heif_bytes("HEIF", (96, 64)), "image/heic"))]
    phone.append(("files", ("b.avif", heif_bytes("AVIF", (96, 64)), "image/avif")))
    answer = httpx.post(server.url + "/predict", files=phone, timeout=60)
    assert answer.status_code == 200 and [p["file"] for p in answer.json()["predictions"]] == ["a.heic", "b.avif"]
    big = [("files", ("big.heic", heif_bytes("HEIF", claim=(10_000, 10_000)), "image/heic"))]
    refused = httpx.post(server.url + "/predict", files=big, timeout=60)
    assert refused.status_code == 422 and "big.heic" in refused.json()["detail"]


def test_photometric_augmentation_changes_a_share_of_images_reproducibly():
    import torch

    from fmnist.engine.augment import random_photometric

    pixels = torch.rand(400, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x = (pixels - 0.3) / 0.35

    def once(probability):
        return random_photometric(x, probability, 0.3, 0.35, torch.Generator().manual_seed(0))

    assert torch.equal(once(0.0), x)
    out = once(0.5)
    changed = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6 and torch.equal(out, once(0.5))
    back = out * 0.35 + 0.3
    assert back.min() >= -1e-6 and back.max() <= 1 + 1e-6


class Judged:
    """A stand-in model: only a trust record, which is all `photo_trust.judged` reads."""

    def __init__(self, record):
        self.trust = record


def test_segmented_photos_are_judged_against_the_photo_threshold():
    from fmnist.models.trust import Assessment
    from fmnist.predict import photo_trust

    scores = np.array([0.5, 2.0, 3.5, 2.0, 3.5])
    made = Assessment(np.full((5, 10), 0.1), scores, scores > 1.0)
    segmented = [False, False, False, True, True]
    record = {"threshold": 1.0, photo_trust.KEY: 3.0}
    got = photo_trust.judged(Judged(record), made, segmented)
    assert got.unknown.tolist() == [False, True, True, False, True]  # plain photos: 1.0; segmented: 3.0
    older = photo_trust.judged(Judged({"threshold": 1.0}), made, segmented)
    assert older.unknown.tolist() == made.unknown.tolist()  # a run from before the photo threshold: as it was


@pytest.mark.slow
def test_a_trained_model_has_a_photo_threshold_its_photos_are_judged_by(tmp_path, serve_run):
    from fmnist.models import trust
    from fmnist.predict import photo_trust
    from fmnist.rundir import checkpoint

    model, _ = checkpoint.load(serve_run / "cnn")
    record = trust.of(model)
    assert record[photo_trust.KEY] >= record["threshold"]  # set after training, saved with the trust record
    rng = np.random.default_rng(3)
    for i, kind in enumerate(composites.KINDS):
        data, _ = composites.composite(item(("top", "trousers", "bag")[i % 3]), kind, rng, long_side=300)
        (tmp_path / f"{kind}.jpg").write_bytes(data)
    predictions, failures = answers.predict_files(model, [tmp_path])
    assert not failures and all(p.cutout is not None for p in predictions)
    assert [p.unknown for p in predictions] == [p.ood_score > record[photo_trust.KEY] for p in predictions]
