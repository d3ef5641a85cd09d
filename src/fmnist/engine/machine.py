"""What a run records about where it ran: package versions, the platform, the processor."""

import os
import platform
from importlib import metadata
from pathlib import Path

from fmnist import __version__

PACKAGES = ("numpy", "torch", "scikit-learn", "matplotlib", "Pillow", "safetensors")


def cpu_name():
    """The processor's model name as /proc/cpuinfo gives it (the platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment():
    """Versions and machine facts recorded beside every result."""
    versions = {"python": platform.python_version(), "fmnist": __version__}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "versions": versions,
        "machine": {"platform": platform.platform(), "processor": cpu_name(), "cpus": os.cpu_count()},
    }
