import json
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from fmnist.data import dataset
from fmnist.errors import UserError
from fmnist.predict import answers, images
from serve_helpers import garment, product_photo


class NearestMean:
    """A stand-in model: negative squared distance to each class's mean train image."""

    def __init__(self, images, labels):
        flat = images.reshape(len(images), -1).astype(np.float32)
        self.means = np.stack([flat[labels == c].mean(axis=0) for c in range(dataset.NUM_CLASSES)])

    def predict_logits(self, images):
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        flat = images.reshape(len(images), -1).astype(np.float32)
        distances = (flat**2).sum(1, keepdims=True) - 2 * flat @ self.means.T + (self.means**2).sum(1)
        return (-distances / 1e5).astype(np.float32)


@pytest.fixture(scope="module")
def real(splits):
    return splits, NearestMean(splits.x_train, splits.y_train)


def convert(path, **limits):
    return images.to_fashion_mnist(images.load_image(path, **limits))


def only_failure(paths, model=None):
    results, failures = answers.predict_files(
        model or NearestMean(np.zeros((10, 28, 28), np.uint8), np.arange(10)), paths
    )
    assert not results and len(failures) == 1
    message = str(failures[0])
    assert "\n" not in message
    return message


# -- conversion ------------------------------------------------------------------------------------------


def test_dataset_images_pass_through_bit_exact(real, tmp_path):
    splits, _ = real
    for item in splits.x_test:
        np.testing.assert_array_equal(images.to_fashion_mnist(Image.fromarray(item)), item)
    for i, item in enumerate(splits.x_test[:20]):
        Image.fromarray(item).save(tmp_path / f"{i}.png")
        np.testing.assert_array_equal(convert(tmp_path / f"{i}.png"), item)
        Image.fromarray(255 - item).save(tmp_path / f"{i}-negated.bmp")
        np.testing.assert_array_equal(convert(tmp_path / f"{i}-negated.bmp"), item)


def test_product_photos_are_classified_like_the_originals(real, tmp_path):
    splits, model = real
    rng = np.random.default_rng(0)
    items = splits.x_test[:200]
    for i, item in enumerate(items):
        product_photo(item, rng=rng).save(tmp_path / f"{i:03d}.jpg", quality=90)
    results, failures = answers.predict_files(model, [tmp_path], top_k=1)
    assert not failures and [r.path.name for r in results] == [f"{i:03d}.jpg" for i in range(200)]
    from_photos = np.array([r.top[0][0] for r in results])
    from_items = model.predict_logits(items).argmax(1)
    agreement = (from_photos == from_items).mean()
    print(f"product-photo agreement {agreement:.3f}")
    assert agreement >= 0.85
    # The conversion is close to the item itself, not merely to its class.
    images = np.stack([r.image for r in results]).astype(np.float64)
    correlation = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(images, items, strict=True)]
    assert np.median(correlation) > 0.9


def test_light_on_dark_photo_is_not_negated(real):
    splits, _ = real
    item = splits.x_test[1]
    photo = Image.new("L", (260, 200), 0)
    photo.paste(Image.fromarray(item).resize((168, 168), Image.Resampling.BICUBIC), (40, 10))
    out = images.to_fashion_mnist(photo).astype(np.float64)
    assert np.corrcoef(out.ravel(), item.ravel())[0, 1] > 0.9
    assert out[0, 0] == out[-1, -1] == 0 and abs(out.mean() - item.mean()) < 10


def test_off_white_background_becomes_black():
    array = np.asarray(garment()).copy()
    array[array == 255] = 200
    out = images.to_fashion_mnist(Image.fromarray(array))
    assert out[0, 0] == out[-1, -1] == 0
    np.testing.assert_allclose(out, images.to_fashion_mnist(garment()), atol=40)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (5000, 3), (3, 5000), (2, 2), (29, 28)])
def test_any_shape_gives_a_valid_28x28(tmp_path, width, height):
    array = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "odd.png")
    out = convert(tmp_path / "odd.png")
    assert out.shape == (28, 28) and out.dtype == np.uint8


def test_extreme_aspect_ratio_keeps_the_object(tmp_path):
    array = np.full((3, 5000), 255, np.uint8)
    array[:, 100:4900] = 0
    Image.fromarray(array).save(tmp_path / "strip.png")
    out = convert(tmp_path / "strip.png")
    assert out.max() == 255 and (out > 0).sum(axis=1).max() == 28


def test_odd_margins_put_the_extra_pixel_on_top_like_the_dataset():
    array = np.full((300, 320), 255, np.uint8)
    array[10:280, 10:290] = 0  # 270 x 280: resized to 27 x 28
    out = images.to_fashion_mnist(Image.fromarray(array))
    assert out[0].max() == 0 and out[1:].min() == 255


