"""The fast CNN recipe for Fashion-MNIST on a small CPU, and the harness that screened it (see bench/NOTES.md).

    flock /tmp/fmnist-cpu.lock python bench/cnn_recipe.py --seeds 0 [--set epochs=6 --set widths=24,48,96]
        [--train-subset N] [--eval-every-epoch] [--test] [--budget SECONDS] [--out FILE]
    flock /tmp/fmnist-cpu.lock python bench/cnn_recipe.py --speed [--set ...]   # seconds per epoch only

Standalone on purpose: the package's training loop is being restructured, so this file carries its own network
and loop, to be ported. Recipe, in airbench's spirit (KellerJordan/airbench), on 28x28 grey images:
a frozen patch-whitening 2x2 convolution at stride 2 (a whitened space-to-depth: 14x14 maps from the
start, the cheapest input stage on a CPU), three conv groups (conv, max-pool, BN, GELU, conv, BN, GELU) with
dirac-initialised convolutions and batch norms that train only their biases (at a higher learning rate), a
max-pool + linear head, SGD-Nesterov with a triangular schedule, label smoothing, alternating flips and 1 px
translations, a lookahead average of the weights, and flip + translation test-time augmentation.
Accuracy is chosen on validation; --test adds test accuracy (finalists only).
"""

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fmnist.data import dataset as data


@dataclasses.dataclass(frozen=True)
class Recipe:
    widths: tuple = (32, 64, 128)  # the three conv groups
    whiten: int = 2  # kernel side of the frozen whitening convolution; 0: a plain trainable 3x3 conv instead
    whiten_stride: int = 2  # 2: a whitened space-to-depth (2x2 patches, stride 2: 14x14 maps from the start)
    whiten_eps: float = 5e-4
    whiten_bias_epochs: float = 2  # the whitening bias trains this long, then freezes
    pools: tuple = (1, 1, 0)  # which groups halve the maps (max-pool after their first convolution)
    double: bool = True  # two convolutions per group (False: one)
    dirac: bool = True
    act: str = "gelu"
    bn_momentum: float = 0.4  # torch convention (airbench's 0.6 in its own)
    bn_weight: bool = False  # train the BN scales too (airbench keeps them at 1)
    scale: float = 1 / 9  # logits multiplier of the head
    epochs: float = 10
    batch_size: int = 512
    lr: float = 1.0  # peak, for the mean loss, per batch of 1024 (scaled linearly with the batch size)
    momentum: float = 0.85
    weight_decay: float = 2e-3  # coupled L2, in units of the mean loss; biases get it divided by bias_scale
    bias_scale: float = 64.0  # learning-rate multiplier of the BN biases
    schedule: tuple = (0.2, 0.23, 0.07)  # triangle: start factor, peak position, end factor
    label_smoothing: float = 0.2
    flip: str = "alternate"  # alternate, random or none
    shift: int = 1  # random translations of up to this many pixels (background-filled)
    lookahead: bool = True
    lookahead_every: int = 5
    tta: int = 2  # 0: none, 1: + mirror, 2: + mirror and 1 px translations
    channels_last: bool = True
    bf16: bool = False  # autocast forward and loss to bfloat16
    threads: int = 0  # 0: torch's default

    @classmethod
    def parse(cls, assignments):
        """Recipe() with `key=value` overrides (tuples as comma lists)."""
        values = {}
        for item in assignments:
            key, _, text = item.partition("=")
            default = getattr(cls(), key)
            if isinstance(default, tuple):
                values[key] = tuple(type(default[0])(v) for v in text.split(","))
            elif isinstance(default, bool):
                values[key] = text.lower() in ("1", "true", "yes")
            else:
                values[key] = type(default)(text)
        return cls(**values)


# ---- data ----


def to_tensor(images, mean, std):
    x = torch.from_numpy(np.asarray(images, dtype=np.float32)).unsqueeze(1)
    return (x / 255.0 - mean) / std


