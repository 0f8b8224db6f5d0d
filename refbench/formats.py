"""Declared coordinate formats: how four numbers a model wrote become a box of the original image.

A model's box may be xywh or xyxy, x first or y first, in pixels, normalised to [0, 1] or cells of
a grid (0-1000, PaliGemma's 1024 location bins...), and may refer to the original image or to an
input the model's processor resized or letterboxed. :class:`BoxFormat` holds that declaration and
:meth:`BoxFormat.decode` applies it. Nothing is guessed from the magnitudes of the numbers: the
``predictions`` grounder and every model grounder read boxes through this one place.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field, model_validator

from .boxes import Box, box_problem
from .component import Options
from .errors import RefbenchError

#: Why :meth:`BoxFormat.decode` gave no box: values outside the declared range, or a box that is not
#: usable in the image (non-finite, degenerate, or beyond refbench's 1-pixel tolerance).
DECODE_PROBLEMS = ("outside_unit_range", "invalid_box")


class BoxFormat(Options):
    """A box's declared format: corner convention, axis order, scale and frame."""

    box_format: Literal["xywh", "xyxy"]
    scale: Literal["pixels", "normalised", "0-1000", "grid"] = Field(
        description="pixels; normalised to [0, 1]; a 0-1000 grid; or cells of a grid of `grid` steps")
    grid: float | None = Field(None, description="steps of the grid (scale: grid), e.g. 1024 for location tokens 0-1023")
    grid_offset: float = Field(0.0, description="added to a grid value before it is divided by `grid` (0.5: the centre of a bin)")
    order: Literal["xy", "yx"] = Field("xy", description="yx: each point is written y first (PaliGemma)")
    relative_to: Literal["original", "resized", "letterboxed"] = Field(
        "original", description="the frame of the coordinates: the original image, or an input of input_size")
    input_size: tuple[int, int] | None = Field(None, description="[width, height] of the resized or letterboxed input")
    letterbox: Literal["centre", "top_left"] = Field("centre", description="where a letterboxed image sits in its input")

    @model_validator(mode="after")
    def _grid(self) -> "BoxFormat":
        if (self.scale == "grid") != (self.grid is not None):
            raise ValueError("grid is needed exactly when scale is grid")
        if self.grid is not None and self.grid <= 0:
            raise ValueError("grid must be positive")
        if self.input_size is not None and min(self.input_size) <= 0:
            raise ValueError("input_size must be positive")
        return self

    def decode(self, values: Sequence[float], width: int, height: int,
               input_size: tuple[int, int] | None = None) -> Box | str:
        """The box ``values`` name, as xywh pixels of the ``width`` x ``height`` original image, or the
        problem (one of :data:`DECODE_PROBLEMS`) that makes it no answer. ``input_size`` ([width,
        height] of the model's input) overrides the declared one, for inputs whose size depends on the
        image (e.g. Qwen2.5-VL's resized input)."""
        if len(values) != 4:
            raise RefbenchError(f"a box has 4 coordinates, not {len(values)}", "pass x, y and the other corner or the size")
        a, b, c, d = (float(v) for v in values)
        if self.order == "yx":
            a, b, c, d = b, a, d, c
        frame = input_size or self.input_size
        if self.relative_to != "original" and frame is None:
            raise RefbenchError(f"coordinates relative to a {self.relative_to} input need its size",
                                "declare input_size: [width, height]")
        if self.scale == "normalised" and not all(0.0 <= v <= 1.0 for v in (a, b, c, d)):
            return "outside_unit_range"
        if self.scale == "grid":
            assert self.grid is not None
            if not all(0.0 <= v <= self.grid for v in (a, b, c, d)):
                return "outside_unit_range"
            a, b, c, d = ((v + self.grid_offset) / self.grid for v in (a, b, c, d))
            if self.box_format == "xywh":  # a size is a difference of grid values: no bin offset
                c, d = c - self.grid_offset / self.grid, d - self.grid_offset / self.grid
        elif self.scale == "0-1000":  # 0-1000 values are scaled, not range-checked: a box past the frame is invalid
            a, b, c, d = (v / 1000.0 for v in (a, b, c, d))
        x, y = a, b
        w, h = (c - a, d - b) if self.box_format == "xyxy" else (c, d)
        frame_w, frame_h = frame if frame is not None else (width, height)
        if self.scale != "pixels":
            x, w, y, h = x * frame_w, w * frame_w, y * frame_h, h * frame_h
        if self.relative_to == "resized":
            sx, sy = width / frame_w, height / frame_h
            x, w, y, h = x * sx, w * sx, y * sy, h * sy
        elif self.relative_to == "letterboxed":
            s = min(frame_w / width, frame_h / height)
            dx, dy = ((frame_w - width * s) / 2, (frame_h - height * s) / 2) if self.letterbox == "centre" else (0.0, 0.0)
            x, y, w, h = (x - dx) / s, (y - dy) / s, w / s, h / s
        box = Box(x, y, w, h)
        return "invalid_box" if box_problem(box, width, height) is not None else box

    def declared(self) -> dict[str, object]:
        """The declaration as run.json records it (only the fields that apply)."""
        out: dict[str, object] = {"box_format": self.box_format, "scale": self.scale, "order": self.order,
                                  "relative_to": self.relative_to}
        if self.scale == "grid":
            out.update(grid=self.grid, grid_offset=self.grid_offset)
        if self.relative_to != "original":
            out["input_size"] = self.input_size
        if self.relative_to == "letterboxed":
            out["letterbox"] = self.letterbox
        return out
