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
    """Fills the box with a colour at an opacity and outlines it (default limegreen, 0.5, 2 px)."""

    class Options(Options):
        colour: tuple[int, int, int] = Field(LIMEGREEN, description="RGB of fill and outline")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of the fill")
        outline: int = Field(2, ge=0, description="outline width in pixels, drawn inside the box")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        base = np.asarray(image.convert("RGB"))
        colour = np.asarray(self.options.colour, dtype=np.float32)
        solid = colour.astype(np.uint8)
        a, t = self.options.alpha, self.options.outline
        h, w = base.shape[:2]
        views = []
        for b in boxes:
            x0, y0, x1, y1 = pixel_bounds(b, w, h)
            view = base.copy()
            region = view[y0:y1, x0:x1]
            region[:] = np.rint(region * (1 - a) + colour * a)  # only the box is touched
            if t:
                view[y0 : min(y0 + t, y1), x0:x1] = solid
                view[max(y1 - t, y0) : y1, x0:x1] = solid
                view[y0:y1, x0 : min(x0 + t, x1)] = solid
                view[y0:y1, max(x1 - t, x0) : x1] = solid
            views.append(Image.fromarray(view))
        return views

    def render_tensor(self, image: torch.Tensor, boxes: Sequence[Box], scale: float) -> torch.Tensor:
        """Fast path: shade an image already resized to the model's input (``[3, H, W]`` uint8).

        ``boxes`` are in the resized image's pixels; the outline shrinks by ``scale``
        (resized / original). Same arithmetic as :meth:`render`, so it differs from
        resizing an exact render only by where the interpolation happens.
        """
        _, h, w = image.shape
        views = image.unsqueeze(0).repeat(len(boxes), 1, 1, 1)
        colour = torch.tensor(self.options.colour, dtype=torch.float32).view(3, 1, 1)
        solid = colour.to(torch.uint8)
        a = self.options.alpha
        t = max(1, round(self.options.outline * scale)) if self.options.outline else 0
        for view, b in zip(views, boxes):
            x0, y0, x1, y1 = pixel_bounds(b, w, h)
            region = view[:, y0:y1, x0:x1]
            region.copy_((region.float() * (1 - a) + colour * a).round_())
            if t:
                view[:, y0 : min(y0 + t, y1), x0:x1] = solid
                view[:, max(y1 - t, y0) : y1, x0:x1] = solid
                view[:, y0:y1, x0 : min(x0 + t, x1)] = solid
                view[:, y0:y1, max(x1 - t, x0) : x1] = solid
        return views