def shifted(x, dy, dx, fill):
    """x translated by (dy, dx) pixels, uncovered pixels set to `fill`."""
    pad = max(abs(dy), abs(dx))
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), value=fill)
    side = x.shape[-1]
    return padded[..., pad - dy : pad - dy + side, pad - dx : pad - dx + side]


def augment_epoch(x, epoch, shift, flip, flip_mask, fill, generator):
    """The whole epoch's augmented images at once: mirrored images (alternating per image across epochs, or
    random), then one random translation of up to `shift` pixels per image, grouped by offset."""
    if flip == "alternate":
        mirror = flip_mask if epoch % 2 == 0 else ~flip_mask
    elif flip == "random":
        mirror = torch.rand(len(x), generator=generator) < 0.5
    else:
        mirror = torch.zeros(len(x), dtype=torch.bool)
    out = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if shift:
        offsets = torch.randint(-shift, shift + 1, (len(x), 2), generator=generator)
        moved = out.clone()
        for dy in range(-shift, shift + 1):
            for dx in range(-shift, shift + 1):
                chosen = ((offsets[:, 0] == dy) & (offsets[:, 1] == dx)).nonzero().squeeze(1)
                if (dy or dx) and len(chosen):
                    moved[chosen] = shifted(out[chosen], dy, dx, fill)
        out = moved
    return out


# ---- network ----


class Mul(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def batch_norm(width, recipe):
    bn = nn.BatchNorm2d(width, momentum=recipe.bn_momentum, eps=1e-12)
    bn.weight.requires_grad_(recipe.bn_weight)
    return bn


def activation(recipe):
    return nn.GELU() if recipe.act == "gelu" else nn.ReLU(inplace=True)


def conv_group(c_in, c_out, recipe, pool=True):
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    layers += [nn.MaxPool2d(2)] if pool else []
    layers += [batch_norm(c_out, recipe), activation(recipe)]
    if recipe.double:
        layers += [nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), batch_norm(c_out, recipe), activation(recipe)]
    return nn.Sequential(*layers)


def whitening_filters(x, kernel, eps):
    """Frozen first-layer filters: the eigenvectors of the training patches' covariance, scaled by
    1/sqrt(eigenvalue + eps), with their negatives (so that the ReLU/GELU after them loses nothing)."""
    patches = F.unfold(x, kernel).transpose(1, 2).reshape(-1, kernel * kernel).double()
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, 1, kernel, kernel).float()
    return torch.cat([filters, -filters])


def build(recipe, x_train):
    """The network, its weights drawn from torch's global RNG (seeded by the caller)."""
    if recipe.whiten:
        stem = nn.Conv2d(1, 2 * recipe.whiten**2, recipe.whiten, stride=recipe.whiten_stride, bias=True)
        stem.weight.data[:] = whitening_filters(x_train[:5000], recipe.whiten, recipe.whiten_eps)
        stem.weight.requires_grad_(False)
    else:
        stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
    widths = (stem.out_channels, *recipe.widths)
    pairs = itertools.pairwise(widths)
    groups = [conv_group(c_in, c_out, recipe, pool) for (c_in, c_out), pool in zip(pairs, recipe.pools, strict=True)]
    head = [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 10, bias=False), Mul(recipe.scale)]
    net = nn.Sequential(stem, activation(recipe), *groups, *head)
    if recipe.dirac:
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and module is not stem:
                init_dirac(module.weight.data)
    return net


def init_dirac(weight):
    """Identity for the first in-channels of the output, default (Kaiming-uniform) init elsewhere."""
    c_out, c_in = weight.shape[:2]
    nn.init.dirac_(weight[: min(c_out, c_in)])


# ---- training ----


def triangle(total_steps, start, peak, end):
    peak_step = max(1, int(peak * total_steps))

    def factor(step):
        if step < peak_step:
            return start + (1 - start) * step / peak_step
        return 1 + (end - 1) * (step - peak_step) / max(1, total_steps - peak_step)

    return factor


