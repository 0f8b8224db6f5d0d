"""Boxes and intersection-over-union, with the protocol's conventions.

Boxes are ``[x, y, w, h]`` in float pixels, as in COCO, RefCOCO and MAttNet's files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np

from .errors import RefbenchError

IoUConvention = Literal["refer", "continuous"]
"""How IoU is computed: ``"refer"`` is refer's ``computeIoU`` (inclusive pixels, an intersection
counted only past one pixel in both axes); ``"continuous"`` is plain geometric IoU."""


@dataclass(frozen=True, slots=True)
class Box:
    """A candidate or ground-truth region: top-left corner, width, height (pixels)."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0
    label: str = ""
    #: The region's segmentation, when its source has one: COCO run-length encoding (compressed, a dict
    #: ``{"size": [height, width], "counts": bytes}``), as :func:`refbench.mask_rle` makes it; read it
    #: with :func:`refbench.decode_mask`. Not part of equality: two boxes at the same place are equal.
    mask: Any = field(default=None, compare=False, repr=False)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> float:
        return self.w * self.h


def as_array(boxes: Sequence[Box]) -> np.ndarray:
    """``[N, 4]`` float64 array of xywh."""
    if not boxes:
        return np.zeros((0, 4), dtype=np.float64)
    return np.array([b.xywh for b in boxes], dtype=np.float64)


def iou_matrix(a: np.ndarray, b: np.ndarray, convention: IoUConvention = "refer") -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] -> [N, M] (see :func:`iou`)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return iou(a[:, None, :], b[None, :, :], convention)


def iou(a: np.ndarray, b: np.ndarray, convention: IoUConvention = "refer") -> np.ndarray:
    """IoU of boxes ``a [..., 4]`` and ``b [..., 4]`` (xywh, float64), broadcast over the leading axes.

    ``refer`` reproduces ``computeIoU`` of the refer API (used by MAttNet's and the CLIP
    fine-tuning code's evaluation): the intersection counts inclusive pixels
    (``x2 = x + w - 1``, area ``(x2 - x1 + 1) * ...``) and only when ``x1 < x2`` and
    ``y1 < y2``, while the union uses plain ``w * h`` areas. The ``+1``s cancel, so it
    equals the geometric IoU except that overlaps of one pixel or less count as none.
    ``continuous`` is the usual geometric IoU (mmdetection, lmms-eval).
    """
    ax1, ay1, aw, ah = (a[..., i] for i in range(4))
    bx1, by1, bw, bh = (b[..., i] for i in range(4))
    ix1 = np.maximum(ax1, bx1)
    iy1 = np.maximum(ay1, by1)
    if convention == "refer":
        ix2 = np.minimum(ax1 + aw - 1, bx1 + bw - 1)
        iy2 = np.minimum(ay1 + ah - 1, by1 + bh - 1)
        inter = np.where((ix1 < ix2) & (iy1 < iy2), (ix2 - ix1 + 1) * (iy2 - iy1 + 1), 0.0)
    elif convention == "continuous":
        ix2 = np.minimum(ax1 + aw, bx1 + bw)
        iy2 = np.minimum(ay1 + ah, by1 + bh)
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    else:  # pragma: no cover - guarded by the config's Literal
        raise ValueError(f"unknown IoU convention {convention!r}")
    union = aw * ah + bw * bh - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


OUT_OF_IMAGE_TOLERANCE = 1.0  # pixels a box may overhang the image (detectors round outwards)


def box_problem(b: Box, width: float, height: float, tolerance: float = OUT_OF_IMAGE_TOLERANCE) -> str | None:
    """Why ``b`` is not a usable box in a ``width`` x ``height`` image, or None: a non-finite
    coordinate, a width or height <= 0, or more than ``tolerance`` pixels outside the image."""
    values = (b.x, b.y, b.w, b.h)
    if not all(math.isfinite(v) for v in values):
        return "has a non-finite coordinate"
    if b.w <= 0 or b.h <= 0:
        return "is degenerate (width and height must be > 0)"
    if b.x < -tolerance or b.y < -tolerance or b.x + b.w > width + tolerance or b.y + b.h > height + tolerance:
        return f"lies outside the {width:g}x{height:g} image"
    return None


def check_boxes(boxes: Sequence[Box], width: float, height: float, where: str,
                tolerance: float = OUT_OF_IMAGE_TOLERANCE) -> None:
    """Refuse the first unusable box (see :func:`box_problem`) with one clear message."""
    for i, b in enumerate(boxes):
        problem = box_problem(b, width, height, tolerance)
        if problem is not None:
            raise RefbenchError(f"{where}: box {i} {[b.x, b.y, b.w, b.h]} {problem}",
                                "remove it from the source file; boxes are [x, y, w, h] pixels, not [x1, y1, x2, y2]")
