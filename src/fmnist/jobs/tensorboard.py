"""`--tensorboard DIR`: a model's training as TensorBoard shows it, written beside the run (torch.utils.tensorboard).

One run folder per model and seed: DIR/<model>-seed<S> for `train`, DIR/<compare out name>/<model>-seed<S> for
a compare (so TensorBoard lists a compare's models and seeds as one group) and DIR/<study>/trial-<N> for `tune`.
`RunLog` is an observer of the one training loop (fmnist.engine.loop): after every epoch it writes train/loss,
train/accuracy, val/loss, val/accuracy, train/lr and train/images_per_s, with the epoch as the step. At the end
it writes the hyper-parameters with the final metrics (the HParams dashboard), the test confusion matrix, the
most confident test mistakes and, for a model with a feature layer, a sample of test feature vectors with their
images and classes for the embedding projector.

`SummaryWriter.add_hparams` writes its summary into a new sub-folder named after the clock, which TensorBoard then
lists as a run of its own (pytorch/pytorch#32651); here the same summaries go through the run's own file writer,
so the hyper-parameters sit in the run folder beside its curves.
"""

import shutil
from pathlib import Path

import numpy as np

from fmnist.data.dataset import CLASS_NAMES
from fmnist.errors import UserError
from fmnist.metrics import scores

SCALARS = (
    ("train/loss", "loss"),
    ("train/accuracy", "accuracy"),
    ("val/loss", "val_loss"),
    ("val/accuracy", "val_accuracy"),
    ("train/lr", "lr"),
)
EMBEDDING_SAMPLE = 1_000  # the projector's sprite of 28x28 images stays under 1,000 x 1,000 pixels


def _clear(folder):
    """Remove an earlier log of the same model and seed, so a new run does not mix with it (a resume keeps it)."""
    for old in folder.glob("events.out.tfevents.*"):
        old.unlink()
    (folder / "projector_config.pbtxt").unlink(missing_ok=True)
    for step in folder.glob("[0-9][0-9][0-9][0-9][0-9]"):  # add_embedding's folders, named by step
        shutil.rmtree(step, ignore_errors=True)


def figure_pixels(figure):
    """A matplotlib Figure rendered as uint8 RGB (H, W, 3), without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def hparam_values(hparams):
    """Hyper-parameters as the HParams plugin takes them: numbers, strings and booleans (tuples as text)."""
    return {k: v if isinstance(v, bool | int | float | str) else " ".join(map(str, v)) for k, v in hparams.items()}


class RunLog:
    """The TensorBoard log of one model's run in `folder`; fresh: clear an earlier run's files there first."""

    def __init__(self, folder, *, fresh=True):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs TensorBoard: pip install 'fmnist[tensorboard]'") from None

        folder = Path(folder)
        if fresh and folder.is_dir():
            _clear(folder)
        self.folder = folder
        self.writer = SummaryWriter(log_dir=str(folder))
        self.rows = []

    def epoch_ended(self, row, facts):
        step = row["epoch"]
        for tag, key in SCALARS:
            self.writer.add_scalar(tag, row[key], step)
        self.writer.add_scalar("train/images_per_s", facts["images_per_s"], step)
        self.writer.flush()  # a stopped run keeps every epoch it finished
        self.rows.append(row)

    def write_hparams(self, hparams, metrics):
        """The HParams entry in this run's own folder (see the module's docstring), and the metrics as scalars."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        experiment, start, end = hparams_summary(hparam_values(hparams), metrics)
        file_writer = self.writer._get_file_writer()  # the run folder's own event file
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        step = self.rows[-1]["epoch"] if self.rows else 0
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def finish(self, hparams, record, model, splits, test_logits):
        """At the end of a run: hyper-parameters and final metrics, confusion, mistakes, feature embedding."""
        from fmnist.report import plots

        metrics = {f"hparam/{split}_accuracy": float(record[split]["accuracy"]) for split in ("val", "test")}
        metrics |= {f"hparam/{split}_loss": float(record[split]["log_loss"]) for split in ("val", "test")}
        self.write_hparams(hparams, metrics | {"hparam/train_seconds": float(record["train_seconds"])})
        step = self.rows[-1]["epoch"] if self.rows else 0
        title = f"{record['model']}: test"
        confusion = plots.confusion(record["test"]["confusion_matrix"], f"{title} confusion matrix")
        self.writer.add_image("test/confusion_matrix", figure_pixels(confusion), step, dataformats="HWC")
        probs = scores.softmax(test_logits)
        mistakes = plots.misclassified(splits.x_test, splits.y_test, probs, f"{title}: most confident mistakes")
        if mistakes is not None:
            self.writer.add_image("test/worst_mistakes", figure_pixels(mistakes), step, dataformats="HWC")
        if hasattr(model, "features"):
            self.add_embedding(model, splits, step)
        self.close()

    def add_embedding(self, model, splits, step):
        """A sample of test feature vectors, labelled by class and shown by their images, for the projector."""
        import torch

        pick = np.random.default_rng(0).permutation(len(splits.x_test))[:EMBEDDING_SAMPLE]
        images, labels = splits.x_test[pick], splits.y_test[pick]
        label_img = torch.from_numpy(images).float().unsqueeze(1) / 255.0
        metadata = [CLASS_NAMES[c] for c in labels]
        self.writer.add_embedding(model.features(images), metadata, label_img, step, tag="features")

    def finish_trial(self, hparams):
        """A tuning trial's end: its hyper-parameters with the best validation accuracy it reached."""
        best = max((row["val_accuracy"] for row in self.rows), default=0.0)
        self.write_hparams(hparams, {"hparam/val_accuracy": float(best), "hparam/epochs": float(len(self.rows))})
        self.close()

    def close(self):
        self.writer.flush()
        self.writer.close()
