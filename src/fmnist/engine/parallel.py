"""Data-parallel training of the torch models under torchrun: DistributedDataParallel over gloo (CPU).

Every rank draws the same batch order and the same augmentation from its identically seeded generator, takes
its share of each global batch, and DDP averages the gradients: with a global batch divisible by the number of
processes, the updates are those of the single-process run (batch norm aside: its batch statistics are each
process's own, as CPU has no SyncBatchNorm). One all-reduce per step also sums the loss, the right answers and
the stop requests, so that every rank sees the same history, the same divergence and stops at the same batch.
Rank 0 alone validates (the logits are broadcast, so every rank makes the same best-weights and patience
decision), reads and writes files and shows progress; a resumed state is read by rank 0 and broadcast.
"""

import datetime
import os
import re
import socket

import torch
import torch.distributed as dist

from fmnist.data.dataset import NUM_CLASSES
from fmnist.engine import resume
from fmnist.engine.backend import Backend
from fmnist.engine.torch_backend import TorchBackend
from fmnist.errors import Interrupted, UserError

TIMEOUT = datetime.timedelta(seconds=40)  # a lost peer is an error well within a minute


def launched():
    """True under torchrun (or any launcher that sets WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def start():
    """Join the process group torchrun describes; returns what config.json records about it."""
    if not dist.is_initialized():
        store, rank, world = next(dist.rendezvous("env://", timeout=TIMEOUT))
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
            # torchrun's shared store outlives a restart (--max-restarts) and still holds the dead workers' gloo
            # addresses (pytorch/pytorch#135712): each attempt keeps its keys apart, or a new rank may dial a
            # dead one. (Without the shared store, TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, every round is fresh.)
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            store = dist.PrefixStore(f"fmnist/attempt-{attempt}", store)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world, timeout=TIMEOUT)
    return {"processes": dist.get_world_size(), "backend": dist.get_backend(), "nodes": _nodes()}


def addresses():
    """Every rank's address, as the others reach it (index: rank); a collective, after `start`."""
    found = [None] * dist.get_world_size()
    dist.all_gather_object(found, own_address())
    return found


def own_address():
    """This machine's address on the way to rank 0 (MASTER_ADDR): a UDP socket's, which sends nothing."""
    master = os.environ.get("MASTER_ADDR", "127.0.0.1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((master, int(os.environ.get("MASTER_PORT", "29500"))))
            return probe.getsockname()[0]
    except OSError:  # an IPv6-only or unresolvable MASTER_ADDR: the host name still tells machines apart
        return socket.gethostname()


def lost(hosts, error):
    """Which ranks a lost-contact `error` is about, with their addresses: those the error names, else all but
    this machine's (with two machines, the other one)."""
    mine = hosts[rank()] if rank() < len(hosts) else None
    named = {a for a in hosts if a and re.search(rf"(?<![\d.]){re.escape(a)}(?![\d.])", error)} - {mine}
    others = named or {a for a in hosts if a != mine} or set(hosts)
    return "; ".join(
        f"rank{'s' if len(ranks) > 1 else ''} {','.join(map(str, ranks))} on {address}"
        for address in sorted(others, key=hosts.index)
        if (ranks := [r for r, a in enumerate(hosts) if a == address and r != rank()])
    )


def _nodes():
    local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
    return max(1, dist.get_world_size() // local)


def restarted():
    """True when torchrun restarted the workers after a failure (--max-restarts): they continue the run."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def local_ranks():
    """How many ranks share this machine's cores (torchrun's LOCAL_WORLD_SIZE)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def stop():
    if dist.is_initialized():
        dist.destroy_process_group()


class Ranks:
    """The data-parallel hook of `fmnist.engine.torch_backend.TorchBackend`'s one training step: this rank's
    share of each global batch, the module wrapped in DDP (which all-reduces the gradients), one all-reduce of
    the step's loss, right answers and stop requests, and validation logits computed by rank 0 and broadcast."""

    def __init__(self):
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.listener = None  # this process's signal listener (a Resumer), polled once per step
        self.stop_agreed = False

    def wrap(self, module):
        return torch.nn.parallel.DistributedDataParallel(module)

    def share(self, x, y):
        share = len(x) // self.world
        return x[self.rank * share : (self.rank + 1) * share], y[self.rank * share : (self.rank + 1) * share]

    def totals(self, objective, plain, correct):
        """(mean objective, mean plain loss, right answers) over all ranks; every rank learns of any stop."""
        wants_stop = float(self.listener is not None and self.listener.stop_requested)
        totals = torch.stack([objective, plain.float(), correct.float(), torch.tensor(wants_stop)])
        dist.all_reduce(totals)
        objective, plain, correct, stops = totals.tolist()
        self.stop_agreed = stops > 0
        return objective / self.world, plain / self.world, int(correct)

    def logits(self, compute, rows):
        """Computed by rank 0 alone, then broadcast: one validation, one decision."""
        out = torch.from_numpy(compute()).contiguous() if self.rank == 0 else torch.empty(rows, NUM_CLASSES)
        dist.broadcast(out, src=0)
        return out.numpy()


class RankResumer:
    """The Resumer interface for one rank: rank 0's state broadcast to all, the stop decision agreed, files on
    rank 0 only. `local` is this process's Resumer (rank 0's reads and writes; the others' only listen)."""

    def __init__(self, local, ranks):
        self.local, self.ranks = local, ranks
        ranks.listener = local
        saved = [local.saved if ranks.rank == 0 and local is not None else None]
        dist.broadcast_object_list(saved, src=0)
        self.saved = saved[0]

    @property
    def stop_requested(self):
        return self.ranks.stop_agreed

    def save(self, state):
        if self.ranks.rank == 0 and self.local is not None:
            self.local.save(state)

    def stop(self, state, where):
        if self.ranks.rank == 0 and self.local is not None:
            self.local.stop(state, where)
        raise Interrupted(f"stopped at {where} with rank 0", getattr(self.local, "signum", None) or 15)

    def restore(self, restore_state):
        try:
            restored = restore_state(self.saved)
            resume.set_rng_states(self.saved["rng"])
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise UserError(f"rank 0's saved state does not fit this model and settings ({exc!r})") from exc
        return restored


def backend(module, hparams, resumer, **backend_args) -> tuple[Backend, object]:
    """(backend, resumer) for training `module` on this rank: the one torch backend with the `Ranks` hook."""
    ranks, one = Ranks(), TorchBackend(module, hparams, **backend_args)
    one.spread(ranks)
    return one, RankResumer(resumer, ranks)
