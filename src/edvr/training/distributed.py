"""Processes, devices and a data order that survives interruption and sharding.

Multi-process training is started by ``torchrun --nproc-per-node N -m edvr train CONFIG``: torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and joins the group
(NCCL on CUDA, gloo on CPU). Without them the run is a single process and nothing distributed is touched.

Data order. Exact resume and world-size-independent batches need the order of samples, and every random choice
made while loading a sample (crop position, flips, rotation, on-the-fly degradation), to be a pure function of
where the sample sits in the run, not of the history of some worker's RNG. So:

- the run is an endless stream of global positions 0, 1, 2, ...; position ``p`` is item ``perm_e[p mod n]`` of
  epoch ``e = p div n``, where ``perm_e`` is a permutation drawn from a generator seeded by ``(seed, e)``;
- update ``k`` (from 1) consumes positions ``[(k-1) B, k B)`` for a total batch ``B``; with ``W`` processes, rank
  ``r`` loads the slice ``[r B/W, (r+1) B/W)`` of it, so 1 process with batch 32 and 8 with 4 see the same samples;
- each sample is loaded with Python's, NumPy's and torch's global RNGs seeded from ``(seed, p)`` and restored
  afterwards (:class:`SeededDataset`), so datasets that draw from the global RNGs become deterministic whatever the
  number of loader workers and whatever was loaded before;
- the data position saved in a checkpoint is ``p`` (with its epoch and offset), and resuming restarts the stream
  there. There is no other state: DataLoader workers and prefetching cannot change what a batch contains.
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from edvr.errors import InputError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank among ``world_size`` processes, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local_rank)
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" and torch.distributed.is_nccl_available() else "gloo"  # (Windows: none)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # Validation runs on rank 0 while the others wait at a barrier: allow it an hour (NCCL's default is 10 min).
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                             timeout=datetime.timedelta(hours=1))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("train.device is cuda but no CUDA device is visible: use train.device=cpu or auto")
        return torch.device("cuda", local_rank)
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("train.device is mps but MPS is not available: use train.device=cpu or auto")
    if name not in ("cpu", "mps"):
        raise InputError(f"train.device {name!r} is not one of auto, cpu, cuda, mps")
    return torch.device(name)


def cleanup() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch.distributed.barrier()


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any rank (so all ranks take the same branch)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP around ``model`` for the parameters that currently require grad (call again after (un)freezing)."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


# ---------------------------------------------------------------------------------------------- data order


def _derive_seed(*words: int) -> int:
    """A 63-bit seed that mixes ``words`` well (NumPy's SeedSequence), stable across platforms and versions."""
    return int(np.random.SeedSequence([w & 0xFFFFFFFFFFFFFFFF for w in words]).generate_state(1, np.uint64)[0]) >> 1


class ResumableSampler(Sampler):
    """An endless stream of ``(index, epoch, sample_seed)`` for this rank, starting at global position ``start``.

    ``batch_size`` is the per-process batch; the global batch is ``batch_size * world_size``.
    """

    def __init__(self, num_items: int, *, seed: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        if num_items < 1:
            raise InputError("the training set is empty")
        self.num_items = num_items
        self.seed = seed
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self._perm_epoch = -1
        self._perm: list[int] = []

    def permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(_derive_seed(self.seed, epoch, 0x0EDC))
            self._perm = torch.randperm(self.num_items, generator=g).tolist()
            self._perm_epoch = epoch
        return self._perm

    def item_at(self, position: int) -> tuple[int, int, int]:
        epoch, offset = divmod(position, self.num_items)
        return self.permutation(epoch)[offset], epoch, _derive_seed(self.seed, position)

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        total = self.batch_size * self.world_size
        first = self.start + self.rank * self.batch_size
        step = 0
        while True:
            base = first + step * total
            for j in range(self.batch_size):
                yield self.item_at(base + j)
            step += 1


def data_position(position: int, num_items: int) -> dict[str, int]:
    """What a checkpoint records about the data stream (the epoch and offset are for people; position suffices)."""
    epoch, offset = divmod(position, num_items)
    return {"position": position, "epoch": epoch, "offset": offset, "num_items": num_items}


class SeededDataset(Dataset):
    """Loads ``dataset[index]`` with the global RNGs seeded from the sample's seed, restoring them afterwards.

    edvr's own training datasets draw their randomness from ``(seed, epoch, index)`` and have ``set_epoch``: it is
    called here, per sample, inside whichever process loads it (a loader worker holds its own copy of the dataset,
    so calling it on the main process's copy would not reach the workers). Each index occurs once per epoch, so
    their streams are as unique as the position-derived seed used for datasets that use the global RNGs.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]) -> Any:
        index, epoch, seed = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
