"""A throw-away PostgreSQL server for tests: initdb in a temporary folder, its own port on loopback, gone after.

Debian's `postgresql` package (scripts/ensure-postgres.sh installs it) puts its programs in
/usr/lib/postgresql/VERSION/bin. PostgreSQL refuses to run as root; as root the server runs as the `postgres`
system user, with a data folder that user owns. Anything missing is a pytest skip that says what it was.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DATABASE = "fmnist"
USER = "fmnist"


def binaries():
    """The folder with initdb and postgres (the newest installed version), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("postgres") else None


def server_user():
    """(user name or None, reason to skip or None): as root the `postgres` user runs the server, else we do."""
    if os.geteuid() != 0:
        return None, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None, "running as root and there is no `postgres` user to run the server as"
    return "postgres", None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(argv, user, **kwargs):
    return subprocess.run(argv, user=user, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def _stop(server):
    """Fast shutdown (SIGINT), then SIGKILL to the whole process group: no backend outlives the test."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=15)


def _wait_ready(server, url, log, timeout=30):
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            pytest.skip(f"PostgreSQL exited at start ({log.read_text().strip().splitlines()[-1:]})")
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=2) as db:
                db.execute(f"CREATE DATABASE {DATABASE}")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                pytest.skip(f"PostgreSQL did not accept connections within {timeout} s ({exc})")
            time.sleep(0.1)


@contextlib.contextmanager
def running_server():
    """Yields the SQLAlchemy URL (postgresql+psycopg://...) of a new, empty database; stops and deletes it after."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'fmnist[tune]')")
    folder, user = binaries(), None
    if folder is None:
        pytest.skip("PostgreSQL is not installed (make test installs Debian's postgresql as root; see README)")
    user, reason = server_user()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="fmnist-postgres-"))
    server = None
    try:
        if user:
            shutil.chown(root, user)
        data, port = root / "data", free_port()
        made = _run([folder / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"], user)
        if made.returncode:
            pytest.skip(f"initdb failed: {made.stderr.strip().splitlines()[-1:]}")
        log = root / "server.log"
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root}", "-c", "fsync=off"]
        with open(log, "w") as sink:
            if user:
                shutil.chown(log, user)
            server = subprocess.Popen(
                [folder / "postgres", "-D", data, "-p", str(port), *options],
                user=user,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so that _stop reaches every backend
            )
        url = f"postgresql://{USER}@127.0.0.1:{port}"
        _wait_ready(server, f"{url}/postgres", log)
        yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(root, ignore_errors=True)
