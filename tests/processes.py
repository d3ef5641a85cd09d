"""Stopping a real `python -m fmnist` subprocess the way a user's Ctrl-C or a scheduler's SIGTERM would."""

import signal
import time


def sigterm_once_ready(process, ready, timeout=120):
    """Wait until the file `ready` exists while `process` still runs, send it one SIGTERM, return its stderr.

    `process` is a Popen with stderr=PIPE and text=True."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.002)
    # Held still while the signal is sent, so that it surely lands before training ends.
    process.send_signal(signal.SIGSTOP)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGCONT)
    return process.communicate(timeout=timeout)[1]
