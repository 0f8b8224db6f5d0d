"""Helpers for a prompter's tensor path (:meth:`Prompter.render_tensor`): its arguments in one
form, and masks of pixel rectangles, batched over boxes. torch is imported on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def tensor_args(images: torch.Tensor, boxes: torch.Tensor,
                index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``render_tensor``'s arguments as ``[B, 3, H, W]`` images (a ``[3, H, W]`` image gains the batch
    axis), float64 ``[N, 4]`` boxes and ``[N]`` image indices (all 0 when None), on the images' device."""
    import torch

    if images.dim() == 3:
        images = images[None]
    boxes = boxes.to(device=images.device, dtype=torch.float64).reshape(-1, 4)
    if index is None:
        index = torch.zeros(len(boxes), dtype=torch.long, device=images.device)
    return images, boxes, index.to(images.device)


def rect_masks(x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[N, 1, height, width]`` bool masks of the half-open pixel rectangles ``[x0, x1) x [y0, y1)``
    (each an ``[N]`` integer tensor; a rectangle is empty where ``x0 >= x1`` or ``y0 >= y1``)."""
    import torch

    ys = torch.arange(height, device=x0.device)
    xs = torch.arange(width, device=x0.device)
    rows = (ys >= y0[:, None]) & (ys < y1[:, None])
    cols = (xs >= x0[:, None]) & (xs < x1[:, None])
    return (rows[:, :, None] & cols[:, None, :])[:, None]
