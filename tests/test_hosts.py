"""torchrun across two hosts: one agent in each of two network namespaces, c10d rendezvous at host 0's address.

Against the loopback two-process run of tests/test_parallel.py: the same weights; then host 1 loses power
(every process in its namespace SIGKILLed) mid-epoch, without and with a restart.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import netns
from fmnist.engine import parallel, resume
from fmnist.rundir import checkpoint

SRC = str(Path(parallel.__file__).parents[2])
PORT = 29400
LINEAR = ["--subset", "4000", "--epochs", "3", "--seed", "1"]
MLP = ["--subset", "6000", "--epochs", "4", "--dropout", "0", "--hidden", "128", "64", "--seed", "1"]
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
# Every round of the rendezvous gets a fresh store: torch's shared one leaves a restarted agent waiting for
# keys that rank 0 writes only in the first round.
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": SRC, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@pytest.fixture
def hosts():
    with netns.two_hosts() as made:
        yield made


def torchrun(host, hosts, argv, cwd, restarts=0, **kwargs):
    """One agent on `host` with one worker; c10d rendezvous at host 0, gloo on the veth only."""
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1"]
    agent += ["--rdzv-backend=c10d", f"--rdzv-endpoint={hosts.addresses[0]}:{PORT}", "--rdzv-id=fmnist-test"]
    # The namespaces share the machine's host name, so torchrun cannot tell which agent hosts the rendezvous
    # store by name: is_host says it, as --local-addr gives each node its own address (and host 0 rank 0).
    agent += [f"--local-addr={hosts.addresses[host]}", f"--rdzv-conf=is_host={int(host == 0)}"]
    agent += [f"--max-restarts={restarts}"]
    env = BASE_ENV | ENV | {"GLOO_SOCKET_IFNAME": hosts.devices[host]}
    cwd.mkdir(parents=True, exist_ok=True)
    command = [*agent, "-m", "fmnist", *argv, "--no-progress", "--no-report"]
    return hosts.popen(host, command, cwd=cwd, env=env, text=True, **kwargs)


def loopback(argv, cwd):
    """The two-process run on one host (tests/test_parallel.py's): the reference."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    env = BASE_ENV | ENV | {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [*command, "-m", "fmnist", *argv, "--no-progress", "--no-report"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return cwd / argv[argv.index("--out") + 1]


def finished(process, timeout=80):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err
    return out, err


def assert_same_weights(one, other):
    a, b = checkpoint.load(one)[0].module.state_dict(), checkpoint.load(other)[0].module.state_dict()
    for key in b:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def loopback_mlp(tmp_path_factory):
    return loopback(["train", "mlp", *MLP, "--out", "run"], tmp_path_factory.mktemp("loopback-mlp"))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_two_hosts_train_like_two_processes_on_one(model, hosts, tmp_path, request):
    args = {"linear": LINEAR, "mlp": MLP}[model]
    reference = (
        request.getfixturevalue("loopback_mlp")
        if model == "mlp"
        else loopback(["train", model, *args, "--out", "run"], tmp_path / "loopback")
    )
    assert all(route.startswith(f"{netns.SUBNET}.0/30 ") for h in (0, 1) for route in hosts.routes(h))
    argv = ["train", model, *args, "--out", "run"]
    agents = [
        torchrun(h, hosts, argv, tmp_path / f"host{h}", stdout=subprocess.PIPE, stderr=subprocess.PIPE) for h in (0, 1)
    ]
    for agent in agents:
        finished(agent)
    assert [p.name for p in (tmp_path / "host0").iterdir()] == ["run"] and not list((tmp_path / "host1").iterdir())
    config = (tmp_path / "host0" / "run" / "config.json").read_text()
    assert '"nodes": 2' in config and '"processes": 2' in config
    assert_same_weights(tmp_path / "host0" / "run", reference)


def kill_host_1_mid_epoch(hosts, run_dir, agent):
    """Wait for host 0's end-of-epoch state (epoch 1 done), then SIGKILL everything on host 1."""
    deadline = time.monotonic() + 60
    while not (run_dir / resume.STATE_FILE).exists():
        assert agent.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    assert hosts.kill(1) >= 2  # the agent and its worker
    return time.monotonic()


@pytest.mark.slow
def test_a_lost_host_stops_the_survivor_in_one_line_naming_it(hosts, tmp_path):
    argv = ["train", "mlp", *MLP, "--out", "run"]
    agents = [torchrun(h, hosts, argv, tmp_path / f"host{h}", stderr=subprocess.PIPE) for h in (0, 1)]
    killed = kill_host_1_mid_epoch(hosts, tmp_path / "host0" / "run", agents[0])
    _, err = agents[0].communicate(timeout=70)
    assert agents[0].returncode != 0 and time.monotonic() - killed < 60
    ours = [line for line in err.splitlines() if line.startswith("fmnist:")]
    assert (
        len(ours) == 1 and f"rank 0: lost contact with the other processes: rank 1 on {hosts.addresses[1]}" in ours[0]
    ), err
    assert f'File "{SRC}' not in err  # no traceback from fmnist's code
    assert resume.Resumer(tmp_path / "host0" / "run", resume=True).saved["loop"]["epoch"] >= 1


@pytest.mark.slow
def test_a_restarted_host_continues_the_run_from_the_last_saved_epoch(hosts, loopback_mlp, tmp_path):
    argv = ["train", "mlp", *MLP, "--out", "run"]
    with open(tmp_path / "host0.log", "w+") as log:  # a file: nobody reads a pipe while host 1 comes back
        survivor = torchrun(0, hosts, argv, tmp_path / "host0", restarts=1, stderr=log)
        torchrun(1, hosts, argv, tmp_path / "host1", restarts=1, stderr=subprocess.DEVNULL)
        kill_host_1_mid_epoch(hosts, tmp_path / "host0" / "run", survivor)
        again = torchrun(1, hosts, argv, tmp_path / "host1", restarts=1, stderr=subprocess.PIPE)  # it is back
        finished(again)
        assert survivor.wait(timeout=30) == 0, (tmp_path / "host0.log").read_text()
    history = (tmp_path / "host0" / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4 and not (tmp_path / "host0" / "run" / resume.STATE_FILE).exists()
    assert not list((tmp_path / "host1").iterdir())
    assert_same_weights(tmp_path / "host0" / "run", loopback_mlp)


def test_the_lost_host_is_the_one_the_error_names_else_every_other_one():
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.13"]  # rank 0 (this process, not started) on .1
    assert parallel.lost(hosts, "Connection closed by peer [10.0.0.13]:4242") == "rank 3 on 10.0.0.13"
    assert parallel.lost(hosts, "Timed out") == "ranks 1,2 on 10.0.0.2; rank 3 on 10.0.0.13"
    assert parallel.lost(["127.0.0.1", "127.0.0.1"], "Connection reset by peer") == "rank 1 on 127.0.0.1"