def make_optimizer(net, recipe):
    lr = recipe.lr * recipe.batch_size / 1024
    biases = [p for n, p in net.named_parameters() if p.requires_grad and "bias" in n and p.ndim == 1]
    others = [p for n, p in net.named_parameters() if p.requires_grad and not ("bias" in n and p.ndim == 1)]
    groups = [
        {"params": others, "lr": lr, "weight_decay": recipe.weight_decay, "base_lr": lr},
        {
            "params": biases,
            "lr": lr * recipe.bias_scale,
            "weight_decay": recipe.weight_decay / recipe.bias_scale,
            "base_lr": lr * recipe.bias_scale,
        },
    ]
    return torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum, nesterov=True)


class Lookahead:
    """airbench's lookahead: every few steps, pull the slow copy towards the weights and the weights back to
    it; the decay ramps up cubically so the early steps are barely averaged."""

    def __init__(self, net):
        self.slow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    def update(self, net, decay):
        with torch.no_grad():
            for key, value in net.state_dict().items():
                if value.dtype.is_floating_point:
                    self.slow[key].lerp_(value, 1 - decay)
                    value.copy_(self.slow[key])


def logits(net, x, recipe, batch=256):
    net.eval()
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    with torch.inference_mode():
        return torch.cat([net(x[i : i + batch].contiguous(memory_format=memory)) for i in range(0, len(x), batch)])


def tta_logits(net, x, recipe, fill):
    """Test-time augmentation: level 1 averages with the mirror image, level 2 also with the images moved one
    pixel up-left and down-right (mirrored too), at half weight."""
    plain = logits(net, x, recipe)
    if recipe.tta == 0:
        return plain
    both = 0.5 * (plain + logits(net, x.flip(-1), recipe))
    if recipe.tta == 1:
        return both
    moved = [shifted(x, d, d, fill) for d in (-1, 1)]
    extra = sum(0.5 * (logits(net, m, recipe) + logits(net, m.flip(-1), recipe)) for m in moved) / 2
    return 0.5 * both + 0.5 * extra


def accuracy(scores, y):
    return (scores.argmax(1) == y).float().mean().item()


