"""`ScratchClassifier`: the NumPy MLP behind the common model interface, with its training loop and weight files.

Two levels: `fit(splits, seed=...)` / `predict_logits(images)` work on uint8 images and standardise them with
the train-split statistics the model keeps; `fit_arrays` / `logits_from_arrays` work on any float (N, D)
features exactly as given, so a caller with its own features (the hybrid) brings its own standardisation.
"""

import json
import math
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from tqdm.auto import tqdm

from fmnist import data, files
from fmnist.errors import UserError
from fmnist.scratch import augment
from fmnist.scratch import functional as F
from fmnist.scratch.mlp import MLP
from fmnist.scratch.optim import OPTIMIZERS, SCHEDULES, learning_rate, make_optimizer

NAME = "scratch-mlp"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "model.json"
FORMAT = "fmnist-scratch-mlp/1"


def _check(ok, what, message):
    if not ok:
        raise UserError(f"{NAME} {what}: {message}")


class ScratchClassifier:
    def __init__(
        self,
        hidden=(128,),
        epochs=20,
        batch_size=128,
        lr=1e-3,
        optimizer="adam",
        momentum=0.9,
        weight_decay=0.0,
        schedule="cosine",
        warmup_epochs=0,
        patience=5,
        flip=False,
        shift=0,
        shift_prob=1.0,
    ):
        hidden = (hidden,) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        _check(all(h >= 1 for h in hidden), "hidden", f"{list(hidden)}: every width must be >= 1")
        _check(int(epochs) >= 1, "epochs", f"{epochs} must be >= 1")
        _check(int(batch_size) >= 1, "batch_size", f"{batch_size} must be >= 1")
        _check(math.isfinite(lr) and lr > 0, "lr", f"{lr} must be a positive number")
        _check(optimizer in OPTIMIZERS, "optimizer", f"{optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        _check(0 <= momentum < 1, "momentum", f"{momentum} must be in [0, 1)")
        _check(math.isfinite(weight_decay) and weight_decay >= 0, "weight_decay", f"{weight_decay} must be >= 0")
        _check(schedule in SCHEDULES, "schedule", f"{schedule!r}: choose one of {', '.join(SCHEDULES)}")
        _check(0 <= warmup_epochs < epochs, "warmup_epochs", f"{warmup_epochs} must be in [0, epochs)")
        _check(int(patience) >= 1, "patience", f"{patience} must be >= 1")
        _check(shift == int(shift) and 0 <= shift < augment.SIDE, "shift", f"{shift}: a whole number of pixels, 0-27")
        _check(0 <= shift_prob <= 1, "shift_prob", f"{shift_prob} must be in [0, 1]")
        self.hparams = {
            "hidden": list(hidden),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "lr": float(lr),
            "optimizer": optimizer,
            "momentum": float(momentum),
            "weight_decay": float(weight_decay),
            "schedule": schedule,
            "warmup_epochs": int(warmup_epochs),
            "patience": int(patience),
            "flip": bool(flip),
            "shift": int(shift),
            "shift_prob": float(shift_prob),
        }
        self.mlp = None
        self.mean = self.std = None  # pixel statistics of the train split, set by `fit`
        self.best_epoch = 0

    # -- training ------------------------------------------------------------------------------------------

    def fit(self, splits, *, seed, progress=True, resumer=None):
        """Train on splits.x_train, validate on splits.x_val every epoch; returns the per-epoch history."""
        self.mean, self.std = float(splits.mean), float(splits.std)
        x_train = data.normalise_flat(splits.x_train, self.mean, self.std)
        x_val = data.normalise_flat(splits.x_val, self.mean, self.std)
        fill = (0.0 - self.mean) / self.std  # a blank pixel, standardised
        return self.fit_arrays(
            x_train, splits.y_train, x_val, splits.y_val, seed=seed, progress=progress, resumer=resumer, fill=fill
        )

    def fit_arrays(self, x_train, y_train, x_val, y_val, *, seed, progress=True, resumer=None, fill=None):
        """Train on float features x_train (N, D), int labels y_train (N,); validate on (M, D), (M,).

        Features are used as given (no standardisation). `seed` fixes the initialisation, the shuffle and the
        augmentation. Augmentation (the flip and shift hyper-parameters) needs images, x (N, 784), and `fill`,
        the value of a blank pixel in their scale.
        Returns one dict per epoch: epoch, loss, accuracy (train, over the epoch's batches), val_loss,
        val_accuracy, seconds (cumulative, training plus validation), lr (at the epoch's last step).
        The model ends with the weights of the best validation accuracy.
        resumer: a `fmnist.resume.Resumer` (or None): its saved state, if any, is continued; the state is saved
        after every epoch, and training stops at the first batch boundary after a stop request.
        """
        x_train, y_train = _as_features(x_train, y_train, "training")
        x_val, y_val = _as_features(x_val, y_val, "validation")
        _check(x_train.shape[1] == x_val.shape[1], "features", "training and validation widths differ")
        hp = self.hparams
        if hp["flip"] or hp["shift"]:
            _check(x_train.shape[1] == augment.SIDE**2 and fill is not None, "flip/shift", "augment images only")
        self.mlp = MLP([x_train.shape[1], *hp["hidden"], data.NUM_CLASSES], rng=np.random.default_rng([seed, 0]))
        shuffle_rng = np.random.default_rng([seed, 1])
        augment_rng = np.random.default_rng([seed, 2])
        optimizer = make_optimizer(hp["optimizer"], self.mlp.params, hp["lr"], hp["momentum"])
        # Everything the loop carries from batch to batch, so that a saved copy can continue it exactly.
        loop = {"epoch": 1, "batch": 0, "order": None, "loss_sum": 0.0, "correct": 0, "epoch_seconds": 0.0}
        loop |= {"seconds": 0.0, "history": []}
        loop["best"] = {"accuracy": -1.0, "loss": math.inf, "params": self.mlp.copy_params(), "epoch": 0}

        def restore(saved):
            self.mlp.set_params(saved["params"])
            optimizer.load_state_dict(saved["optimizer"])
            shuffle_rng.bit_generator.state = saved["shuffle_rng"]
            augment_rng.bit_generator.state = saved["augment_rng"]
            return saved["loop"]

        if resumer is not None and resumer.saved is not None:
            loop = resumer.restore(restore)

        def state():
            return {
                "params": self.mlp.params,
                "optimizer": optimizer.state_dict(),
                "shuffle_rng": shuffle_rng.bit_generator.state,
                "augment_rng": augment_rng.bit_generator.state,
                "loop": loop,
            }

        bar = tqdm(
            total=hp["epochs"], initial=loop["epoch"] - 1, desc=NAME, unit="epoch", disable=not progress, leave=False
        )
        # Overflow is reported once, by the non-finite loss guard, instead of as NumPy warnings along the way.
        with bar, np.errstate(over="ignore", invalid="ignore"):
            while loop["epoch"] <= hp["epochs"]:
                epoch, start_time = loop["epoch"], time.perf_counter() - loop["epoch_seconds"]
                if loop["order"] is None:
                    loop["order"] = shuffle_rng.permutation(len(x_train))
                augmenter = (lambda xb: self._augment(xb, fill, augment_rng)) if hp["flip"] or hp["shift"] else None
                self._train_epoch(x_train, y_train, loop, optimizer, augmenter, resumer, state, start_time)
                loss, accuracy = loop["loss_sum"] / len(x_train), loop["correct"] / len(x_train)
                val_loss, val_accuracy = self._evaluate(x_val, y_val)
                if not math.isfinite(val_loss):
                    self._diverged(loop["best"], f"validation after epoch {epoch}", val_loss, optimizer.lr)
                loop["seconds"] += time.perf_counter() - start_time
                loop["history"].append(
                    {
                        "epoch": epoch,
                        "loss": loss,
                        "accuracy": accuracy,
                        "val_loss": val_loss,
                        "val_accuracy": val_accuracy,
                        "seconds": loop["seconds"],
                        "lr": optimizer.lr,
                    }
                )
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", val_acc=f"{val_accuracy:.4f}")
                best = loop["best"]
                if (val_accuracy, -val_loss) > (best["accuracy"], -best["loss"]):
                    params = self.mlp.copy_params()
                    loop["best"] = {"accuracy": val_accuracy, "loss": val_loss, "params": params, "epoch": epoch}
                elif epoch - best["epoch"] >= hp["patience"]:
                    break
                loop |= {"epoch": epoch + 1, "batch": 0, "order": None, "loss_sum": 0.0, "correct": 0}
                loop["epoch_seconds"] = 0.0
                if resumer is not None and loop["epoch"] <= hp["epochs"]:
                    resumer.save(state())
        self.mlp.set_params(loop["best"]["params"])
        self.best_epoch = loop["best"]["epoch"]
        return loop["history"]

    def _augment(self, x, fill, rng):
        hp = self.hparams
        return augment.augment(x, flip=hp["flip"], shift=hp["shift"], fill=fill, rng=rng, shift_prob=hp["shift_prob"])

    def _train_epoch(self, x, y, loop, optimizer, augmenter, resumer, state, start_time):
        """Continue the epoch `loop` describes over x (N, D), y (N,) in its seeded order, from its next batch.

        augmenter: None, or a function of a batch (B, D) returning the batch to train on."""
        hp, n = self.hparams, len(x)
        batches = math.ceil(n / hp["batch_size"])
        total_steps, warmup_steps = hp["epochs"] * batches, hp["warmup_epochs"] * batches
        for b in range(loop["batch"], batches):
            idx = loop["order"][b * hp["batch_size"] : (b + 1) * hp["batch_size"]]
            xb, yb = x[idx], y[idx]
            if augmenter is not None:
                xb = augmenter(xb)
            step = (loop["epoch"] - 1) * batches + b
            optimizer.lr = learning_rate(hp["schedule"], step, total_steps, hp["lr"], warmup_steps)
            loss, data_loss, logits, grads = self.mlp.loss_and_grads(xb, yb, hp["weight_decay"])
            if not math.isfinite(loss):
                self._diverged(loop["best"], f"epoch {loop['epoch']}, batch {b + 1}", loss, optimizer.lr)
            optimizer.step(grads)
            loop["loss_sum"] += data_loss * len(idx)
            loop["correct"] += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            loop["batch"] = b + 1
            if resumer is not None and resumer.stop_requested:
                loop["epoch_seconds"] = time.perf_counter() - start_time
                resumer.stop(state(), f"epoch {loop['epoch']}, batch {b + 1}")

    def _evaluate(self, x, y):
        logits = self.mlp.logits(x)
        loss, _ = F.softmax_cross_entropy(logits, y, need_grad=False)
        return loss, F.accuracy(logits, y)

    def _diverged(self, best, where, loss, lr):
        """Keep the best weights so far (the initial ones if no epoch finished), then stop with a clear error."""
        self.mlp.set_params(best["params"])
        self.best_epoch = best["epoch"]
        kept = f"weights of epoch {best['epoch']} kept" if best["epoch"] else "no epoch finished, initial weights kept"
        raise UserError(f"{NAME} training: loss became {loss} at {where} with lr {lr:.3g}; try a lower --lr ({kept})")

    # -- inference -----------------------------------------------------------------------------------------

    def _trained(self):
        if self.mlp is None:
            raise UserError(f"{NAME}: the model has not been trained or loaded")
        return self.mlp

    def logits_from_arrays(self, x):
        """Float features (N, D), already prepared as in `fit_arrays` -> float32 logits (N, 10)."""
        mlp = self._trained()
        x = np.asarray(x, dtype=np.float32)
        _check(
            x.ndim == 2 and x.shape[1] == mlp.layer_sizes[0],
            "input",
            f"shape {x.shape}, expected (N, {mlp.layer_sizes[0]})",
        )
        return mlp.logits(x)

    def _flat(self, images):
        if self.mean is None:
            raise UserError(f"{NAME}: trained on feature arrays, so it takes features (logits_from_arrays), not images")
        return data.normalise_flat(np.asarray(images), self.mean, self.std)

    def predict_logits(self, images):
        """uint8 images (N, 28, 28) -> float32 logits (N, 10)."""
        return self.logits_from_arrays(self._flat(images))

    def predict_proba(self, images):
        """uint8 images (N, 28, 28) -> float32 class probabilities (N, 10)."""
        return F.softmax(self.predict_logits(images))

    def predict(self, images):
        """uint8 images (N, 28, 28) -> int64 classes (N,)."""
        return self.predict_logits(images).argmax(axis=1)

    def num_parameters(self):
        return self._trained().num_parameters()

    # -- weight files --------------------------------------------------------------------------------------

    def save(self, folder):
        """Write weights.safetensors and model.json (layer sizes, hparams, pixel statistics), each atomically."""
        mlp = self._trained()
        folder = Path(folder)
        tensors = {}
        for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
        with files.atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        meta = {
            "format": FORMAT,
            "layer_sizes": mlp.layer_sizes,
            "hparams": self.hparams,
            "mean": self.mean,
            "std": self.std,
            "best_epoch": self.best_epoch,
        }
        files.write_json(folder / META_FILE, meta)

    @classmethod
    def load(cls, folder):
        """Rebuild a model written by `save`, bit for bit."""
        folder = Path(folder)
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise UserError(f"{path}: file not found (not a {NAME} model folder?)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{meta_path}: not valid JSON ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{meta_path}: not a {FORMAT} metadata file")
        try:
            tensors = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises its own error types for a damaged header
            raise UserError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
        model = cls(**meta["hparams"])
        model.mean, model.std, model.best_epoch = meta["mean"], meta["std"], meta["best_epoch"]
        model.mlp = MLP(meta["layer_sizes"])
        names = [f"layers.{i}.{kind}" for i in range(len(model.mlp.weights)) for kind in ("weight", "bias")]
        if sorted(tensors) != sorted(names):
            raise UserError(f"{weights_path}: tensors {sorted(tensors)} do not match layer sizes {meta['layer_sizes']}")
        try:
            model.mlp.set_params([tensors[name] for name in names])
        except ValueError as exc:
            raise UserError(f"{weights_path}: {exc}") from exc
        return model


def _as_features(x, y, which):
    """Check and convert (N, D) features to float32 and (N,) labels to int64."""
    x, y = np.asarray(x), np.asarray(y)
    _check(x.ndim == 2 and len(x) > 0, f"{which} features", f"shape {x.shape}, expected a non-empty (N, D) array")
    _check(np.issubdtype(x.dtype, np.floating), f"{which} features", f"dtype {x.dtype}, expected floats")
    _check(y.shape == (len(x),), f"{which} labels", f"shape {y.shape}, expected ({len(x)},)")
    _check(y.min() >= 0 and y.max() < data.NUM_CLASSES, f"{which} labels", f"outside 0-{data.NUM_CLASSES - 1}")
    return np.asarray(x, dtype=np.float32), y.astype(np.int64, copy=False)
