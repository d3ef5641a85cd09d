"""The report of an Optuna study (`fmnist tune`): the best trial's command, the optimisation history, the
parameter importances and every trial. Given a study that has at least one complete trial."""

import warnings
from pathlib import Path

from fmnist.files import write_text
from fmnist.report import plots
from fmnist.report.render import to_html, to_markdown


def summary_figures(study):
    """(optimisation history, parameter importances or None) as matplotlib figures."""
    import optuna
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = ovm.plot_optimization_history(study).figure
        try:
            importance = ovm.plot_param_importances(study).figure
        except (ValueError, RuntimeError):  # fewer than two complete trials, or a single value per parameter
            importance = None
    return history, importance


def _cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trials_table(study):
    """(header, rows): every trial with its state, value, epochs trained and parameters."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    header = ["trial", "state", "val accuracy", "epochs", *names]
    rows = [
        [t.number, t.state.name.lower(), "" if t.value is None else f"{t.value:.4f}", len(t.intermediate_values)]
        + [_cell(t.params.get(name, "")) for name in names]
        for t in trials
    ]
    return header, rows


def write_report(study, out):
    """OUT/tune-report.md and .html: the best trial's command, the history and importance plots, all trials."""
    out = Path(out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    images = []
    captions = ("best validation accuracy so far, trial by trial", "how much each hyper-parameter mattered (fANOVA)")
    for figure, stem, caption in zip(
        summary_figures(study), ("tune-history", "tune-importance"), captions, strict=True
    ):
        if figure is not None:
            plots.save(figure, out / "plots" / f"{stem}.png")
            images.append(("image", out / "plots" / f"{stem}.png", caption))
    top, attrs = study.best_trial, study.user_attrs
    text = (
        f"Study {study.study_name!r}: {attrs.get('model')} ({attrs.get('preset')} preset, seed {attrs.get('seed')}, "
        f"subset {attrs.get('subset') or 'none'}, epochs capped at {attrs.get('epochs_cap') or 'the preset'}). "
        f"Objective: {attrs.get('objective')}. Test set: {attrs.get('test_set')}. "
        f"Best: trial {top.number}, validation accuracy {top.value:.4f}; train it again with:"
    )
    header, rows = trials_table(study)
    blocks = [("h1", f"Tuning study {study.study_name}"), ("p", text), ("pre", top.user_attrs["command"]), *images]
    blocks += [("h2", "Trials"), ("table", header, rows)]
    md, page = out / "tune-report.md", out / "tune-report.html"
    write_text(md, to_markdown(blocks, out))
    write_text(page, to_html(blocks, f"Tuning study {study.study_name}"))
    return md, page
