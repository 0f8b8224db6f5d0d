"""A complete refbench plugin: one prompter, registered through one hook.

Install it (``pip install examples/refbench-outline``) and use it in a benchmark YAML::

    prompter: {plugin: outline, colour: [255, 0, 0], width: 3}

The prompt is one ``draw`` over a :class:`refbench.Canvas`; refbench derives the full-image,
resized, windowed and on-device views from it, so it is fast on every path of the clip scorer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from refbench import Canvas, Options, Prompter, hookimpl

if TYPE_CHECKING:
    import torch  # imported in draw: listing plugins stays light


class Outline(Prompter):
    """Draws only the box's outline, ``width`` pixels inside it, no shading (a common alternative visual prompt)."""

    draws_within_box = 0  # nothing outside the box changes

    class Options(Options):
        colour: tuple[int, int, int] = (255, 0, 0)
        width: int = Field(3, ge=1)

    def draw(self, canvas: Canvas) -> torch.Tensor:
        import torch

        x0, y0 = canvas.boxes[:, 0].round().long(), canvas.boxes[:, 1].round().long()
        x1, y1 = (canvas.boxes[:, 0] + canvas.boxes[:, 2]).round().long(), (canvas.boxes[:, 1] + canvas.boxes[:, 3]).round().long()
        t = round(canvas.pixels(self.options.width))
        ring = canvas.rect(x0, y0, x1, y1) & ~canvas.rect(x0 + t, y0 + t, x1 - t, y1 - t)
        colour = torch.tensor(self.options.colour, dtype=torch.uint8, device=canvas.device).view(1, 3, 1, 1)
        return torch.where(ring, colour, canvas.views)


@hookimpl
def refbench_prompters():
    return {"outline": Outline}
