"""The one training loop. A backend (torch or NumPy) supplies the maths; the loop owns everything else.

It owns the order of the batches, the learning rate of every step, polling for a stop, validation after every
epoch, the best-on-validation weights, patience, divergence, the history rows and the resumable state.

A backend (`fmnist.engine.backend.Backend`) answers shuffle, train_step, logits, weights / load_weights and
state / load_state; `x` and `y` are whatever it keeps its data in (torch tensors, NumPy arrays): the loop only
slices them.

Observers (LoopConfig.observers, e.g. a TensorBoard log) watch without steering: each one's
`epoch_ended(row, facts)` is called after every epoch, the last included, with the history row and
facts = {"images_per_s": training images per second of the epoch, "images": how many it trained on}.
"""

import dataclasses
import math
import time

import numpy as np
from tqdm.auto import tqdm

from fmnist import files
from fmnist.engine.backend import Backend
from fmnist.engine.schedule import learning_rate, warmup_steps
from fmnist.errors import Diverged
from fmnist.metrics import scores


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """How to train; the values come from a model's hyper-parameters (see the registry for their meaning)."""

    name: str  # the model, for progress bars and errors
    epochs: int
    batch_size: int
    lr: float
    patience: int
    warmup: float = 0.0  # fraction of all steps
    schedule: str = "cosine"
    keep: str = "best"  # "last": every epoch runs and the last weights stay (validation only watched)
    drop_last: bool = False  # batch norm needs whole batches; the last partial one is dropped
    progress: bool = True
    observers: tuple = ()  # objects with epoch_ended(row, facts), see the module's docstring

    @classmethod
    def from_hparams(cls, name, hparams, **fixed):
        names = {f.name for f in dataclasses.fields(cls)} - set(fixed) - {"name"}
        return cls(name=name, **{k: hparams[k] for k in names if k in hparams}, **fixed)

    def steps_per_epoch(self, n):
        return max(1, n // self.batch_size) if self.drop_last else math.ceil(n / self.batch_size)


def fresh_state(backend: Backend) -> dict:
    """What the loop carries from batch to batch, so that a saved copy can continue it exactly."""
    return {
        "epoch": 1,
        "step": 0,
        "order": None,
        "loss_sum": 0.0,
        "correct": 0,
        "seen": 0,
        "epoch_seconds": 0.0,
        "seconds": 0.0,
        "lr": 0.0,
        "history": [],
        "best": {"accuracy": -1.0, "epoch": 0, "weights": backend.weights()},
    }


def fit(backend: Backend, train, val, config: LoopConfig, resumer=None, on_epoch=None) -> list[dict]:
    """Train `backend` on train = (x, y), validating on val = (x, y labels ndarray) after every epoch.

    Returns the history: one dict per epoch with epoch, loss and accuracy (train, over the epoch's batches),
    val_loss, val_accuracy, seconds (cumulative, training plus validation) and lr (at the epoch's last step).

    The backend ends with its best-on-validation weights. resumer: a `fmnist.engine.resume.Resumer` (or None):
    its saved state, if any, is continued; the state is saved after every epoch, and training stops at the
    first batch boundary after a stop request. on_epoch(row): called with the epoch's history row after each
    epoch that training continues past, outside the timed part (it may raise to end training, e.g. pruning).
    Raises Diverged on a non-finite loss, after loading the best weights so far.
    """
    if len(train[0]) == 0 or len(val[0]) == 0:
        raise ValueError(f"{config.name}: the training and validation sets must not be empty")
    loop = fresh_state(backend)
    if resumer is not None and resumer.saved is not None:
        loop = resumer.restore(lambda saved: _restored(backend, saved, config, len(train[0])))
    steps = config.steps_per_epoch(len(train[0]))
    done = (loop["epoch"] - 1) * steps + loop["step"]
    bar = tqdm(
        total=config.epochs * steps,
        initial=done,
        desc=config.name,
        unit="batch",
        disable=not config.progress,
        leave=False,
    )
    try:
        while loop["epoch"] <= config.epochs:
            _run_epoch(backend, train, config, loop, (bar, resumer))
            stop = _end_epoch(backend, val, config, loop, bar)
            _tell(config.observers, loop)
            if stop:
                break
            if on_epoch is not None:
                on_epoch(loop["history"][-1])
            loop |= {"epoch": loop["epoch"] + 1, "step": 0, "order": None, "loss_sum": 0.0, "correct": 0, "seen": 0}
            loop["epoch_seconds"] = 0.0
            if resumer is not None and loop["epoch"] <= config.epochs:
                resumer.save(_state(backend, loop))
    except Diverged:
        backend.load_weights(loop["best"]["weights"])
        raise
    finally:
        bar.close()
    backend.load_weights(loop["best"]["weights"])
    return loop["history"]


def _tell(observers, loop):
    """Hand the epoch just recorded to each observer (outside the timed part)."""
    if observers:
        facts = {"images_per_s": loop["seen"] / max(loop["epoch_seconds"], 1e-9), "images": loop["seen"]}
        for observer in observers:
            observer.epoch_ended(loop["history"][-1], facts)


def _restored(backend, saved, config, n):
    """The loop's saved state, checked to be one this loop could have saved for `config` and n training items
    (a ValueError if not: a tampered step must read as a bad file, not as divergence)."""
    loop = saved["loop"]
    steps = config.steps_per_epoch(n)
    seconds, count = files.number(0), files.whole()
    row = files.mapping(
        dict.fromkeys(("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "lr"), files.number())
    )
    schema = files.mapping(
        {
            "epoch": files.whole(1, config.epochs),
            "step": files.whole(0, steps),
            "loss_sum": files.number(0),
            "correct": count,
            "seen": count,
            "epoch_seconds": seconds,
            "seconds": seconds,
            "lr": files.number(0),
            "history": files.listing(row, high=config.epochs),
            "best": files.mapping({"accuracy": files.number(-1, 1), "epoch": files.whole(0, config.epochs)}),
        }
    )
    try:
        schema(loop, "loop")
    except files.Invalid as exc:
        raise ValueError(str(exc)) from None
    if (
        len(loop["history"]) != loop["epoch"] - 1
        or loop["correct"] > loop["seen"]
        or loop["best"]["epoch"] >= loop["epoch"]
    ):
        raise ValueError("loop: its epoch, history, counts and best epoch do not agree")
    if loop["order"] is not None:
        order = np.asarray(loop["order"])
        if order.ndim != 1 or order.dtype.kind not in "iu" or (order.size and not 0 <= order.min() <= order.max() < n):
            raise ValueError(f"loop.order: not an order of the {n} training items")
    backend.load_weights(loop["best"]["weights"])  # they must fit; the state's own weights replace them next
    backend.load_state(saved["backend"])
    return loop


def _state(backend, loop):
    return {"backend": backend.state(), "loop": loop}


def _run_epoch(backend, train, config, loop, watchers):
    """Continue the epoch `loop` describes from its next batch."""
    bar, resumer = watchers
    x, y = train
    steps = config.steps_per_epoch(len(x))
    total = config.epochs * steps
    warm = warmup_steps(config.warmup, total)
    epoch, start = loop["epoch"], time.perf_counter() - loop["epoch_seconds"]
    if loop["order"] is None:
        loop["order"] = backend.shuffle(len(x))
    for step in range(loop["step"], steps):
        index = loop["order"][step * config.batch_size : (step + 1) * config.batch_size]
        lr = learning_rate((epoch - 1) * steps + step, total, config.lr, warm, config.schedule)
        objective, loss, correct = backend.train_step(x[index], y[index], lr)
        if not math.isfinite(objective):
            raise Diverged(
                config.name,
                f"training loss became {objective}",
                f"epoch {epoch}, batch {step + 1}",
                lr,
                loop["best"]["epoch"],
            )
        loop["loss_sum"] += loss * len(index)
        loop["correct"] += correct
        loop["seen"] += len(index)
        loop["step"], loop["lr"] = step + 1, lr
        bar.update()
        if step % 20 == 0:
            bar.set_postfix(epoch=epoch, loss=f"{loop['loss_sum'] / loop['seen']:.3f}")
        if resumer is not None and resumer.stop_requested:
            loop["epoch_seconds"] = time.perf_counter() - start
            resumer.stop(_state(backend, loop), f"epoch {epoch}, batch {step + 1}")
    loop["epoch_seconds"] = time.perf_counter() - start


def _end_epoch(backend, val, config, loop, bar):
    """Validate, record the epoch, keep the best weights; True when patience has run out."""
    start = time.perf_counter()
    epoch, best = loop["epoch"], loop["best"]
    logits = backend.logits(val[0])
    val_loss, val_accuracy = scores.mean_log_loss(logits, val[1]), scores.accuracy(logits, val[1])
    if not math.isfinite(val_loss):
        raise Diverged(
            config.name, f"validation loss became {val_loss}", f"the end of epoch {epoch}", loop["lr"], best["epoch"]
        )
    loop["seconds"] += loop["epoch_seconds"] + time.perf_counter() - start
    row = {"epoch": epoch, "loss": loop["loss_sum"] / loop["seen"], "accuracy": loop["correct"] / loop["seen"]}
    row |= {"val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": loop["seconds"], "lr": loop["lr"]}
    loop["history"].append(row)
    bar.set_postfix(epoch=epoch, loss=f"{row['loss']:.3f}", val_acc=f"{val_accuracy:.4f}")
    # a tie keeps the earlier, shorter-trained weights; a refit (keep "last") trains on its validation images too,
    # so they choose nothing there
    if val_accuracy > best["accuracy"] or config.keep == "last":
        loop["best"] = {"accuracy": val_accuracy, "epoch": epoch, "weights": backend.weights()}
        return False
    return epoch - best["epoch"] >= config.patience


def best_epoch(history):
    """The epoch whose weights `fit` kept: the first with the best validation accuracy (0 for no epoch)."""
    if not history:
        return 0
    return max(history, key=lambda row: (row["val_accuracy"], -row["epoch"]))["epoch"]
