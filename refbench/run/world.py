"""This process's place under ``torchrun``: whether it is one rank of several, its CPU share, its
shard of the images, and the few collectives the runner (or a plugin's training loop) needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

from ..interfaces import ImageItem


def cpu_share() -> int:
    """CPUs this process may use: all of them, or under torchrun an equal share per local rank."""
    cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))) if launched() else cpus


def launched() -> bool:
    """Whether torchrun (or any env:// launcher) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def shard(items: Sequence[ImageItem], rank: int, world: int) -> list[ImageItem]:
    """This rank's images: every ``world``-th of the list sorted by image id, from the ``rank``-th.
    The same on every rank, whatever order the data set lists images in. The runner shards the
    images that remain, so a rerun after a death spreads what is left evenly too."""
    return sorted(items, key=lambda it: it.image_id)[rank::world]


@dataclass
class World:
    """This process's place in a ``torchrun`` group, and the few collectives the runner needs (a
    plugin's training loop may use it too): :meth:`detect` it, :meth:`prepare` before building
    models, :meth:`join` the group, and :meth:`leave` it at the end."""

    rank: int
    size: int
    local_rank: int
    backend: str = ""  # set by join: "nccl" or "gloo"

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes shared files."""
        return self.rank == 0

    @classmethod
    def detect(cls) -> World | None:
        """The torchrun world from the environment (an instance of the class it is called on, e.g. a
        training loop's subclass), or None for a single process."""
        if not launched():
            return None
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))

    def prepare(self, threads: int | None = None) -> None:
        """Before any model is built: this rank's GPU (``LOCAL_RANK``) and ``threads`` CPU threads
        (default: its share of the machine's CPUs)."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())
        torch.set_num_threads(threads or cpu_share())

    def join(self, cuda: bool) -> None:
        """Join the group: NCCL when this rank's models are on CUDA, else gloo."""
        import torch.distributed as dist

        self.backend = "nccl" if cuda else "gloo"
        if not dist.is_initialized():  # ranks wait for the slowest at the end: a day, not the default half hour
            dist.init_process_group(self.backend, timeout=timedelta(hours=24))

    def shard(self, items: Sequence[ImageItem]) -> list[ImageItem]:
        """This rank's share of ``items``: every world-th by image id (:func:`shard`)."""
        return shard(items, self.rank, self.size)

    def leave(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def gather(self, value: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        self.gather(None)  # an all-gather is a barrier on every backend, without NCCL's device guess
