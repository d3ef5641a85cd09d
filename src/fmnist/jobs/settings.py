"""A run's settings, built in one place whichever way the run starts: the command line's flags, a recorded
config (--resume, a torchrun restart), one seed of a compare plan, a tuning trial, or the Python API.

A `Setup` holds what every model of a run shares: the data split, the preset, the seed, the subset of training
images, the thread count and, under torchrun, the processes. The thread count is settled here, once, from a
fact that does not change while the machine is busy (the usable cores), as the models' precision is settled from
the processor's instructions (`fmnist.models.registry.Spec.complete`): the same command and seed give the same
bits whatever else runs. `fmnist.jobs.train.fit_model` applies the threads, for every way of training.
"""

import dataclasses
from typing import Any

from fmnist.data import dataset as data_module
from fmnist.engine import devices
from fmnist.engine import threads as threads_module
from fmnist.jobs import edits


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every model of a run shares. Build it with `build`, `recorded` or `for_splits`."""

    splits: data_module.Splits
    dataset: data_module.Dataset | None  # None for splits handed over by the API (nothing to record)
    preset: str = "fast"
    seed: int = 0
    subset: int | None = None  # training images kept (None: the full split)
    threads: int = 1  # torch's intra-op threads, settled
    progress: bool = True
    distributed: dict | None = None  # a data-parallel run's processes and backend (fmnist.engine.parallel)
    device: str = "auto"  # the torch models' device (fmnist.engine.devices): as asked, resolved per model
    tensorboard: str | None = None  # the folder each model's TensorBoard run folder goes in (None: no log)
    labels: Any = None  # --exclude-labels / --relabel: a `fmnist.jobs.edits.LabelEdits` (None: the labels as given)
    refit: bool = False  # after this run, train again on train + validation (fmnist.jobs.refit)
    # a refit's own: {"trust": the selection's trust record, "record": config.json's "refit_of"}; None otherwise
    held_out: dict | None = None
    # made once per run for all its models: the photo threshold's cut-outs (fmnist.predict.photo_trust)
    shared: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def record(self):
        """The settings config.json keeps and `recorded` reads back."""
        extra = {"distributed": self.distributed} if self.distributed else {}
        extra |= {"labels": self.labels.record()} if self.labels else {}
        extra |= {"refit": True} if self.refit else {}
        extra |= {"refit_of": self.held_out["record"]} if self.held_out else {}
        run = {"preset": self.preset, "seed": self.seed, "subset": self.subset, "threads": self.threads}
        return run | {"device": self.device, **extra}


def build(dataset, *, seed=0, subset=None, threads=None, ranks=1, **extra):
    """The Setup of a run on `dataset` (a verified `fmnist.data.dataset.Dataset`), split with `seed`.

    subset: keep that many training images (0 or None: all). threads: as given (--threads), else
    OMP_NUM_THREADS, else the usable cores shared among `ranks` processes. extra: preset, progress, distributed,
    device (a named accelerator is checked here, before any training), tensorboard, labels, refit.
    """
    if devices.explicit(extra.get("device")):
        devices.resolve(extra["device"])
    splits = data_module.split(dataset, seed)
    if extra.get("labels") is not None:  # dropped or relabelled before --subset takes the first images
        splits = edits.apply(splits, dataset, extra["labels"])
    subset = subset or None
    chosen = threads_module.choose(threads, ranks=ranks)
    return Setup(splits.quick(subset) if subset else splits, dataset, seed=seed, subset=subset, threads=chosen, **extra)


def recorded(config, dataset, **extra):
    """The Setup a recorded config.json describes (seed, subset, preset, threads): what --resume continues with."""
    keys = {"seed": config["seed"], "subset": config.get("subset"), "threads": config.get("threads")}
    keys["refit"] = bool(config.get("refit"))
    extra.setdefault("device", config.get("device") or "cpu")  # runs from before --device trained on the CPU
    if config.get("labels"):
        extra.setdefault("labels", edits.reread(config["labels"]))
    return build(dataset, preset=config.get("preset") or "fast", **keys, **extra)


def for_splits(splits, *, seed=0, threads=None, **extra):
    """The Setup of splits someone already holds (the API): threads settled as for `fmnist train`; nothing of it
    is recorded, so the subset stays unsaid. extra: progress, device."""
    return Setup(splits, None, seed=seed, threads=threads_module.choose(threads), **extra)
