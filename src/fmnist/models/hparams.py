"""What a hyper-parameter is (default, meaning, allowed values, search space), and the groups of them that
several models share (the loop's, the torch models', the from-scratch MLP's). The registry builds each model's
table from these.
"""

import dataclasses
import math

from fmnist.engine.precision import CHOICES as PRECISIONS
from fmnist.engine.schedule import SCHEDULES

KEEPS = ("best", "last")  # fmnist.engine.loop.LoopConfig.keep
MAX_ENTRIES = 64  # of a tuple (e.g. hidden layer widths): more layers than any model here would train


@dataclasses.dataclass(frozen=True)
class Hparam:
    """One hyper-parameter: its default (whose type is the value's type), meaning and allowed values.

    low / high bound a number, or every entry of a tuple, inclusively; choices lists a string's values;
    length, if not 0, is the number of entries a tuple must have. search, if not empty, is where `fmnist tune`
    looks: ("log", low, high), ("float", low, high), ("int", low, high) or ("choice", (values...)).
    """

    default: object
    help: str
    low: float = -math.inf
    high: float = math.inf
    choices: tuple = ()
    length: int = 0
    search: tuple = ()

    def problem(self, value):
        """None if `value` is allowed, else why not (for an error message)."""
        kind = type(self.default)
        if kind is tuple:
            count = len(value) if isinstance(value, tuple) else 0
            if not 0 < count <= MAX_ENTRIES or count != (self.length or count):
                return f"{value!r}: expected {self.length or f'1 to {MAX_ENTRIES}'} whole numbers"
            return next(filter(None, (self._number_problem(v, int) for v in value)), None)
        if kind is bool:
            return None if isinstance(value, bool) else f"{value!r}: expected true or false"
        if kind is str:
            return None if value in self.choices else f"{value!r}: choose one of {', '.join(self.choices)}"
        return self._number_problem(value, kind)

    def _number_problem(self, value, kind):
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            return f"{value!r}: expected {'a whole number' if kind is int else 'a number'}"
        if not ((isinstance(value, int) or math.isfinite(value)) and self.low <= value <= self.high):
            return f"{value} is outside [{self.low:g}, {self.high:g}]"
        return None

    def allowed(self):
        """The allowed values in words, for --help: 'one of ...' or '[low, high]' ('' for a flag)."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if isinstance(self.default, bool):
            return ""
        return f"[{self.low:g}, {self.high:g}]" + (" each" if isinstance(self.default, tuple) else "")

    def coerce(self, value):
        """A value read back from JSON or a preset: lists become tuples, whole floats of int entries ints."""
        if isinstance(self.default, tuple) and isinstance(value, list | tuple):
            return tuple(value)
        if type(self.default) is int and isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def loop_hparams(epochs, batch_size, lr, patience, warmup, schedule="cosine"):
    """The hyper-parameters of the shared training loop (fmnist.engine.loop), with this model's defaults."""
    return {
        "epochs": Hparam(epochs, "maximum training epochs", 1, 10_000),
        "batch_size": Hparam(batch_size, "mini-batch size", 1, 65_536),
        "lr": Hparam(lr, "peak learning rate of the schedule", 1e-8, 100.0),
        "warmup": Hparam(warmup, "fraction of the steps spent warming the learning rate up linearly", 0.0, 0.9),
        "patience": Hparam(patience, "epochs without validation improvement before stopping", 1, 10_000),
        "keep": Hparam(
            "best",
            "the weights training ends with: best (on validation; patience applies) or last (every epoch runs: a "
            "refit on all training images, where no held-out data is left to choose on)",
            choices=KEEPS,
        ),
        "schedule": Hparam(
            schedule,
            "learning rate per step after the warm-up: cosine (down to zero), constant, or triangle (from 0.2x the "
            "peak up over the warm-up, then linearly down to 0.07x)",
            choices=SCHEDULES,
        ),
    }


def precision_hparam(default):
    return {
        "precision": Hparam(
            default,
            "training arithmetic: fp32, bf16 (autocast forward and loss), or auto (bf16 where the CPU has it natively "
            "and it measures faster; on a GPU: bf16 where supported, else fp16 with a gradient scaler; settled before "
            "training and recorded); fp16: accelerators only",
            choices=PRECISIONS,
        )
    }


def torch_hparams(optimizer, weight_decay, label_smoothing, momentum=0.9, bias_lr=1.0, lookahead=0):
    return {
        "optimizer": Hparam(optimizer, "sgd (Nesterov momentum) or adamw", choices=("sgd", "adamw")),
        "momentum": Hparam(momentum, "momentum of sgd", 0, 0.999),
        "weight_decay": Hparam(weight_decay, "decoupled (AdamW) or L2 (SGD) weight decay, not on biases or BN", 0, 1),
        "bias_lr": Hparam(bias_lr, "learning rate of biases and batch-norm parameters, relative to the others", 0, 1e4),
        "label_smoothing": Hparam(label_smoothing, "label smoothing of the training loss", 0, 1),
        "lookahead": Hparam(
            lookahead, "every this many steps, average the weights into a slow copy and go on from it (0: off)", 0, 999
        ),
    }


def torch_augment_hparams(flip, shift):
    return {
        "flip": Hparam(flip, "augment: mirror images left-right at random"),
        "shift": Hparam(shift, "augment: random shifts of up to this many pixels", 0, 27),
        "erase": Hparam(0.0, "augment: probability of erasing a random rectangle", 0, 1),
        "photometric": Hparam(
            0.0, "augment: fraction of images whose levels change as photos' do (gain, gamma, contrast)", 0, 1
        ),
    }


def scratch_hparams(hidden, weight_decay):
    """The from-scratch MLP's own hyper-parameters (the scratch-mlp model and the hybrid's classifier)."""
    return {
        "hidden": Hparam(hidden, "hidden layer widths", 1, 65_536),
        "optimizer": Hparam("adam", "adam, sgd (heavy-ball momentum) or nesterov", choices=("adam", "sgd", "nesterov")),
        "momentum": Hparam(0.9, "momentum of sgd and nesterov", 0, 0.999),
        "weight_decay": Hparam(weight_decay, "L2 penalty on the weight matrices (0.5 * wd * sum of squares)", 0, 1),
    }
