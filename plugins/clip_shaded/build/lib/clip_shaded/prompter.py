"""The green-shading visual prompt: each candidate drawn on its own copy of the image."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from refbench import Box, Options, Prompter

LIMEGREEN = (50, 205, 50)


def pixel_bounds(b: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """Box -> half-open pixel rectangle [x0, x1) x [y0, y1), clipped to the image, at least 1 px."""
    x0 = min(max(int(round(b.x)), 0), width - 1)
    y0 = min(max(int(round(b.y)), 0), height - 1)
    x1 = min(max(int(round(b.x + b.w)), x0 + 1), width)
    y1 = min(max(int(round(b.y + b.h)), y0 + 1), height)
    return x0, y0, x1, y1


class GreenShade(Prompter):
    """Fills the box with a colour at ``alpha`` and outlines it (default limegreen, 0.5, 2 px)."""

    class Options(Options):
        colour: tuple[int, int, int] = Field(LIMEGREEN, description="RGB of fill and outline")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of the fill")
        outline: int = Field(2, ge=0, description="outline width in pixels, drawn inside the box")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        base = np.asarray(image.convert("RGB"), dtype=np.float32)
        colour = np.asarray(self.options.colour, dtype=np.float32)
        a, t = self.options.alpha, self.options.outline
        h, w = base.shape[:2]
        views = []
        for b in boxes:
            x0, y0, x1, y1 = pixel_bounds(b, w, h)
            view = base.copy()
            view[y0:y1, x0:x1] = view[y0:y1, x0:x1] * (1 - a) + colour * a
            if t:
                view[y0 : min(y0 + t, y1), x0:x1] = colour
                view[max(y1 - t, y0) : y1, x0:x1] = colour
                view[y0:y1, x0 : min(x0 + t, x1)] = colour
                view[y0:y1, max(x1 - t, x0) : x1] = colour
            views.append(Image.fromarray(np.rint(view).astype(np.uint8)))
        return views

    def render_tensor(self, image: torch.Tensor, boxes: Sequence[Box], scale: float) -> torch.Tensor:
        """Fast path: shade an image already resized to the model's input (``[3, H, W]``, 0..1).

        ``boxes`` are in the resized image's pixels; the outline shrinks by ``scale``
        (resized / original). Differs from resizing an exact render by interpolation only.
        """
        _, h, w = image.shape
        n = len(boxes)
        bounds = torch.tensor([pixel_bounds(b, w, h) for b in boxes], dtype=torch.int64).reshape(n, 4)
        xs = torch.arange(w).view(1, 1, w)
        ys = torch.arange(h).view(1, h, 1)
        x0, y0, x1, y1 = (bounds[:, i].view(n, 1, 1) for i in range(4))
        inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        t = max(1, round(self.options.outline * scale)) if self.options.outline else 0
        ring = inside & ~((xs >= x0 + t) & (xs < x1 - t) & (ys >= y0 + t) & (ys < y1 - t)) if t else torch.zeros_like(inside)
        colour = torch.tensor(self.options.colour, dtype=image.dtype).view(1, 3, 1, 1) / 255
        a = self.options.alpha
        views = image.unsqueeze(0).expand(n, -1, -1, -1)
        shaded = torch.where(inside.unsqueeze(1), views * (1 - a) + colour * a, views)
        return torch.where(ring.unsqueeze(1), colour.expand_as(shaded), shaded)
