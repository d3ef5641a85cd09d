import numpy as np
import pytest

from fmnist.models.scratch.augment import augment, random_flip, random_shift

FILL = np.float32(-0.8)


def images(n=400, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 784)).astype(np.float32)


def shifted(image, dy, dx):
    """The naive reference: image (784,) moved dy rows down and dx columns right, blank pixels FILL."""
    src = image.reshape(28, 28)
    out = np.full((28, 28), FILL, np.float32)
    rows, cols = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
    out[rows, cols] = src[max(-dy, 0) : 28 - max(dy, 0), max(-dx, 0) : 28 - max(dx, 0)]
    return out.ravel()


def which_move(original, result, pad, flips=(False, True)):
    """(flipped, dy, dx) for which `result` is `original` flipped and shifted, or None."""
    for flipped in flips:
        source = original.reshape(28, 28)[:, ::-1].ravel() if flipped else original
        for dy in range(-pad, pad + 1):
            for dx in range(-pad, pad + 1):
                if np.array_equal(result, shifted(source, dy, dx)):
                    return flipped, dy, dx
    return None


def test_flip_mirrors_about_half_of_the_images_and_nothing_else():
    x = images()
    out = random_flip(x, np.random.default_rng(1))
    moves = [which_move(a, b, 0) for a, b in zip(x, out, strict=True)]
    assert None not in moves and out.dtype == np.float32 and out.shape == x.shape
    assert 150 < sum(flipped for flipped, _, _ in moves) < 250


@pytest.mark.parametrize("pad", [1, 2])
def test_shift_translates_each_image_within_pad_using_every_offset(pad):
    x = images()
    out = random_shift(x, pad, FILL, np.random.default_rng(2))
    moves = [which_move(a, b, pad, flips=(False,)) for a, b in zip(x, out, strict=True)]
    assert None not in moves
    assert len({(dy, dx) for _, dy, dx in moves}) == (2 * pad + 1) ** 2


def test_shift_prob_leaves_the_other_images_centred():
    x = images(900)
    out = augment(x, flip=False, shift=1, fill=FILL, rng=np.random.default_rng(3), shift_prob=0.5)
    moves = [which_move(a, b, 1, flips=(False,)) for a, b in zip(x, out, strict=True)]
    centred = sum((dy, dx) == (0, 0) for _, dy, dx in moves) / len(x)
    assert abs(centred - (0.5 + 0.5 / 9)) < 0.06  # unpicked, or picked and drawn (0, 0)
    assert np.array_equal(augment(x, flip=False, shift=1, fill=FILL, rng=np.random.default_rng(3), shift_prob=0), x)


def test_flip_and_shift_together_are_seeded_and_leave_the_input_alone():
    x = images(200)
    before = x.copy()
    a = augment(x, flip=True, shift=2, fill=FILL, rng=np.random.default_rng(4))
    b = augment(x, flip=True, shift=2, fill=FILL, rng=np.random.default_rng(4))
    c = augment(x, flip=True, shift=2, fill=FILL, rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and not np.array_equal(a, c) and np.array_equal(x, before)
    assert None not in [which_move(i, o, 2) for i, o in zip(x, a, strict=True)]
