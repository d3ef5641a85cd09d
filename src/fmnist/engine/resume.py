"""Stop training cleanly on Ctrl-C or SIGTERM and continue it later, bit for bit.

A training loop gets a `Resumer` (or None). It polls `stop_requested` after every batch; when it is set, the
loop hands its whole state to `stop(state)`, which writes it to RUN_DIR/resume.safetensors and raises
`Interrupted`. The loop also calls `save(state)` after every epoch, so a kill that cannot be caught (SIGKILL,
power loss) loses at most one epoch. `Resumer(run_dir, resume=True).saved` reads the state back.

A state is a tree of dicts, lists, tuples, numbers, strings, NumPy arrays and torch tensors. Arrays and
tensors go into the safetensors file, everything else into a JSON document in its metadata: no pickle. Each
save also records the global RNG states (Python, NumPy, torch); `restore(restore_state)`, which a loop calls
where it restores its own state, puts them back too.
"""

import json
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as safetensors_bytes

from fmnist.errors import Interrupted, UserError
from fmnist.files import atomic_path, parse_json, versioned

STATE_FILE = "resume.safetensors"
FORMAT = "fmnist-resume/2"  # 2: one training loop for every model (its state differs from 1)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
MAX_DEPTH = 64  # the skeleton nests two levels per level of the state (a hybrid's ~24)


def encode(tree, arrays, prefix="s"):
    """The JSON-able skeleton of `tree`; every array or tensor moves into `arrays` under a key it names."""
    if isinstance(tree, dict):
        if all(isinstance(k, str) for k in tree):
            return {"dict": {k: encode(v, arrays, f"{prefix}.{k}") for k, v in tree.items()}}
        if all(isinstance(k, int) for k in tree):  # torch's optimizer state is keyed by parameter index
            return {"intdict": {str(k): encode(v, arrays, f"{prefix}.{k}") for k, v in tree.items()}}
        raise TypeError(f"{prefix}: dict keys must be all str or all int")
    if isinstance(tree, list | tuple):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [encode(v, arrays, f"{prefix}.{i}") for i, v in enumerate(tree)]}
    if prefix in arrays:
        raise TypeError(f"{prefix}: two parts of the state would share this name")
    if isinstance(tree, np.ndarray):
        arrays[prefix] = np.require(tree, requirements="C")  # ascontiguousarray would make 0-d arrays 1-d
        return {"array": prefix}
    if type(tree).__module__.startswith("torch") and hasattr(tree, "numpy"):
        arrays[prefix] = np.require(tree.detach().cpu().numpy(), requirements="C")
        return {"tensor": prefix}
    if isinstance(tree, np.generic):
        return {"value": tree.item()}
    if tree is None or isinstance(tree, bool | int | float | str):
        return {"value": tree}
    raise TypeError(f"{prefix}: cannot save a {type(tree).__name__}")


KINDS = {"dict": dict, "intdict": dict, "list": list, "tuple": list, "array": str, "tensor": str}
SCALARS = (type(None), bool, int, float, str)


