"""A complete refbench plugin: one prompter, registered through one hook.

Install it (``pip install examples/refbench-outline``) and use it in a benchmark YAML::

    prompter: {plugin: outline, colour: [255, 0, 0], width: 3}
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw
from pydantic import Field

from refbench import Box, Options, Prompter, hookimpl


class Outline(Prompter):
    """Draws only the box's outline, no shading (a common alternative visual prompt)."""

    class Options(Options):
        colour: tuple[int, int, int] = (255, 0, 0)
        width: int = Field(3, ge=1)

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        views = []
        for b in boxes:
            view = image.copy()
            ImageDraw.Draw(view).rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1],
                                           outline=self.options.colour, width=self.options.width)
            views.append(view)
        return views


@hookimpl
def refbench_prompters():
    return {"outline": Outline}
