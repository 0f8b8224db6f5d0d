"""A simulated detector: jittered true boxes (a few badly), some misses, some false positives.

Every IoU bound holds with ``SAFETY`` to spare, so a re-check of the written boxes against the
same bound, strict or not, agrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .phrases import SAFETY
from .spec import SHAPES, SynthSpec

_TRIES = 60  # candidate boxes drawn per detection (twice as many for a hard jitter)


def simulate_detections(rng: np.random.Generator, anns: list[dict[str, Any]],
                        spec: SynthSpec) -> list[tuple[list[float], int, float]]:
    """Detections of one image's objects ``anns``, as ``(xywh box, category id, score)``.

    Scores of true detections run higher than those of false ones, with overlap, so that
    ranking by score helps but does not solve the task.
    """
    truths = [a["bbox"] for a in anns]
    dets: list[tuple[list[float], int, float]] = []
    for ann in anns:
        if rng.random() < spec.miss_rate:
            continue
        hard = _jitter(rng, ann["bbox"], truths, spec.canvas) if rng.random() < spec.hard_jitter_rate else None
        if hard is not None:
            dets.append((hard, ann["category_id"], _score(rng.beta(3, 3))))
        else:  # an ordinary detection (also when a hard jitter found no valid box)
            dets.append((_nudge(rng, ann["bbox"], spec.canvas), ann["category_id"], _score(rng.beta(6, 2))))
    for _ in range(int(rng.integers(spec.false_positives[0], spec.false_positives[1] + 1))):
        box = _false_positive(rng, truths, spec.canvas)
        if box is not None:
            dets.append((box, int(rng.integers(len(SHAPES))) + 1, _score(rng.beta(2, 4))))
    return dets


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Continuous IoU of xywh boxes (refer's pixel-inclusive variant differs only for sub-pixel overlaps)."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _score(value: float) -> float:
    return min(max(round(float(value), 4), 0.0001), 1.0)


def _nudge(rng: np.random.Generator, truth: list[float], canvas: int) -> list[float]:
    """A slightly shifted and rescaled copy of ``truth``, IoU > 0.7 with it."""
    for _ in range(_TRIES):
        log_sw, log_sh, dx, dy = (rng.standard_normal(4) * (0.06, 0.06, 0.04, 0.04)).tolist()
        box = _transform(truth, math.exp(log_sw), math.exp(log_sh), dx, dy, canvas)
        if box is not None and iou(box, truth) > 0.7 + SAFETY:
            return box
    return list(truth)


def _jitter(rng: np.random.Generator, truth: list[float], truths: list[list[float]], canvas: int) -> list[float] | None:
    """A box with IoU in [0.25, 0.5) with ``truth`` and < 0.5 with every other object; None if none found."""
    for _ in range(2 * _TRIES):
        log_sw, log_sh, dx, dy = rng.uniform((-0.5, -0.5, -0.9, -0.9), (0.5, 0.5, 0.9, 0.9)).tolist()
        box = _transform(truth, math.exp(log_sw), math.exp(log_sh), dx, dy, canvas)
        if (box is not None and 0.25 + SAFETY <= iou(box, truth) < 0.5 - SAFETY
                and all(iou(box, t) < 0.5 - SAFETY for t in truths if t is not truth)):
            return box
    return None


def _false_positive(rng: np.random.Generator, truths: list[list[float]], canvas: int) -> list[float] | None:
    """A box on the background or half over an object, IoU < 0.4 with every object; None if none found."""
    for _ in range(_TRIES):
        u = rng.random(6).tolist()
        if u[0] < 0.5:
            w, h = (0.08 + 0.22 * u[1]) * canvas, (0.08 + 0.22 * u[2]) * canvas
            box = _clip_box(u[3] * (canvas - w), u[4] * (canvas - h), w, h, canvas)
        else:  # shifted 40-70% of the object's size along one axis, up to 30% along the other
            truth = truths[int(u[1] * len(truths))]
            along = (0.4 + 0.3 * u[2]) * (1 if u[3] < 0.5 else -1)
            across = 0.6 * u[4] - 0.3
            dx, dy = (along, across) if u[5] < 0.5 else (across, along)
            box = _transform(truth, 1.0, 1.0, dx, dy, canvas)
        if box is not None and all(iou(box, t) < 0.4 - SAFETY for t in truths):
            return box
    return None


def _transform(box: list[float], sw: float, sh: float, dx: float, dy: float, canvas: int) -> list[float] | None:
    """``box`` scaled by (sw, sh) about its centre, shifted by (dx, dy) of its size, clipped."""
    x, y, w, h = box
    return _clip_box(x + dx * w + (1 - sw) * w / 2, y + dy * h + (1 - sh) * h / 2, w * sw, h * sh, canvas)


def _clip_box(x: float, y: float, w: float, h: float, canvas: int) -> list[float] | None:
    """The part of the box inside the canvas, rounded to 0.01 px; None if under 2 px on a side."""
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(canvas)), min(y + h, float(canvas))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
