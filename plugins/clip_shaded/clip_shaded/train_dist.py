"""``refbench train`` under ``torchrun``: the process group, agreement, the DDP step, the merge.

``torchrun --nproc-per-node N -m refbench train CONFIG`` starts N processes with ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` set; each finds them here and joins one ``torch.distributed`` group
(NCCL when the model runs on CUDA, else gloo). Every rank plans the same epochs and takes its
share of each global step (:func:`clip_shaded.train.shard_step`); each rank's mean loss is
weighted by its share of the step's phrases times the world size, so DDP's gradient average is
the gradient of the whole step's mean loss, as one process computes it. BatchNorm layers (the
ResNet CLIPs) normalise over the whole step's views, every rank's (:class:`SyncedNorm`), so the
loss, its gradient and the running statistics are one process's too. Only rank 0 writes files.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from refbench import RefbenchError, World

SAME_FS = "put output on a filesystem that every rank's machine mounts at the same path"


class Ranks(World):
    """refbench's :class:`World` (the group, gather, barrier) plus what training adds: agreement on the
    config, settling a problem on every rank, the DDP wrapper and the step's loss."""

    def agree(self, digest: str, options: dict[str, Any]) -> None:
        """Every rank raises the same one-line error when the ranks' configs (or options) differ."""
        values = self.gather((digest, sorted(options.items())))
        for what, i, show in (("training config", 0, lambda v: v[:12]), ("command-line options", 1, lambda v: str(dict(v)))):
            seen = [v[i] for v in values]
            odd = [r for r, v in enumerate(seen) if v != seen[0]]
            if odd:
                raise RefbenchError(f"torchrun ranks disagree on the {what}: rank 0 has {show(seen[0])}, "
                                    f"rank{'s' * (len(odd) > 1)} {', '.join(map(str, odd))} {show(seen[odd[0]])}",
                                    "launch every rank with the same config file and options")

    def settle(self, problem: RefbenchError | None, value: Any = None) -> Any:
        """Every rank raises the lowest rank's problem if any rank has one; else rank 0's ``value``."""
        answers = self.gather((None if problem is None else (problem.problem, problem.fix), value))
        for found, _ in answers:
            if found is not None:
                raise RefbenchError(*found)
        return answers[0][1]

    def wrap(self, model: torch.nn.Module, loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
             device: torch.device) -> torch.nn.Module:
        """DDP around the step loss (DDP only sees ``forward``, and the loss calls the encoders). The
        model's BatchNorm layers become :class:`SyncedNorm`, whose running statistics agree on every
        rank by construction: buffers are not broadcast from rank 0 at each step."""
        sync_norms(model)
        ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel
        keep = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
                else {"broadcast_buffers": False})  # newer torch renames it (and still syncs at the start, as wanted)
        return ddp(StepLoss(model, loss), device_ids=ids, **keep)

    def step_loss(self, loss: torch.Tensor) -> float:
        """The whole step's loss: the sum of the ranks' weighted losses over the world size."""
        total = loss.detach().float().reshape(1) / self.size
        dist.all_reduce(total)
        return float(total[0])


class StepLoss(torch.nn.Module):
    """What DDP wraps: the step's loss times this rank's weight."""

    def __init__(self, model: torch.nn.Module,
                 loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
        return self.loss(self.model, batch) * weight


class _SumOverRanks(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every rank's loss reaches every
    rank's inputs through the shared statistics."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class SyncedNorm(torch.nn.modules.batchnorm._BatchNorm):
    """A BatchNorm layer that, training under torchrun, takes its batch statistics over every rank's
    batch: the mean, then the variance about it (two all-reduces, as precise as one process's
    statistics), both differentiable. The running statistics are then the same on every rank. Out
    of training, or in one process, it is the layer it was: same parameters, buffers and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        first = _SumOverRanks.apply(torch.cat([xf.sum(dims), xf.new_tensor([xf.numel() / xf.shape[1]])]))
        n = first[-1].detach()
        mean = first[:-1] / n
        centred = xf - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(float(n) - 1, 1.0)) * m)
        return y.to(x.dtype)


_SYNCED: dict[type, type] = {}


def sync_norms(model: torch.nn.Module) -> int:
    """Turn ``model``'s BatchNorm layers into :class:`SyncedNorm` layers in place (the same objects,
    parameters and buffers: the optimiser and checkpoints do not notice). Returns how many."""
    count = 0
    for m in model.modules():
        cls = type(m)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(m, (SyncedNorm, torch.nn.SyncBatchNorm)):
            if cls not in _SYNCED:
                _SYNCED[cls] = type(f"Synced{cls.__name__}", (SyncedNorm, cls), {})
            m.__class__ = _SYNCED[cls]
            count += 1
    return count


def merged_metrics(parts: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
    """One validation's metrics from the ranks' metrics of their shards (None: a rank without images):
    counts summed, percentages recomputed as ``refbench.evaluate`` computes them, so accuracy, upper
    bound and the per-split and per-phrase-type figures equal one process's exactly."""
    found = [p for p in parts if p is not None]

    def merge(groups: list[dict[str, Any]]) -> dict[str, Any]:
        n = sum(g["n"] for g in groups)
        hits = sum(round(g["accuracy"] * g["n"] / 100) for g in groups)
        out = {"n": n, "accuracy": 100.0 * hits / max(n, 1), "upper_bound": None}
        if all(g.get("upper_bound") is not None for g in groups):
            out["upper_bound"] = 100.0 * sum(round(g["upper_bound"] * g["n"] / 100) for g in groups) / max(n, 1)
        return out

    merged = merge(found)
    for group in ("splits", "phrase_types"):  # both sorted by name, as refbench's metrics are
        keys = sorted({k for p in found for k in p.get(group, {})})
        merged[group] = {k: merge([p[group][k] for p in found if k in p.get(group, {})]) for k in keys}
    return merged
