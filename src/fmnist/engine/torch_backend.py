"""The torch models' side of the training loop: in-memory tensors, autograd, torch.optim, batched augmentation.

Data stay in memory as one float32 tensor (N, 1, 28, 28) on the training device (moved there once); the loop
slices batches from a seeded permutation drawn on that device (no per-sample DataLoader, no per-batch host
copies) and this backend augments whole batches there with `fmnist.engine.augment`.
"""

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F

from fmnist.engine import devices
from fmnist.engine.augment import augment_batch, random_photometric

EVAL_BATCH = 256  # measured faster than 1024 or 4096 (cache-sized batches); see bench/NOTES.md


def to_tensor(images, mean, std, device="cpu"):
    """uint8 (N, 28, 28) -> normalised float32 tensor (N, 1, 28, 28) on `device` (the uint8 bytes travel)."""
    images = np.asarray(images)
    if device == "cpu":
        x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    else:  # a quarter of the bytes cross to the device; uint8 -> float32 is exact either side
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).to(torch.float32).unsqueeze(1)
    return (x / 255.0 - mean) / std


def make_optimizer(module, hparams):
    """SGD with Nesterov momentum or AdamW; no weight decay on biases and batch-norm parameters, whose learning
    rate is `bias_lr` times the others'. Frozen parameters are left out.

    The learning rate is set by the loop before every step (`set_lr`)."""
    trained = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trained if p.ndim > 1], "weight_decay": hparams["weight_decay"], "lr_scale": 1.0},
        {"params": [p for p in trained if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": hparams["bias_lr"]},
    ]
    if hparams["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=hparams["momentum"], nesterov=True)
    return torch.optim.AdamW(groups, lr=0.0)


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_scale"]


def predict(module, x, *, channels_last=False, batch_size=EVAL_BATCH, method=None):
    """Run `module` (or `method`, e.g. module.features) in eval mode on x (N, 1, 28, 28); returns (N, K)."""
    module.eval()
    run = method or module
    batches = [x[start : start + batch_size] for start in range(0, len(x), batch_size)] or [x]
    with torch.inference_mode():
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return torch.cat([run(batch.contiguous(memory_format=memory_format)) for batch in batches])


class Lookahead:
    """A slow copy of the weights (and batch-norm statistics): every `every` steps it moves towards the weights,
    and the weights are set to it. Its decay ramps up with the cube of progress (airbench's schedule), so early
    training is barely averaged and the end is strongly; the last step leaves the weights on the slow copy."""

    def __init__(self, module, every, total_steps):
        self.module, self.every, self.total = module, every, max(1, total_steps)
        self.slow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}
        self.step = 0

    def after_step(self):
        self.step += 1
        if self.step % self.every and self.step < self.total:
            return
        decay = 0.95**self.every * (self.step / self.total) ** 3 if self.step < self.total else 1.0
        with torch.no_grad():
            for key, value in self.module.state_dict().items():
                if key in self.slow:
                    self.slow[key].lerp_(value, 1 - decay)
                    value.copy_(self.slow[key])

    def state(self):
        return {"slow": self.slow, "step": self.step}

    def load_state(self, saved):
        for key, value in saved["slow"].items():
            self.slow[key].copy_(value)
        self.step = int(saved["step"])


class OneProcess:
    """The training step's view of the processes when there is one; `fmnist.engine.parallel.Ranks` is the
    data-parallel one (a share of each batch, DDP, all-reduced totals, broadcast validation)."""

    def wrap(self, module):
        return module

    def share(self, x, y):
        return x, y

    def totals(self, objective, plain, correct):
        return objective.item(), plain.item(), int(correct.item())

    def logits(self, compute, rows):
        return compute()


class TorchBackend:
    """One torch module trained by `fmnist.engine.loop.fit`.

    hparams: the model's (optimizer, momentum, weight_decay, bias_lr, label_smoothing, lookahead and, if
    present, flip / shift / erase / photometric). fill: the normalised value of an empty pixel (for augmentation);
    `set_levels` gives the normalisation's mean and std, which photometric augmentation undoes and redoes. One
    generator, seeded by `seed`, draws the batch order and the augmentation; dropout draws from torch's global
    generator (the caller seeds it). total_steps: the planned number of steps (the lookahead's ramp). The step
    runs in one process unless `spread` hands it the ranks of a torchrun run. The backend runs on the module's
    device: the generator lives there, and the data the loop slices must too.
    """

    def __init__(self, module, hparams, *, seed, fill, total_steps, channels_last=False):
        self.module = module
        self.spread(OneProcess())
        self.optimizer = make_optimizer(module, hparams)
        self.lookahead = Lookahead(module, hparams["lookahead"], total_steps) if hparams["lookahead"] else None
        self.label_smoothing = hparams["label_smoothing"]
        self.augment = {k: hparams.get(k, 0) for k in ("flip", "shift", "erase")}
        self.photometric, self.levels = hparams.get("photometric", 0.0), (0.0, 1.0)
        self.fill = fill
        first = next(module.parameters(), None)
        device = "cpu" if first is None else first.device.type  # the backend works where the module is
        self.generator = devices.generator(device, seed, torch)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device = device
        # settled by the classifier: never "auto" here; fp16 (accelerators only) scales the loss against underflow
        self.autocast = devices.autocast_dtype(hparams.get("precision", "fp32"), torch)
        self.scaler = torch.amp.GradScaler(device) if self.autocast == torch.float16 else None

    def spread(self, ranks):
        """Run the steps in `ranks` (`OneProcess`, or `fmnist.engine.parallel.Ranks` under torchrun)."""
        self.ranks = ranks
        self.runner = ranks.wrap(self.module)  # what a training step calls (the DDP wrapper under torchrun)

    def forward_loss(self, x, y):
        """(logits, training loss) of a batch, in the run's precision (bf16 autocast: forward and loss only)."""
        dtype = self.autocast or torch.bfloat16
        with torch.autocast(self.device, dtype=dtype, enabled=self.autocast is not None):
            logits = self.runner(x)
            return logits, F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)

    def set_levels(self, mean, std):
        """The normalisation of the batches (x = (pixel / 255 - mean) / std), for photometric augmentation."""
        self.levels = (mean, std)

    def shuffle(self, n):
        return torch.randperm(n, generator=self.generator, device=self.generator.device)

    def train_step(self, x, y, lr):
        self.module.train()
        if self.photometric:  # drawn first, and only when asked for: runs without it keep their random stream
            x = random_photometric(x, self.photometric, *self.levels, self.generator)
        if any(self.augment.values()):  # the whole global batch under torchrun: every rank's generator stays equal
            x = augment_batch(x, **self.augment, fill=self.fill, generator=self.generator)
        x, y = self.ranks.share(x, y)
        x = x.contiguous(memory_format=self.memory_format)
        set_lr(self.optimizer, lr)
        logits, loss = self.forward_loss(x, y)
        with torch.no_grad():
            plain = F.cross_entropy(logits, y) if self.label_smoothing else loss.detach()
            objective, plain, correct = self.ranks.totals(loss.detach(), plain, (logits.argmax(1) == y).sum())
        if not math.isfinite(objective):  # under torchrun every rank sees the same sum: all skip the update
            return objective, objective, 0
        self.optimizer.zero_grad(set_to_none=True)
        self.update(loss)
        self.after_step()
        return objective, plain, correct

    def update(self, loss):
        """Backward and the optimizer's step; with fp16 through the gradient scaler (which skips overflowed steps)."""
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def after_step(self):
        if self.lookahead is not None:
            self.lookahead.after_step()

    def logits(self, x):
        channels_last = self.memory_format == torch.channels_last
        return self.ranks.logits(lambda: predict(self.module, x, channels_last=channels_last).cpu().numpy(), len(x))

    def weights(self):
        return copy.deepcopy(self.module.state_dict())

    def load_weights(self, weights):
        self.module.load_state_dict(weights)

    def state(self):
        state = {
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }
        state |= {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        return state | ({"lookahead": self.lookahead.state()} if self.lookahead is not None else {})

    def load_state(self, saved):
        self.module.load_state_dict(saved["module"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])
        if self.scaler is not None:
            self.scaler.load_state_dict(saved["scaler"])
        if self.lookahead is not None:
            self.lookahead.load_state(saved["lookahead"])
