"""Two "hosts" on one machine for tests: network namespaces joined by a veth pair, gone after.

Each namespace has its loopback and one end of the veth pair with an address of a private /30 that exists only
in these two namespaces: no route leads out of them, so nothing a test starts there can reach the host's
network or anything else. Needs root (`ip netns`); elsewhere the fixture skips and says why.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time

import pytest

SUBNET = "10.213.24"  # 10.213.24.0/30: .1 for host 0, .2 for host 1


@dataclasses.dataclass
class Hosts:
    names: list  # the namespaces
    devices: list  # each namespace's end of the veth pair
    addresses: list
    started: list = dataclasses.field(default_factory=list)  # Popen objects, reaped at the end

    def popen(self, host, argv, **kwargs):
        """Start `argv` inside namespace `host`; the fixture kills what is left of it at the end."""
        process = subprocess.Popen(["ip", "netns", "exec", self.names[host], *argv], **kwargs)
        self.started.append(process)
        return process

    def pids(self, host):
        found = subprocess.run(["ip", "netns", "pids", self.names[host]], capture_output=True, text=True, check=False)
        return [int(pid) for pid in found.stdout.split()]

    def kill(self, host):
        """SIGKILL every process in namespace `host` (the machine's power cord); returns how many."""
        pids = self.pids(host)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def routes(self, host):
        found = subprocess.run(["ip", "-n", self.names[host], "route"], capture_output=True, text=True, check=True)
        return found.stdout.strip().splitlines()


def _ip(*argv):
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def _clean(hosts):
    for _ in range(50):  # processes first (a namespace with processes in it outlives `ip netns del`)
        if not sum(hosts.kill(h) for h in range(len(hosts.names))):
            break
        time.sleep(0.1)
    for process in hosts.started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    for name in hosts.names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@contextlib.contextmanager
def two_hosts():
    """Yields a Hosts whose two namespaces reach each other at 10.213.24.1 and .2, and nothing else."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns); the two-host tests run as root only")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = f"fm{os.getpid() % 100_000}"
    hosts = Hosts([f"{tag}h0", f"{tag}h1"], [f"{tag}v0", f"{tag}v1"], [f"{SUBNET}.1", f"{SUBNET}.2"])
    try:
        try:
            for name in hosts.names:
                _ip("netns", "add", name)
        except RuntimeError as exc:
            pytest.skip(f"cannot make network namespaces here ({exc})")
        peer = ["peer", "name", hosts.devices[1], "netns", hosts.names[1]]
        _ip("link", "add", hosts.devices[0], "netns", hosts.names[0], "type", "veth", *peer)
        for name, device, address in zip(hosts.names, hosts.devices, hosts.addresses, strict=True):
            _ip("-n", name, "addr", "add", f"{address}/30", "dev", device)
            _ip("-n", name, "link", "set", device, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield hosts
    finally:
        _clean(hosts)
