import subprocess
import sys

import pytest
from PIL import Image

from fmnist import __version__
from fmnist.cli.parser import build_parser, main
from fmnist.models.registry import REGISTRY


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["data", "--help"], ["data", "show", "--help"], ["train", "--help"]])
def test_help_exits_cleanly(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: fmnist" in capsys.readouterr().out


def test_train_choices_are_the_registry_keys():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    assert set(train._subparsers._group_actions[0].choices) == set(REGISTRY)


def test_every_hparam_flag_shows_its_default(capsys):
    for name, spec in REGISTRY.items():
        with pytest.raises(SystemExit):
            main(["train", name, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        for hparam in spec.hparams:
            assert "--" + hparam.replace("_", "-") in out
        assert out.count("(default:") >= len(spec.hparams)


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 2


def test_data_info_on_real_data(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "train 48,000, validation 12,000, test 10,000" in out
    assert out.count("official") == 4


def test_data_show_writes_png(tmp_path, capsys):
    out = tmp_path / "nested" / "grid.png"
    assert main(["data", "show", "--out", str(out), "--per-class", "3"]) == 0
    with Image.open(out) as img:
        img.verify()
    assert not list(out.parent.glob("*.tmp"))


def test_unwritable_output_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["data", "show", "--out", str(blocker / "grid.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(blocker) in err[0]


def test_console_script_user_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fmnist", "data", "info", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "cnn", "--lr", "-1"], "cnn --lr: -1.0 is outside [1e-08, 100]"),
        (["train", "mlp", "--optimizer", "lbfgs"], "mlp --optimizer: 'lbfgs': choose one of sgd, adamw"),
        (["train", "scratch-mlp", "--hidden", "32", "0"], "scratch-mlp --hidden: 0 is outside [1, 65536]"),
        (["train", "cnn", "--widths", "8", "8"], "cnn --widths: (8, 8): the whitened CNN takes 3 widths"),
        (["train", "cnn", "--preset", "best", "--widths", "8"], "cnn --widths: (8,): the plain CNN takes 5 widths"),
        (["compare", "--epochs", "0", "--models", "linear"], "linear --epochs: 0 is outside [1, 10000]"),
    ],
)
def test_a_bad_hyper_parameter_is_one_line_naming_its_flag(tmp_path, argv, message, capsys):
    assert main([*argv, "--subset", "100", "--no-progress", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fmnist: error: {message}"]
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_no_report_writes_the_run_without_its_report_and_fmnist_report_adds_it(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "scratch-mlp", "--subset", "200", "--epochs", "1", "--no-progress", "--no-report"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "report:" not in printed and f"run written to {out}" in printed
    assert (out / "metrics.json").is_file() and (out / "test_images.npz").is_file()
    assert not any((out / name).exists() for name in ("report.md", "report.html", "plots"))
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").stat().st_size > 10_000 and any((out / "plots").glob("*.png"))