def test_exif_orientation_is_honoured(tmp_path):
    upright = garment()
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.png", exif=exif)
    np.testing.assert_array_equal(convert(tmp_path / "rotated.png"), convert(tmp_path / "upright.png"))


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = np.zeros((120, 80, 4), np.uint8)  # transparent black: naive conversion gives a black background
    rgba[20:100, 15:40] = (30, 30, 30, 255)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    on_white = np.full((120, 80), 255, np.uint8)
    on_white[20:100, 15:40] = 30
    Image.fromarray(on_white).save(tmp_path / "white.png")
    expected = convert(tmp_path / "white.png")
    assert expected.max() > 200
    np.testing.assert_array_equal(convert(tmp_path / "rgba.png"), expected)

    palette = Image.fromarray(np.where(rgba[..., 3] > 0, 1, 0).astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 30, 30, 30])  # index 0 is black and transparent
    palette.save(tmp_path / "palette.png", transparency=0)
    palette.save(tmp_path / "palette.gif", transparency=0)
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(convert(tmp_path / "palette.png"), expected)
    np.testing.assert_array_equal(convert(tmp_path / "palette.gif"), expected)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    gray = np.asarray(garment().convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    Image.fromarray(gray).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(convert(tmp_path / "deep.png"), convert(tmp_path / "plain.png"))


@pytest.mark.parametrize("scale", [np.int32(1000), np.float32(1 / 255)])
def test_32_bit_images_are_scaled_by_their_data_range(tmp_path, scale):
    gray = np.asarray(garment().convert("L"))
    Image.fromarray(gray * scale).save(tmp_path / "deep.tiff")
    assert Image.open(tmp_path / "deep.tiff").mode in ("I", "F")
    low, high = int(gray.min()), int(gray.max())
    expected = np.rint((gray - low) * (255 / (high - low)))
    np.testing.assert_array_equal(np.asarray(images.load_image(tmp_path / "deep.tiff").convert("L")), expected)


def test_cmyk_jpeg_matches_rgb_jpeg(tmp_path):
    garment().save(tmp_path / "rgb.jpg", quality=95)
    garment().convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    difference = convert(tmp_path / "cmyk.jpg").astype(int) - convert(tmp_path / "rgb.jpg")
    assert np.abs(difference).mean() < 4


@pytest.mark.parametrize("suffix", [".bmp", ".webp", ".tiff", ".jpg", ".gif"])
def test_common_formats_match_png(tmp_path, suffix):
    garment().save(tmp_path / "reference.png")
    garment().save(tmp_path / f"item{suffix}", **({"quality": 95} if suffix in (".jpg", ".webp") else {}))
    difference = convert(tmp_path / f"item{suffix}").astype(int) - convert(tmp_path / "reference.png")
    assert np.abs(difference).mean() < 4


def test_gif_uses_the_first_frame(tmp_path):
    first, second = garment(), garment().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second])
    first.save(tmp_path / "first.gif")
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    np.testing.assert_array_equal(convert(tmp_path / "anim.gif"), convert(tmp_path / "first.gif"))


# -- bad input -------------------------------------------------------------------------------------------


