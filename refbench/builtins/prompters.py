"""Built-in visual prompts (others, such as green shading, come from plugins)."""

from __future__ import annotations

from typing import Sequence

from PIL import Image
from pydantic import Field

from ..boxes import Box
from ..interfaces import Options, Prompter


class CropPrompter(Prompter):
    """Each view is the box's crop, grown on every side by a fraction of its size."""

    class Options(Options):
        context: float = Field(0.0, ge=0, description="fraction of the box added on each side")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        c = self.options.context
        views = []
        for b in boxes:
            x0, y0 = max(0, b.x - c * b.w), max(0, b.y - c * b.h)
            x1, y1 = min(image.width, b.x + b.w * (1 + c)), min(image.height, b.y + b.h * (1 + c))
            views.append(image.crop((int(x0), int(y0), max(int(x0) + 1, round(x1)), max(int(y0) + 1, round(y1)))))
        return views
