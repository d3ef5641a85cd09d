"""The training engine for the torch models: in-memory tensors, seeded batches, one-cycle schedule, early stopping.

Data stay in memory as one float32 tensor (N, 1, 28, 28); each epoch draws batches from a seeded permutation
(no per-sample DataLoader) and augments whole batches with `fmnist.augment`. After every epoch the model is
validated; the best-on-validation weights are kept and restored at the end. A non-finite loss stops training
with a `UserError`, the best weights restored.
"""

import copy
import dataclasses
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fmnist.augment import augment_batch
from fmnist.errors import UserError

EVAL_BATCH = 256  # measured: faster than 1024 or 4096 on this CPU (cache-sized batches)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train; built from a model's hyper-parameters (see the registry for their meaning)."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    patience: int = 10
    flip: bool = False
    shift: int = 0
    erase: float = 0.0

    @classmethod
    def from_hparams(cls, hparams):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in hparams.items() if k in names})

    def check(self, model_name):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"{model_name} --{name.replace('_', '-')}: must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"{model_name} --lr: must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserError(f"{model_name} --optimizer {self.optimizer!r}: choose sgd or adamw")
        ranges = {
            "weight_decay": (0, math.inf),
            "label_smoothing": (0, 1),
            "patience": (1, math.inf),
            "shift": (0, 27),
            "erase": (0, 1),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise UserError(f"{model_name} --{name.replace('_', '-')}: {value} is outside [{low}, {high}]")


def use_all_cores():
    """Threads = cores: the conv kernels scale to both cores of this machine; called by fit, never at import."""
    torch.set_num_threads(os.cpu_count() or 1)


def to_tensor(images, mean, std):
    """uint8 (N, 28, 28) -> normalised float32 tensor (N, 1, 28, 28)."""
    x = torch.from_numpy(np.asarray(images).astype(np.float32)).unsqueeze(1)
    return (x / 255.0 - mean) / std


def make_optimizer(module, config):
    """SGD with Nesterov momentum or AdamW; no weight decay on biases and batch-norm parameters."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    no_decay = [p for p in module.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def one_cycle(total_steps, warmup=0.25):
    """Learning-rate factor per step: linear warm-up over the first quarter, then cosine decay to zero."""
    warm = max(1, round(warmup * total_steps))

    def factor(step):
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    return factor


def predict(module, x, *, channels_last=False, batch_size=EVAL_BATCH, method=None):
    """Run `module` (or `method`, e.g. module.features) in eval mode on x (N, 1, 28, 28); returns (N, K)."""
    module.eval()
    run = method or module
    batches = [x[start : start + batch_size] for start in range(0, len(x), batch_size)] or [x]
    with torch.inference_mode():
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return torch.cat([run(batch.contiguous(memory_format=memory_format)) for batch in batches])


def evaluate(module, x, y, *, channels_last=False):
    """(mean cross-entropy, accuracy) of `module` on x (N, 1, 28, 28), y (N,)."""
    logits = predict(module, x, channels_last=channels_last)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).sum().item() / max(len(y), 1)


def diverged(name, what, where):
    """The error for a non-finite loss; `fit_module` restores the best weights before it reaches the caller."""
    return UserError(f"{name}: {what} at {where}; try a lower --lr (the best weights so far are kept, if any)")


def fit_module(
    module, train, val, config, *, seed, fill, name, channels_last=False, progress=True, on_epoch=None, resumer=None
):
    """Train `module` in place; return the history (one dict per epoch) and leave the best weights loaded.

    train, val: (x float32 (N, 1, 28, 28), y int64 (N,)) tensors. fill: the normalised value of an empty pixel
    (for augmentation). on_epoch(epoch, module): called after each epoch outside the timed part (benchmarks).
    resumer: a `fmnist.resume.Resumer` (or None): its saved state, if any, is continued; the state is saved after
    every epoch, and training stops at the first batch boundary after a stop request.
    Raises UserError on a non-finite loss, after restoring the best weights seen so far.
    """
    config.check(name)
    x_train, y_train = train
    x_val, y_val = val
    if len(x_train) == 0 or len(x_val) == 0:
        raise UserError(f"{name}: the training and validation sets must not be empty")
    generator = torch.Generator().manual_seed(seed)
    steps = max(1, len(x_train) // config.batch_size)  # the last partial batch is dropped: batch norm needs size
    optimizer = make_optimizer(module, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle(config.epochs * steps))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    # Everything the loop carries from batch to batch, so that a saved copy can continue it exactly.
    loop = {"epoch": 1, "step": 0, "order": None, "loss_sum": 0.0, "correct": 0, "seen": 0, "epoch_seconds": 0.0}
    loop |= {"seconds": 0.0, "history": [], "best_state": None, "best_accuracy": -1.0, "since_best": 0}

    def restore(saved):
        module.load_state_dict(saved["module"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        return saved["loop"]

    if resumer is not None and resumer.saved is not None:
        loop = resumer.restore(restore)

    def state():
        return {
            "module": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "generator": generator.get_state(),
            "loop": loop,
        }

    done = (loop["epoch"] - 1) * steps + loop["step"]
    bar = tqdm(total=config.epochs * steps, initial=done, desc=name, unit="batch", disable=not progress, leave=False)
    try:
        while loop["epoch"] <= config.epochs:
            epoch = loop["epoch"]
            start = time.perf_counter() - loop["epoch_seconds"]
            module.train()
            if loop["order"] is None:
                loop["order"] = torch.randperm(len(x_train), generator=generator)
            for step in range(loop["step"], steps):
                index = loop["order"][step * config.batch_size : (step + 1) * config.batch_size]
                x = x_train[index]
                if config.flip or config.shift or config.erase:
                    x = augment_batch(
                        x, flip=config.flip, shift=config.shift, erase=config.erase, fill=fill, generator=generator
                    )
                x, y = x.contiguous(memory_format=memory_format), y_train[index]
                logits = module(x)
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
                if not torch.isfinite(loss):
                    raise diverged(name, f"training loss became {loss.item()}", f"epoch {epoch}, batch {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                with torch.no_grad():
                    plain = F.cross_entropy(logits, y) if config.label_smoothing else loss
                    loop["loss_sum"] += plain.item() * len(y)
                    loop["correct"] += (logits.argmax(1) == y).sum().item()
                    loop["seen"] += len(y)
                loop["step"] = step + 1
                bar.update()
                if step % 20 == 0:
                    seen = loop["seen"]
                    bar.set_postfix(
                        epoch=epoch, loss=f"{loop['loss_sum'] / seen:.3f}", acc=f"{loop['correct'] / seen:.3f}"
                    )
                if resumer is not None and resumer.stop_requested:
                    loop["epoch_seconds"] = time.perf_counter() - start
                    resumer.stop(state(), f"epoch {epoch}, batch {step + 1}")
            val_loss, val_accuracy = evaluate(module, x_val, y_val, channels_last=channels_last)
            if not math.isfinite(val_loss):
                raise diverged(name, f"validation loss became {val_loss}", f"the end of epoch {epoch}")
            loop["seconds"] += time.perf_counter() - start
            loop["history"].append(
                {
                    "epoch": epoch,
                    "loss": loop["loss_sum"] / loop["seen"],
                    "accuracy": loop["correct"] / loop["seen"],
                    "val_loss": val_loss,
                    "val_accuracy": val_accuracy,
                    "seconds": loop["seconds"],
                    "lr": optimizer.param_groups[0]["lr"],
                }
            )
            bar.set_postfix(epoch=epoch, loss=f"{loop['loss_sum'] / loop['seen']:.3f}", val_acc=f"{val_accuracy:.4f}")
            if val_accuracy > loop["best_accuracy"]:
                best = {
                    "best_state": copy.deepcopy(module.state_dict()),
                    "best_accuracy": val_accuracy,
                    "since_best": 0,
                }
                loop |= best
            else:
                loop["since_best"] += 1
            if on_epoch is not None:
                on_epoch(epoch, module)
            if loop["since_best"] >= config.patience:
                break
            loop |= {"epoch": epoch + 1, "step": 0, "order": None, "loss_sum": 0.0, "correct": 0, "seen": 0}
            loop["epoch_seconds"] = 0.0
            if resumer is not None and loop["epoch"] <= config.epochs:
                resumer.save(state())
    finally:
        bar.close()
        if loop["best_state"] is not None:
            module.load_state_dict(loop["best_state"])
    return loop["history"]
