"""Stopping `fmnist serve` without resetting a connection the kernel had already accepted for it (SIGTERM, Ctrl-C).

The kernel completes a client's handshake on its own and queues the connection on the listening socket until a
process calls accept(); to the client it is accepted, and it sends its request. When the last descriptor of the
listening socket closes, every connection still queued is reset: that client gets no answer. uvicorn stops by
closing its listening sockets at the first tick of its loop after the signal, and the loop may take the tick
before it takes a connection that arrived a moment earlier (with `--workers N`, the last worker to close resets
what the others left). So on SIGTERM, first the socket stops taking new connections (a socket filter drops new
SYNs: a client tries again and finds the port closed, never accepted), the server goes on accepting until the
kernel's queue is empty (TCP_INFO), and only then does uvicorn's graceful shutdown begin (or, under --workers,
the workers are told). On systems without these (not Linux) the server stops as uvicorn does.
"""

import ctypes
import signal
import socket
import struct
import threading
import time

import uvicorn

DRAIN_WAIT = 1.0  # seconds at most to wait for the queued connections to be accepted
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's number; Python does not name it
# Classic BPF on a TCP socket sees the TCP header: byte 13 holds the flags. A SYN without ACK (a new connection) is
# dropped; everything else (the handshake's last ACK, data on accepted connections) passes.
_SYN_FILTER = ((0x30, 0, 0, 13), (0x54, 0, 0, 0x12), (0x15, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))


def refuse_new(sockets):
    """Drop new connections on these listening sockets from now on (for every process that shares them); the
    connections already queued stay, to be accepted. False where this cannot be done."""
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in _SYN_FILTER))
    described = struct.pack("HL", len(_SYN_FILTER), ctypes.addressof(program))  # struct sock_fprog
    done = True
    for sock in sockets:
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                raise OSError("not TCP")
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, described)  # the kernel copies the program
        except (OSError, ValueError):  # not Linux, not TCP, or closed already
            done = False
    return done


def queued(sock):
    """Connections waiting in the kernel for accept() on a listening socket (Linux's TCP_INFO), None if unknown."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except (OSError, ValueError, AttributeError):
        return None
    return struct.unpack_from("I", info, 24)[0]  # tcpi_unacked: for a listening socket, its accept queue


def wait_accepted(sockets, timeout=DRAIN_WAIT):
    """Wait until no connection waits in the kernel on any of `sockets` (at most `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(queued(sock) for sock in sockets):
        time.sleep(0.005)


class Server(uvicorn.Server):
    """uvicorn's server, stopping as the module says: on the first SIGTERM or SIGINT new connections are refused,
    the queued ones accepted, and only then uvicorn's own stop (drain, lifespan end) begins."""

    def __init__(self, config, sockets):
        super().__init__(config)
        self.listening = sockets
        self.stopping = False

    def handle_exit(self, sig, frame):
        if self.stopping or sig not in (signal.SIGTERM, signal.SIGINT):
            super().handle_exit(sig, frame)  # a second Ctrl-C forces the exit, as in uvicorn
            return
        self.stopping = True
        refuse_new(self.listening)
        # A signal handler runs on the loop's thread, which must go on accepting: the waiting is done elsewhere.
        threading.Thread(target=self._stop_once_accepted, args=(sig, frame), name="fmnist-stop", daemon=True).start()

    def _stop_once_accepted(self, sig, frame):
        wait_accepted(self.listening)
        super().handle_exit(sig, frame)


def serve(config, sock):
    """Serve on the listening socket `sock` until SIGTERM or Ctrl-C; after SIGTERM the process exits with 0."""
    # uvicorn raises SIGTERM again once it has drained; every accepted request has its answer by then, so the
    # signal ends the server with status 0 (as the parent of --workers does) instead of killing it.
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        with sock:
            Server(config, [sock]).run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
