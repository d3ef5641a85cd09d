import pytest
import torch

from fmnist.engine.augment import augment_batch, random_erase, random_flip, random_shift

FILL = -1.0


def blobs(n=64, side=28, seed=0):
    """Images of background FILL with a random bright square well inside the border: shifts never cut it."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1, side, side), FILL)
    for i in range(n):
        top, left = torch.randint(6, side - 12, (2,), generator=g).tolist()
        x[i, 0, top : top + 6, left : left + 6] = torch.rand(6, 6, generator=g) + 1
    return x


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_shift_keeps_shape_and_moves_each_image_by_at_most_pad():
    x = blobs()
    out = random_shift(x, 3, FILL, gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    # Each output is its own input translated: same pixel multiset, content within ±3 pixels.
    for a, b in zip(x, out, strict=True):
        assert torch.equal(a.flatten().sort().values, b.flatten().sort().values)
        ya, xa = torch.nonzero(a[0] > 0).float().mean(0)
        yb, xb = torch.nonzero(b[0] > 0).float().mean(0)
        assert abs(ya - yb) <= 3 and abs(xa - xb) <= 3
    assert not torch.equal(out, x)


def test_shift_by_zero_is_identity():
    x = blobs(8)
    assert torch.equal(random_shift(x, 0, FILL, gen(0)), x)


def test_flip_gives_each_image_or_its_mirror():
    x = blobs()
    out = random_flip(x, gen(1))
    mirrored = [torch.equal(b, a.flip(-1)) for a, b in zip(x, out, strict=True)]
    same = [torch.equal(b, a) for a, b in zip(x, out, strict=True)]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 10 < sum(mirrored) < 54  # about half of 64


def test_erase_sets_one_rectangle_to_fill():
    x = torch.zeros(200, 1, 28, 28)
    out = random_erase(x, 1.0, FILL, gen(2))
    assert out.shape == x.shape
    for img in out[:, 0]:
        rows, cols = torch.nonzero(img == FILL, as_tuple=True)
        assert len(rows) > 0
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(rows) == height * width  # a filled rectangle
        assert len(rows) <= 0.25 * 784 + 28  # area at most 25 % (plus rounding)
    assert torch.equal(random_erase(x, 0.0, FILL, gen(2)), x)


def test_augmentation_is_seeded():
    x = blobs()
    kwargs = {"flip": True, "shift": 2, "erase": 0.5, "fill": FILL}
    a = augment_batch(x, generator=gen(7), **kwargs)
    b = augment_batch(x, generator=gen(7), **kwargs)
    c = augment_batch(x, generator=gen(8), **kwargs)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_keeps_shape_dtype_and_does_not_touch_input(channels):
    x = torch.randn(16, channels, 28, 28)
    before = x.clone()
    out = augment_batch(x, flip=True, shift=2, erase=0.5, fill=0.0, generator=gen(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)
