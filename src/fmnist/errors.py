"""The exceptions that cross module boundaries; only the CLI turns them into words for a terminal."""


class UserError(Exception):
    """Something the user can fix: a bad file, a bad flag, a missing run directory.

    The message must name the thing at fault; the CLI prints it on one line without a traceback.
    """


class HparamError(ValueError):
    """A hyper-parameter value outside what its registry entry allows; `name` is the hyper-parameter."""

    def __init__(self, model, name, message):
        super().__init__(f"{model} {name}: {message}")
        self.model, self.name, self.message = model, name, message


class Diverged(Exception):
    """The training loss or the validation loss stopped being finite; the best weights so far are loaded."""

    def __init__(self, model, what, where, lr, best_epoch):
        kept = f"weights of epoch {best_epoch} kept" if best_epoch else "no epoch finished, initial weights kept"
        super().__init__(f"{model}: {what} at {where} with lr {lr:.3g} ({kept})")
        self.best_epoch = best_epoch


class Interrupted(Exception):
    """Training stopped on a signal with its state saved; the CLI prints the message and exits 128 + signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