def decode(node, arrays):
    """The inverse of `encode`; a node that `encode` could not have written is a ValueError."""
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError(f"a node of the state is {type(node).__name__} {len(node) if isinstance(node, dict) else ''}")
    (kind, value), *_ = node.items()
    if not isinstance(value, KINDS.get(kind, SCALARS)) or (kind not in KINDS and kind != "value"):
        raise ValueError(f"a node of kind {kind!r} holds a {type(value).__name__}")
    if kind in ("array", "tensor") and value not in arrays:
        raise ValueError(f"the state names an array {value!r} the file does not hold")
    if kind == "dict":
        return {k: decode(v, arrays) for k, v in value.items()}
    if kind == "intdict":
        return {int(k): decode(v, arrays) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [decode(v, arrays) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "array":
        return arrays[value]
    if kind == "tensor":
        import torch  # only a torch model's state holds tensors, and torch is loaded by then

        return torch.from_numpy(arrays[value].copy())
    return value


def rng_states():
    """The global generators' states: Python's `random`, NumPy's legacy one, and torch's (if loaded)."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(legacy=False)}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        states["torch"] = torch.get_rng_state()
        if torch.cuda.is_initialized():  # dropout on a GPU draws from its own generator
            states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "torch" in states:
        sys.modules["torch"].set_rng_state(states["torch"])
    if "cuda" in states:
        sys.modules["torch"].cuda.set_rng_state(states["cuda"])


class Resumer:
    """The link between a training loop and RUN_DIR/resume.safetensors; a context manager that turns the first
    SIGINT or SIGTERM into a stop request (a second one interrupts at once)."""

    def __init__(self, run_dir, *, resume=False):
        self.path = Path(run_dir) / STATE_FILE
        self.signum = None
        self.started = time.perf_counter()  # reset by __enter__: training time is counted from there
        self.saved = self._read() if resume else None
        self.seconds_before = self.saved.pop("elapsed_seconds", 0.0) if self.saved else 0.0
        self._previous_handlers = {}

    @property
    def stop_requested(self):
        return self.signum is not None

    def elapsed_seconds(self):
        """Training time so far, the interrupted sessions included."""
        return self.seconds_before + time.perf_counter() - self.started

    def save(self, state):
        """Write `state` (and the global RNG states) atomically."""
        arrays = {}
        tree = state | {"rng": rng_states(), "elapsed_seconds": self.elapsed_seconds()}
        skeleton = json.dumps({"format": FORMAT, "state": encode(tree, arrays)})
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(safetensors_bytes(arrays, metadata={"fmnist": skeleton}))  # a full disk: an OSError

    def stop(self, state, where):
        """Save `state` and raise `Interrupted`, naming the run directory to resume."""
        self.save(state)
        name = signal.Signals(self.signum).name if self.signum else "a stop request"
        raise Interrupted(f"stopped by {name} at {where}; state saved in {self.path}", self.signum or signal.SIGINT)

    def finish(self):
        """The run completed: its resumable state is no longer needed."""
        self.path.unlink(missing_ok=True)

    def scoped(self, key, extra=None):
        return Scoped(self, key, extra or dict)

    def _read(self):
        if not self.path.is_file():
            raise UserError(f"{self.path.parent}: nothing to resume (no {STATE_FILE}: the run finished or never began)")
        try:
            with safe_open(str(self.path), framework="numpy") as fh:
                arrays = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 (not a dict)
                skeleton = (fh.metadata() or {}).get("fmnist", "{}")
        except (OSError, SafetensorError, ValueError) as exc:
            raise UserError(f"{self.path}: unreadable resume state ({exc})") from None
        # A state may hold an infinite number (a loss so far); what the loop uses is checked where it restores.
        document = parse_json(skeleton, f"{self.path} (its state)", MAX_DEPTH, constants=True)
        versioned(document, self.path, "format", FORMAT, "train the run anew")
        try:
            state = decode(document.get("state"), arrays)
        except (KeyError, ValueError, AttributeError, TypeError) as exc:
            raise UserError(f"{self.path}: damaged resume state ({exc})") from None
        bad = next((k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()), None)
        if bad is not None:
            raise UserError(f"{self.path}: damaged resume state ({bad} holds NaN or infinite values)")
        if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
            raise UserError(f"{self.path}: damaged resume state (no RNG states)")
        elapsed = state.get("elapsed_seconds", 0.0)
        if isinstance(elapsed, bool) or not isinstance(elapsed, int | float) or not 0 <= elapsed < math.inf:
            raise UserError(f"{self.path}: damaged resume state (elapsed_seconds is not a time)")
        return state

    def restore(self, restore_state):
        """Return `restore_state(saved)`, then set the global RNG states saved with it; a state that does not fit
        the model becomes a one-line error."""
        try:
            restored = restore_state(self.saved)
            set_rng_states(self.saved["rng"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())  # torch's messages span lines
            raise UserError(
                f"{self.path}: the saved state does not fit this model and settings ({problem[:300]})"
            ) from None
        return restored

    def __enter__(self):
        self.started = time.perf_counter()
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous_handlers.items():
            # None: a handler not installed from Python, which cannot be put back; the default is closest.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum, frame):
        # Only a flag: printing here could re-enter stderr while tqdm writes to it.
        if self.signum is not None:
            raise KeyboardInterrupt  # the second signal: stop now; the last end-of-epoch state remains
        self.signum = signum


class Scoped:
    """A part of a composite model's training (the hybrid's CNN, then its MLP): its state is saved under `key`,
    beside whatever `extra()` returns (the parts already trained)."""

    def __init__(self, parent, key, extra):
        self.parent, self.key, self.extra = parent, key, extra

    @property
    def saved(self):
        return (self.parent.saved or {}).get(self.key)

    @property
    def stop_requested(self):
        return self.parent.stop_requested

    def save(self, state):
        self.parent.save({self.key: state, **self.extra()})

    def stop(self, state, where):
        self.parent.stop({self.key: state, **self.extra()}, where)

    def restore(self, restore_state):
        return self.parent.restore(lambda _: restore_state(self.saved))
