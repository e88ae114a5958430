"""Running under torchrun: which process this is, and the few collectives the project needs.

torchrun starts one process per GPU (or per share of the work) and tells each its place in
RANK, WORLD_SIZE and LOCAL_RANK. Without those variables everything here describes a single
process and does nothing, so plain `python train.py` / `python infer.py` run as before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from stylize.stylizer import pick_device

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place among the `world_size` processes of a torchrun job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes on this machine: picks the GPU

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the shared files (checkpoints, logs) and prints the summaries."""
        return self.rank == 0


def from_env() -> Dist:
    env = os.environ
    return Dist(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def device_for(name: str, d: Dist) -> torch.device:
    """`pick_device(name)`, except that under torchrun each process on a machine gets its own GPU
    (round robin when there are more processes than GPUs; `cuda:N` pins them all to one)."""
    device = pick_device(name)
    if d.enabled and device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", d.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
    return device


@contextlib.contextmanager
def process_group(backend: str) -> Iterator[Dist]:
    """Join the torchrun job's process group for the duration of the block (no-op alone).

    The group is left only on a normal exit: after an error or a kill the other processes
    may be gone, and waiting for them would hang.
    """
    d = from_env()
    if not d.enabled:
        yield d
        return
    dist.init_process_group(backend)
    yield d
    dist.destroy_process_group()


def shard(items: list[T], d: Dist) -> list[T]:
    """This process's contiguous share of `items`; every process computes the same split."""
    n = len(items)
    return items[d.rank * n // d.world_size : (d.rank + 1) * n // d.world_size]


def gather(obj: T, d: Dist) -> list[T]:
    """`obj` from every process, in rank order, on every process ([obj] alone)."""
    if not d.enabled:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: T, d: Dist) -> T:
    """Rank 0's `obj`, on every process (so that only rank 0 needs to read files)."""
    if not d.enabled:
        return obj
    box = [obj if d.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """`t` averaged over the processes (for logging the losses of the whole batch).

    `t` must be on the process group's device: a CUDA tensor with NCCL."""
    if not d.enabled:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t / d.world_size