def png_with_size(path, width, height):
    """A tiny valid PNG whose header then claims `width` x `height` (CRC fixed): a decompression bomb."""
    Image.new("L", (1, 1)).save(path)
    raw = bytearray(path.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    filters, limit = list(warnings.filters), Image.MAX_IMAGE_PIXELS
    png_with_size(tmp_path / "large.png", 7_000, 7_000)  # over our cap, under Pillow's
    assert (tmp_path / "large.png").stat().st_size < 100
    assert "large.png: 7000x7000 pixels is over the limit of 40,000,000" in only_failure([tmp_path / "large.png"])
    png_with_size(tmp_path / "bomb.png", 50_000, 50_000)  # Pillow raises its error while opening
    assert "bomb.png: refused as a possible decompression bomb" in only_failure([tmp_path / "bomb.png"])
    png_with_size(tmp_path / "warns.png", 10_000, 10_000)  # Pillow only warns: an error here all the same
    with pytest.raises(images.ImageError, match=r"warns\.png: refused as a possible decompression bomb"):
        images.load_image(tmp_path / "warns.png", max_pixels=10**12)
    assert warnings.filters == filters and limit == Image.MAX_IMAGE_PIXELS


def test_file_over_the_size_cap_is_refused_by_stat(tmp_path):
    big = tmp_path / "huge.png"
    with big.open("wb") as f:
        f.truncate(images.MAX_BYTES + 1)  # sparse: no disk used, and never read
    assert "huge.png: 50.0 MB is over the 50 MB limit" in only_failure([big])


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.png", b"", "empty file"),
        ("notes.png", b"this is a text file, not a picture\n" * 5, "not an image file Pillow can read"),
    ],
)
def test_files_that_are_not_images(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)
    assert only_failure([tmp_path / name]) == f"{tmp_path / name}: {expected}"


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_images(tmp_path, suffix):
    garment().save(tmp_path / f"whole{suffix}")
    whole = (tmp_path / f"whole{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(whole[: len(whole) // 2])
    assert f"cut{suffix}: " in only_failure([tmp_path / f"cut{suffix}"])


def test_missing_paths_and_empty_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.txt").write_text("no images here")
    files, failures = images.collect_inputs([tmp_path / "missing.png", tmp_path / "empty", tmp_path / "texts"])
    assert files == []
    assert [str(f) for f in failures] == [
        f"{tmp_path / 'missing.png'}: file not found",
        f"{tmp_path / 'empty'}: folder holds no image files",
        f"{tmp_path / 'texts'}: folder holds no image files",
    ]


def test_folders_list_images_sorted_and_skip_hidden_files(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png"):
        garment().save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("x")
    files, failures = images.collect_inputs([tmp_path, tmp_path / "b.png"])
    assert not failures and [p.name for p in files] == ["a.JPG", "b.png"]


def test_a_batch_goes_on_past_bad_files(real, tmp_path):
    splits, model = real
    good = tmp_path / "mañana 👗 dress copy.png"
    Image.fromarray(splits.x_test[0]).save(good)
    (tmp_path / "empty.jpg").write_bytes(b"")
    results, failures = answers.predict_files(model, [tmp_path / "missing.png", tmp_path / "empty.jpg", good])
    assert [r.path for r in results] == [good]
    assert sorted(f.file for f in failures) == sorted([str(tmp_path / "missing.png"), str(tmp_path / "empty.jpg")])
    assert all(str(f).startswith(f.file + ": ") and "\n" not in str(f) for f in failures)


# -- output ----------------------------------------------------------------------------------------------


def test_text_and_json_output(real, tmp_path):
    splits, model = real
    name = tmp_path / "my shirt é.png"
    Image.fromarray(splits.x_test[0]).save(name)
    (tmp_path / "bad.png").write_bytes(b"nope")
    results, failures = answers.predict_files(model, [name, tmp_path / "bad.png"], top_k=3)
    probs = answers.probabilities(model, splits.x_test[:1])[0]
    order = np.argsort(-probs)[:3]
    assert [c for c, _ in results[0].top] == list(order)

    text = answers.format_text(results)
    expected = ", ".join(f"{dataset.CLASS_NAMES[c]} {probs[c]:.1%}" for c in order)
    assert text == f"{name}: {dataset.CLASS_NAMES[order[0]]} {probs[order[0]]:.1%}  (top 3: {expected})"

    document = json.loads(answers.format_json(results, failures))
    (entry,) = document["predictions"]
    assert entry["file"] == str(name) and entry["class"] == dataset.CLASS_NAMES[order[0]]
    assert entry["class_index"] == order[0] and [t["class_index"] for t in entry["top_k"]] == list(order)
    assert entry["probability"] == pytest.approx(probs[order[0]], abs=1e-6)
    assert document["errors"] == [{"file": str(tmp_path / "bad.png"), "error": "not an image file Pillow can read"}]

    single, _ = answers.predict_files(model, [name], top_k=1)
    assert "top" not in answers.format_text(single)


def test_top_k_must_be_a_class_count(real):
    _, model = real
    for k in (0, 11):
        with pytest.raises(UserError, match=f"--top-k {k}"):
            answers.predict_files(model, [], top_k=k)


def test_control_characters_in_names_stay_on_one_line(tmp_path):
    message = str(images.ImageError(tmp_path / "two\nlines.png", "file not found"))
    assert "\n" not in message and "two\\nlines.png" in message


def test_save_preprocessed_writes_what_the_model_saw(real, tmp_path):
    splits, model = real
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        product_photo(splits.x_test[0 if folder == "a" else 1], rng=np.random.default_rng(0)).save(
            tmp_path / folder / "item.png"
        )
    results, _ = answers.predict_files(model, [tmp_path / "a", tmp_path / "b"])
    written = answers.save_preprocessed(results, tmp_path / "seen")
    assert [p.name for p in written] == ["item.png", "item-2.png"]
    for path, result in zip(written, results, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), result.image)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        answers.save_preprocessed(results, tmp_path / "file")


def test_save_preprocessed_keeps_names_of_255_bytes(real, tmp_path):
    """The longest legal name: its output and the temporary name beside it stay within NAME_MAX."""
    splits, model = real
    long = tmp_path / ("é" * 60 + "x" * (255 - 120 - 4) + ".png")  # 255 bytes, two-byte characters first
    product_photo(splits.x_test[0]).save(long)
    results, failures = answers.predict_files(model, [long])
    written = answers.save_preprocessed(results, tmp_path / "seen")
    assert not failures and len(os.fsencode(written[0].name)) <= 255 and written[0].name.endswith(".png")
    np.testing.assert_array_equal(np.asarray(Image.open(written[0])), results[0].image)
    assert [p.name for p in (tmp_path / "seen").iterdir()] == [written[0].name]  # no temporary file left
