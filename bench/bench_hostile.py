"""Memory of `fmnist serve` and `fmnist predict` under refused decompression bombs (issue 20's figures).

    .venv/bin/python bench/bench_hostile.py RUN_DIR [--out FILE]

Starts the real server on RUN_DIR (a compare run), sends 20 good requests, then 50 refused bombs (ICO files whose
PNG holds 81 MP of black in 80 kB, and PNGs whose header claims 81 MP; five per request), then 300 good
requests, reading the server's resident size (/proc) after each phase. Then runs `fmnist predict` on 10 such
ICO files and reads its peak resident size (getrusage of the child). Prints the CPU, the date, JSON and a table;
writes the JSON to bench/results/hostile-DATE.json (or --out).
"""

import argparse
import io
import json
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import httpx
from PIL import Image

import record

NAME = "hostile"


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ico_bomb(side=9_000):
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(bytes(side + 1)) for _ in range(side)) + packer.flush()
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", data) + chunk(b"IEND", b"")
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


def png_bomb(side=9_000):
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line for line in fh if line.startswith("VmRSS:")).split()[1]) / 1024


def serve_phases(run_dir, good, bombs):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "fmnist", "serve", str(run_dir), "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=60) as client:
            phases = {}
            for name, count, files in (("20 good", 20, [good]), ("50 bombs", 10, bombs), ("300 good", 300, [good])):
                for _ in range(count):
                    client.post(
                        "/predict", files=[("files", (f"{i}.{kind}", data)) for i, (kind, data) in enumerate(files)]
                    )
                phases[name] = round(rss_mb(server.pid), 1)
        return phases
    finally:
        server.terminate()
        server.wait(timeout=20)


def cli_peak(run_dir, bomb):
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(10):
            paths.append(Path(folder) / f"bomb{i}.ico")
            paths[-1].write_bytes(bomb)
        model = next(Path(run_dir).glob("*/checkpoint.json")).parent
        done = subprocess.run(
            [sys.executable, "-m", "fmnist", "predict", str(model), *map(str, paths)], capture_output=True
        )
    return done.returncode, round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="write the JSON here (default: bench/results/hostile-DATE.json)")
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.new("RGB", (120, 80), "white").save(buffer, format="PNG")
    ico = ico_bomb()
    bombs = [("ico", ico) if i % 2 else ("png", png_bomb()) for i in range(5)]
    code, peak = cli_peak(args.run_dir, ico)  # first: the only child so far, so its peak is getrusage's
    phases = serve_phases(args.run_dir, ("png", buffer.getvalue()), bombs)
    head = record.header()
    doc = {
        "ico_bomb_bytes": len(ico),
        "serve_rss_mb": phases,
        "serve_growth_mb": round(phases["300 good"] - phases["20 good"], 1),
        "cli_exit": code,
        "cli_peak_rss_mb": peak,
    }
    print(json.dumps(doc, indent=2))
    print("\n" + record.title(f"refused bombs of {len(ico):,} bytes (81 MP)", head))
    for name, value in phases.items():
        print(f"  serve resident after {name:<9} {value:8.1f} MB")
    print(f"  serve growth                   {doc['serve_growth_mb']:8.1f} MB (limit 200)")
    print(f"  fmnist predict, 10 bombs, peak {peak:8.1f} MB (limit 800), exit {code}")
    record.save(NAME, doc, args.out, head=head)


if __name__ == "__main__":
    main()
