"""Scene objects: their geometry, placement under layout constraints, annotation and drawing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .phrases import FAR, NEAR, SAFETY
from .spec import COLOURS, SHAPES, SIZES

# Bounding-box half-extents per unit radius; chosen so one size class looks equally big
# across shapes (the triangle is equilateral, centred on its box).
_EXTENT: dict[str, tuple[float, float]] = {
    "circle": (1.0, 1.0),
    "square": (0.9, 0.9),
    "triangle": (1.3, 1.3 * math.sqrt(3) / 2),
    "diamond": (1.15, 1.15),
}
_CIRCLE_POINTS = 32  # vertices of a circle's segmentation polygon
_GAP = 0.03  # minimum gap between object boxes, canvas fraction
_BORDER = 2.0  # pixels kept free at the canvas edge
_PLACE_TRIES = 60  # candidate centres drawn per object


@dataclass(slots=True, eq=False)  # compared by identity
class Obj:
    """An object being composed and placed; ranges and distances are canvas fractions."""

    colour: str
    shape: str
    size: str
    ranges: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 1.0), (0.0, 1.0)])  # allowed x, y
    near: Obj | None = None  # anchor this object must lie within the relation radius of
    far: Obj | None = None  # anchor this object must lie beyond the exclusion radius of
    priority: int = 3  # placement order: anchors, their targets, constrained, free
    cx: float = 0.0
    cy: float = 0.0

    def half_extent(self, canvas: int) -> tuple[float, float]:
        r = SIZES[self.size] * canvas
        ex, ey = _EXTENT[self.shape]
        return ex * r, ey * r


def place(rng: np.random.Generator, objs: list[Obj], canvas: int) -> bool:
    """Rejection-sample centres meeting each object's constraints, boxes apart by _GAP.

    Each object gets _PLACE_TRIES candidate centres at once and takes the first that fits.
    Returns False (leaving some objects unplaced) when an object finds no room.
    """
    gap = _GAP * canvas
    near = (NEAR - 2 * SAFETY) * canvas
    far = (FAR + 2 * SAFETY) * canvas
    placed: list[tuple[float, float, float, float]] = []  # centre and half-extents
    # Big objects first within a priority: they are the hardest to fit late.
    for obj in sorted(objs, key=lambda o: (o.priority, -SIZES[o.size])):
        hx, hy = obj.half_extent(canvas)
        (x_min, x_max), (y_min, y_max) = obj.ranges
        x_lo, x_hi = max(hx + _BORDER, x_min * canvas), min(canvas - hx - _BORDER, x_max * canvas)
        y_lo, y_hi = max(hy + _BORDER, y_min * canvas), min(canvas - hy - _BORDER, y_max * canvas)
        if x_lo > x_hi or y_lo > y_hi:
            return False
        if obj.near is not None:  # sample the part of the allowed box around the anchor
            x_lo, x_hi = max(x_lo, obj.near.cx - near), min(x_hi, obj.near.cx + near)
            y_lo, y_hi = max(y_lo, obj.near.cy - near), min(y_hi, obj.near.cy + near)
            if x_lo > x_hi or y_lo > y_hi:
                return False
        u = rng.random((2, _PLACE_TRIES))
        cx, cy = x_lo + (x_hi - x_lo) * u[0], y_lo + (y_hi - y_lo) * u[1]
        ok = np.ones(_PLACE_TRIES, dtype=bool)
        if obj.near is not None:
            ok &= np.hypot(cx - obj.near.cx, cy - obj.near.cy) <= near
        if obj.far is not None:
            ok &= np.hypot(cx - obj.far.cx, cy - obj.far.cy) >= far
        for ox, oy, ohx, ohy in placed:
            ok &= (np.abs(cx - ox) >= hx + ohx + gap) | (np.abs(cy - oy) >= hy + ohy + gap)
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return False
        obj.cx, obj.cy = float(cx[hits[0]]), float(cy[hits[0]])
        placed.append((obj.cx, obj.cy, hx, hy))
    return True


def _polygon(obj: Obj, canvas: int) -> list[tuple[float, float]]:
    hx, hy = obj.half_extent(canvas)
    cx, cy = obj.cx, obj.cy
    if obj.shape == "circle":
        return [(cx + hx * math.cos(a), cy + hy * math.sin(a))
                for a in np.linspace(0, 2 * math.pi, _CIRCLE_POINTS, endpoint=False)]
    if obj.shape == "square":
        return [(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)]
    if obj.shape == "triangle":
        return [(cx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)]
    return [(cx, cy - hy), (cx + hx, cy), (cx, cy + hy), (cx - hx, cy)]  # diamond


def annotation(obj: Obj, canvas: int) -> dict[str, Any]:
    """The object's COCO annotation fields (all but ``id`` and ``image_id``), plus its colour and size."""
    hx, hy = obj.half_extent(canvas)
    points = _polygon(obj, canvas)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(points))))
    return {
        "category_id": SHAPES.index(obj.shape) + 1,
        "bbox": [round(obj.cx - hx, 2), round(obj.cy - hy, 2), round(2 * hx, 2), round(2 * hy, 2)],
        "area": round(area, 2),
        "iscrowd": 0,
        "segmentation": [np.round(points, 2).ravel().tolist()],
        "colour": obj.colour,
        "size": obj.size,
    }


def render(rng: np.random.Generator, objs: list[Obj], canvas: int) -> Image.Image:
    """Tinted grey with low-frequency texture and fine noise; shapes drawn at 2x and averaged down."""
    coarse = rng.uniform(105, 150) + rng.normal(0, 10, 3) + rng.normal(0, 10, (4, 4, 3))  # tint + texture
    # Green marks the candidate box for the models: never let the background lean green.
    coarse[..., 1] = np.minimum(coarse[..., 1], coarse[..., [0, 2]].max(axis=-1))
    texture = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize((canvas, canvas), Image.BICUBIC)
    # Uniform noise in [-8, 7] from raw bytes: several times cheaper than rng.integers.
    noise = np.frombuffer(rng.bytes(canvas * canvas * 3), np.uint8).reshape(canvas, canvas, 3) & 15
    noise = noise.astype(np.int16) - 8
    background = np.clip(np.asarray(texture, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background).resize((2 * canvas, 2 * canvas), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    for obj in objs:
        fill = tuple(min(max(v + int(d), 0), 255) for v, d in zip(COLOURS[obj.colour], rng.integers(-8, 9, 3)))
        if obj.shape == "circle":
            hx, hy = obj.half_extent(canvas)
            draw.ellipse([2 * (obj.cx - hx), 2 * (obj.cy - hy), 2 * (obj.cx + hx), 2 * (obj.cy + hy)], fill=fill)
        else:
            draw.polygon([(2 * x, 2 * y) for x, y in _polygon(obj, canvas)], fill=fill)
    return image.reduce(2)
