"""The one exception type the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Something the user can fix: a bad file, a bad flag, a missing run directory.

    The message must name the thing at fault; the CLI prints it on one line without a traceback.
    """


class Interrupted(Exception):
    """Training stopped on a signal with its state saved; the CLI prints the message and exits 128 + signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
