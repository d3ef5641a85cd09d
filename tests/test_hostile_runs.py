"""Tampered run directories through the CLI (issue 20): exit 2 with one line naming the file, nothing unverified
loaded, nothing half-written, a resume state kept."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from fmnist.cli.parser import main
from fmnist.engine import resume
from fmnist.jobs import train
from fmnist.jobs.settings import Setup
from fmnist.models import registry
from serve_helpers import encoded, garment

pytestmark = pytest.mark.slow  # on the trained compare run of the serve tests


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rehash(model_dir):
    """Make checkpoint.json agree with the files again, so that only the check under test can catch an edit."""
    manifest = model_dir / "checkpoint.json"
    edit_json(
        manifest,
        lambda m: m["files"].update(
            {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest() for name in m["files"]}
        ),
    )


def weights_folder(model_dir):
    return model_dir / json.loads((model_dir / "checkpoint.json").read_text())["weights"]


def edit_meta(model_dir, change):
    edit_json(weights_folder(model_dir) / "model.json", change)
    rehash(model_dir)


def nan_weights(model_dir):
    path = weights_folder(model_dir) / "weights.safetensors"
    tensors = load_file(path)
    first = next(k for k, v in tensors.items() if v.dtype.kind == "f")
    tensors[first] = tensors[first].copy()
    tensors[first].flat[0] = np.nan
    save_file(tensors, path)
    rehash(model_dir)


def borrowed_folder(run):
    elsewhere = run.parent / "elsewhere"
    shutil.move(run / "cnn", elsewhere)
    (run / "cnn").symlink_to(elsewhere)


PASSWD = {"../../etc/passwd": "0" * 64}
# (what, how to break the run, the command, words the one line must hold)
CASES = [
    ("absolute weights", lambda r: edit_json(r / "cnn/checkpoint.json", lambda m: m.update(weights="/tmp")), "predict",
     ["cnn/checkpoint.json", "weights"]),
    ("outside file", lambda r: edit_json(r / "cnn/checkpoint.json", lambda m: m["files"].update(PASSWD)),
     "predict", ["checkpoint.json", "files.../../etc/passwd"]),
    ("unlisted file", lambda r: (weights_folder(r / "cnn") / "extra.bin").write_bytes(b"x"), "predict",
     ["extra.bin", "not in checkpoint.json"]),
    ("kind a list", lambda r: edit_json(r / "cnn/checkpoint.json", lambda m: m.update(kind=["cnn"])), "predict",
     ["checkpoint.json", "kind"]),
    ("deep manifest", lambda r: (r / "cnn/checkpoint.json").write_text("[" * 100_000), "predict",
     ["checkpoint.json", "nested"]),
    ("borrowed folder", borrowed_folder, "serve", ["cnn", "symbolic link"]),
    ("nan weights", lambda r: nan_weights(r / "cnn"), "predict", ["weights.safetensors", "NaN"]),
    ("std 0", lambda r: edit_meta(r / "cnn", lambda m: m.update(std=0)), "predict", ["model.json", "std"]),
    ("mean a string", lambda r: edit_meta(r / "cnn", lambda m: m.update(mean="abc")), "predict",
     ["model.json", "mean"]),
    ("batch size 0", lambda r: edit_meta(r / "cnn", lambda m: m["hparams"].update(batch_size=0)), "predict",
     ["model.json: hparams.batch_size: 0 is outside"]),
    ("huge layer", lambda r: edit_meta(r / "scratch-mlp", lambda m: m.update(layer_sizes=[784, 10**12, 10])),
     "predict-mlp", ["model.json", "layer_sizes[1]"]),
    ("nan metric", lambda r: edit_json(r / "cnn/metrics.json", lambda m: m.update(val_accuracy=float("nan"))), "serve",
     ["cnn/metrics.json", "NaN"]),
    ("accuracy 7", lambda r: edit_json(r / "cnn/metrics.json", lambda m: m.update(test_accuracy=7)), "serve",
     ["cnn/metrics.json", "test_accuracy"]),
    ("threads abc", lambda r: edit_json(r / "cnn/config.json", lambda c: c.update(threads="abc")), "evaluate",
     ["cnn/config.json", "threads"]),
    ("seed abc", lambda r: edit_json(r / "scratch-mlp/config.json", lambda c: c.update(seed="abc")), "evaluate",
     ["scratch-mlp/config.json", "seed"]),
    ("deep config", lambda r: (r / "cnn/config.json").write_text('{"a":' * 100_000), "evaluate",
     ["cnn/config.json", "nested"]),
]  # fmt: skip


@pytest.mark.parametrize(("how", "command", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_tampered_run_is_one_line_naming_the_file(serve_run, tmp_path, capsys, monkeypatch, how, command, fragments):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda *_, **__: pytest.fail("a tampered run was served"))
    run = tmp_path / "run"
    shutil.copytree(serve_run, run)
    how(run)
    image = tmp_path / "a.png"
    image.write_bytes(encoded(garment()))  # a good image: only the run can be at fault
    argv = {
        "predict": ["predict", str(run / "cnn"), str(image)],
        "predict-mlp": ["predict", str(run / "scratch-mlp"), str(image)],
        "serve": ["serve", str(run), "--port", "0"],
        "evaluate": ["evaluate", str(run)],
    }[command]
    before = {p: p.read_bytes() for p in run.rglob("*.json") if p.is_file()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error: "), err
    assert all(f in err[0] for f in fragments) and "--" not in err[0], err
    assert {p: p.read_bytes() for p in before} == before  # nothing rewritten: evaluate writes all models or none


@pytest.fixture
def stopped(splits, dataset, tmp_path):
    """A scratch-mlp run stopped in its second epoch, with its resume state."""
    out = tmp_path / "stopped"

    class StopAt(resume.Resumer):
        polls = 12

        @property
        def stop_requested(self):
            self.polls -= 1
            return self.polls < 0

    hparams = registry.spec("scratch-mlp").resolve("fast") | {"epochs": 3, "batch_size": 64}
    with pytest.raises(Exception, match="stopped"):
        train.train_one("scratch-mlp", hparams, Setup(splits.quick(500), dataset), out, resumer=StopAt(out))
    return out


def tamper_state(path, change):
    with safe_open(str(path), framework="numpy") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        document = json.loads(fh.metadata()["fmnist"])
    change(document["state"]["dict"]["loop"]["dict"])
    save_file(tensors, str(path), metadata={"fmnist": json.dumps(document)})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda loop: loop["step"].update(value=-1), "loop.step is -1"),
        (lambda loop: loop["epoch"].update(value="abc"), "loop.epoch is 'abc'"),
        (lambda loop: loop.update(seen={"list": []}), "loop.seen"),
    ],
    ids=["step -1", "epoch abc", "seen a list"],
)
def test_a_tampered_resume_state_is_reported_and_kept(stopped, capsys, change, fragment):
    state = stopped / resume.STATE_FILE
    tamper_state(state, change)
    assert main(["train", "scratch-mlp", "--resume", str(stopped), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resume.safetensors" in err[0] and fragment in err[0], err
    assert "--lr" not in err[0] and state.is_file()