def train(recipe, splits, seed, *, x_test=None, y_test=None, eval_every_epoch=False, budget=math.inf, log=print):
    """Train one seed; returns a dict of accuracies, seconds and the per-epoch log.

    The timed part is everything from the raw tensors to the final weights (whitening statistics, augmentation,
    steps, lookahead); per-epoch evaluation, when asked for, runs outside it."""
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    mean, std = float(splits.mean), float(splits.std)
    fill = -mean / std
    x_train, y_train = to_tensor(splits.x_train, mean, std), torch.from_numpy(splits.y_train.astype(np.int64))
    x_val, y_val = to_tensor(splits.x_val, mean, std), torch.from_numpy(splits.y_val.astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build(recipe, x_train).to(memory_format=memory)
    optimizer = make_optimizer(net, recipe)
    steps_per_epoch = len(x_train) // recipe.batch_size
    total = max(1, round(recipe.epochs * steps_per_epoch))
    schedule = triangle(total, *recipe.schedule)
    lookahead = Lookahead(net) if recipe.lookahead else None
    flip_mask = torch.rand(len(x_train), generator=generator) < 0.5
    stem_bias = net[0].bias if recipe.whiten else None
    step, epoch, rows = 0, 0, []
    train_seconds = time.perf_counter() - start
    while step < total and train_seconds < budget:
        epoch_start = time.perf_counter()
        net.train()
        if stem_bias is not None and epoch >= recipe.whiten_bias_epochs:
            stem_bias.requires_grad_(False)
        images = augment_epoch(x_train, epoch, recipe.shift, recipe.flip, flip_mask, fill, generator)
        augment_seconds = time.perf_counter() - epoch_start
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(min(steps_per_epoch, total - step)):
            index = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            x, y = images[index].contiguous(memory_format=memory), y_train[index]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                loss = F.cross_entropy(net(x), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * schedule(step)
            optimizer.step()
            step += 1
            if lookahead is not None and step % recipe.lookahead_every == 0:
                lookahead.update(net, 0.95**recipe.lookahead_every * (step / total) ** 3)
        if lookahead is not None and step >= total:
            lookahead.update(net, 1.0)  # end on the slow weights
        epoch += 1
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        row = {"epoch": epoch, "seconds": round(seconds, 2), "elapsed": round(train_seconds, 2)}
        row |= {"augment_seconds": round(augment_seconds, 2), "loss": round(loss.item(), 4)}
        if eval_every_epoch or step >= total:
            row["val"] = round(accuracy(logits(net, x_val, recipe), y_val), 4)
            if x_test is not None:
                row["test"] = round(accuracy(logits(net, x_test, recipe), y_test), 4)
        rows.append(row)
        log(json.dumps(row))
    result = {"seed": seed, "epochs_done": epoch, "steps": step, "complete": step >= total}
    eval_start = time.perf_counter()
    result["val"] = accuracy(tta_logits(net, x_val, recipe, fill), y_val)
    tta_seconds = time.perf_counter() - eval_start
    result["val_plain"] = rows[-1].get("val")
    result["val_flip_only"] = accuracy(tta_logits(net, x_val, dataclasses.replace(recipe, tta=1), fill), y_val)
    result["inference_images_per_s"] = round(len(x_val) / tta_seconds)
    if x_test is not None:
        result["test"] = accuracy(tta_logits(net, x_test, recipe, fill), y_test)
        result["test_plain"] = rows[-1].get("test")
    result |= {"train_seconds": round(train_seconds, 1), "val_tta_seconds": round(tta_seconds, 2), "epochs": rows}
    return result


# ---- command line ----


def machine():
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def seconds_per_epoch(recipe, epochs=3, n=12_288):
    """Training seconds per 48k-image epoch on random data, after one warm-up epoch (shapes, primitives)."""
    torch.manual_seed(0)
    x = torch.randn(n, 1, 28, 28)
    y = torch.randint(0, 10, (n,))
    net = build(recipe, x)
    memory = torch.channels_last if recipe.channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    optimizer = make_optimizer(net, recipe)
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for i in range(0, n - recipe.batch_size + 1, recipe.batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16):
                batch = x[i : i + recipe.batch_size].contiguous(memory_format=memory)
                loss = F.cross_entropy(net(batch), y[i : i + recipe.batch_size])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        times.append((time.perf_counter() - start) * 48_000 / n)
    return {"first": round(times[0], 2), "steady": round(min(times[1:]), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="recipe field override, key=value")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--test", action="store_true", help="also report test accuracy (finalists only)")
    parser.add_argument("--eval-every-epoch", action="store_true")
    parser.add_argument("--train-subset", type=int, default=0)
    parser.add_argument("--budget", type=float, default=280.0, help="stop training after this many seconds")
    parser.add_argument("--speed", action="store_true", help="only time training epochs on random data")
    parser.add_argument("--out")
    args = parser.parse_args()
    recipe = Recipe.parse(args.set)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    head = {"cpu": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads()}
    head["recipe"] = {k: v for k, v in dataclasses.asdict(recipe).items() if v != getattr(Recipe(), k)}
    if args.speed:
        print(json.dumps(head | seconds_per_epoch(recipe)))
        return
    dataset = data.load()
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        splits = data.split(dataset, seed)
        if args.train_subset:
            splits = dataclasses.replace(
                splits, x_train=splits.x_train[: args.train_subset], y_train=splits.y_train[: args.train_subset]
            )
        test = {}
        if args.test:
            test = {
                "x_test": to_tensor(splits.x_test, splits.mean, splits.std),
                "y_test": torch.from_numpy(splits.y_test.astype(np.int64)),
            }
        log = lambda line: print(line, file=sys.stderr)  # noqa: E731
        runs.append(
            train(recipe, splits, seed, eval_every_epoch=args.eval_every_epoch, budget=args.budget, log=log, **test)
        )
        short = {k: v for k, v in runs[-1].items() if k != "epochs"}
        print(json.dumps(short), file=sys.stderr)
    summary = head | {"median_val": statistics.median(r["val"] for r in runs), "runs": runs}
    if args.test:
        summary["median_test"] = statistics.median(r["test"] for r in runs)
    text = json.dumps(summary)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
