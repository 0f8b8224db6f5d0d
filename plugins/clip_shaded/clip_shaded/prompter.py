"""The green-shading visual prompt: each candidate drawn on its own copy of the image."""

from __future__ import annotations

from typing import Annotated, Sequence

import numpy as np
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
        colour: tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)],
                      Annotated[int, Field(ge=0, le=255)]] = Field(LIMEGREEN, description="RGB of fill and outline")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of the fill")
        outline: int = Field(2, ge=0, description="outline width in pixels, drawn inside the box")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        base = np.asarray(image.convert("RGB"))
        views = self._shade_all(base, boxes, self.options.outline)
        return [Image.fromarray(view) for view in views]

    renders_resized = True

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float, out: np.ndarray | None = None) -> np.ndarray:
        """The same arithmetic as :meth:`render` on an image already resized to the model's input;
        the outline shrinks by ``scale`` (at least 1 px)."""
        t = max(1, round(self.options.outline * scale)) if self.options.outline else 0
        return self._shade_all(image, boxes, t, out)

    def _shade_all(self, image: np.ndarray, boxes: Sequence[Box], t: int, out: np.ndarray | None = None) -> np.ndarray:
        """Every box on its own copy of ``image`` (H x W x 3 uint8): the box blended with the colour at
        ``alpha``, and a ``t``-pixel outline drawn inside it. A blended pixel depends only on the
        image's pixel, so the blend is computed once per image (where any box is) and each view copies its
        box from it: the box is filled with the solid colour, then the part inside the outline is
        copied from the blend (two copies a view, whatever the outline)."""
        h, w = image.shape[:2]
        views = np.empty((len(boxes), h, w, 3), dtype=np.uint8) if out is None else out
        if not len(boxes):
            return views
        a = self.options.alpha
        colour = np.asarray(self.options.colour, dtype=np.float32)
        bounds = [pixel_bounds(b, w, h) for b in boxes]
        left, top = min(b[0] for b in bounds), min(b[1] for b in bounds)  # blend only where some box is
        right, bottom = max(b[2] for b in bounds), max(b[3] for b in bounds)
        blended = np.rint(image[top:bottom, left:right] * (1 - a) + colour * a).astype(np.uint8)
        solid = colour.astype(np.uint8)
        views[:] = image
        for view, (x0, y0, x1, y1) in zip(views, bounds):
            if t:
                view[y0:y1, x0:x1] = solid
                x0, y0, x1, y1 = x0 + t, y0 + t, x1 - t, y1 - t
                if x0 >= x1 or y0 >= y1:  # all outline
                    continue
            view[y0:y1, x0:x1] = blended[y0 - top : y1 - top, x0 - left : x1 - left]
        return views
