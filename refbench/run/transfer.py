"""Batches that cross from the runner's worker processes to the main process without another copy."""

from __future__ import annotations

from typing import Sequence

import torch

_shared = True


def share(on: bool) -> None:
    """Whether :func:`join_tensors` in a worker writes to shared memory (off in workers that score their own batches)."""
    global _shared
    _shared = on


def join_tensors(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.cat`` along dim 0. Inside one of the runner's worker processes the result is written
    straight into shared memory (as torch's ``default_collate`` does), so handing it to the main
    process copies nothing more. Elsewhere a single tensor is returned as is."""
    if not _shared or torch.utils.data.get_worker_info() is None:
        return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors))
    first = tensors[0]
    shape = (sum(t.shape[0] for t in tensors), *first.shape[1:])
    storage = first.untyped_storage()._new_shared(first.element_size() * sum(t.numel() for t in tensors))
    out = torch.empty(0, dtype=first.dtype).set_(storage).view(shape)
    return torch.cat(list(tensors), out=out)
