"""Helpers for the serve tests: a free port, product-style photos, a real server in a subprocess."""

import contextlib
import io
import socket
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
from PIL import Image

SERVE_MODELS = ("cnn", "scratch-mlp")


def free_port():
    """A loopback port nobody listens on now (the kernel's pick for port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def product_photo(item, factor=6, margins=(30, 50, 40, 20), rng=None):
    """A dataset item the way a shop shows it: dark object on white, upscaled, uneven margins (RGB).

    rng: draw the factor (4-10) and the margins at random instead."""
    if rng is not None:
        factor = int(rng.integers(4, 11))
        margins = rng.integers(factor, 10 * factor, size=4).tolist()
    side = 28 * factor
    left, top, right, bottom = margins
    photo = Image.new("L", (side + left + right, side + top + bottom), 255)
    photo.paste(Image.fromarray(255 - item).resize((side, side), Image.Resampling.BICUBIC), (left, top))
    return photo.convert("RGB")


@contextlib.contextmanager
def running_server(run_dir, log_path, *, env=None, timeout=60, started=None, args=(), ready="/readyz"):
    """`python -m fmnist serve RUN_DIR [ARGS]` on a free loopback port until the block ends; yields its base URL.
    run_dir None: `serve ARGS` alone (the review page: args ("--review", AUDIT_DIR), ready "/review").
    started: a list, if given, receives the server's Popen (to measure it). ready: the path that answers 200 once
    the server is up.

    On leaving: SIGTERM, and the server must drain and exit with status 0, without a traceback in its log.
    """
    import httpx

    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fmnist",
                "serve",
                *([] if run_dir is None else [str(run_dir)]),
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    if started is not None:
        started.append(process)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, f"server exited {process.returncode}: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"server not up after {timeout} s: {log_path.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + ready, timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        code = process.wait(timeout=20)
    log = log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log


def encoded(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def garment():
    """A synthetic asymmetric dark shape on white, 120x80 RGB (no real data needed)."""
    array = np.full((120, 80, 3), 255, np.uint8)
    array[20:100, 15:40] = (30, 30, 30)
    array[20:45, 40:70] = (90, 40, 20)
    return Image.fromarray(array)


def noise(side=64):
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))


def bomb(width, height):
    """A tiny valid PNG whose header claims width x height (CRC fixed)."""
    raw = bytearray(encoded(Image.new("L", (1, 1))))
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    return bytes(raw)


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width, height):
    """A valid 8-bit grayscale PNG of width x height black pixels, a few kB however large (built row by row)."""
    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def ico_bomb(width=7_000, height=7_000):
    """An ICO whose one entry claims 256x256 but holds a PNG of width x height: Pillow decodes it in Image.open."""
    png = blank_png(width, height)
    directory = struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22)
    return directory + png
