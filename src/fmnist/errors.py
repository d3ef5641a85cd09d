"""The one exception type the CLI turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Something the user can fix: a bad file, a bad flag, a missing run directory.

    The message must name the thing at fault; the CLI prints it on one line without a traceback.
    """
