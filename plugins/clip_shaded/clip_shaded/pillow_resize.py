"""Pillow's bicubic resize, pass by pass: the output size and crop of a shortest-side resize, the order
of Pillow's two passes, each pass's fixed-point coefficients, and resizing a block of pixels with them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

from refbench import Box, Prompter, RefbenchError, as_array


BICUBIC = Image.Resampling.BICUBIC
SCALE = 2.0**-22  # Pillow's PRECISION_BITS = 22: coefficients are integers over 2^22
MAX_WEIGHTS = 1 << 22  # a pass's dense [out, in] matrix (32 MB); longer axes keep the reference path


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)``: shortest side to ``size``, the other
    ``int(size * long / short)``."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def crop_offsets(width: int, height: int, size: int) -> tuple[int, int]:
    """(left, top) of torchvision's ``CenterCrop(size)`` on a ``width x height`` image at least
    ``size`` on each side."""
    return int(round((width - size) / 2.0)), int(round((height - size) / 2.0))


def vertical_first(width: int, height: int, new_width: int, new_height: int) -> bool:
    """Whether Pillow 13's ``Image.resize`` from ``width x height`` runs its vertical pass first: when
    the height loses more than twice as many pixels as the width. Pillow 12.1 and earlier run the
    horizontal pass first; 12.2 and 12.3 the vertical one only for images over 100 times taller than
    wide whose height shrinks. :func:`first_pass_vertical` asks the installed one."""
    return 0 < height - new_height and 2 * (width - new_width) < height - new_height


@lru_cache(maxsize=4096)
def pillow_order(width: int, height: int, size: int) -> bool | None:
    """Whether the installed Pillow's ``Image.resize`` of a ``width x height`` image to
    :func:`resized_size` runs its vertical pass first, found with Pillow's own single passes (a
    resize that keeps one axis's size runs only the other axis's pass): an image of that size
    resized along one axis and then the other, each way round, against ``Image.resize``; first
    noise, then, where both ways give Pillow's answer (tiny outputs), noise of only 0 and 255.
    None: neither way, or both ways on both images. The images are of the full size (about 20 ms
    at 640 x 1400, 0.13 s at 1500 x 4500)."""
    rw, rh = resized_size(width, height, size)
    rule = vertical_first(width, height, rw, rh)
    rng = np.random.default_rng(width * 65536 + height)
    for top in (256, 2):
        pixels = rng.integers(0, top, (height, width, 3), dtype=np.uint8) * np.uint8(255 if top == 2 else 1)
        image = Image.fromarray(pixels)
        want = image.resize((rw, rh), BICUBIC).tobytes()
        ways = [flip for flip in (rule, not rule)
                if image.resize((width, rh) if flip else (rw, height), BICUBIC).resize((rw, rh), BICUBIC).tobytes() == want]
        if len(ways) < 2:
            return ways[0] if ways else None
    return None


def first_pass_vertical(width: int, height: int, size: int) -> bool | None:
    """Whether the installed Pillow resizes a ``width x height`` image to ``size`` (shortest side)
    vertically first; None: it cannot be told (:func:`pillow_order`). Where Pillow 13's rule
    (:func:`vertical_first`) says horizontally, every Pillow does: for a shortest-side resize,
    12.2's condition (over 100 times taller than wide, the height shrinking) makes the width shrink
    too and the height lose over 100 times as many pixels. Elsewhere the installed Pillow is asked,
    once per image size."""
    if not vertical_first(width, height, *resized_size(width, height, size)):
        return False
    return pillow_order(width, height, size)


def changed_rects(boxes: Sequence[Box], margin: int, width: int, height: int) -> np.ndarray:
    """The pixels ``[x0, x1) x [y0, y1)`` (``[N, 4]`` int64) each box's view may change when its
    prompter declares ``draws_within_box = margin``: the box rounded outwards and grown by ``margin``
    and one more pixel (for the prompter's own rounding, and its at-least-one-pixel boxes), clipped
    to the image, and at least the image's pixel nearest the box (where a prompter draws a box
    outside the image)."""
    x, y, w, h = as_array(boxes).T
    grow = margin + 1
    x0 = np.minimum(np.maximum(np.floor(x) - grow, 0), width - 1)
    y0 = np.minimum(np.maximum(np.floor(y) - grow, 0), height - 1)
    x1 = np.minimum(np.maximum(np.ceil(x + w) + grow, x0 + 1), width)
    y1 = np.minimum(np.maximum(np.ceil(y + h) + grow, y0 + 1), height)
    return np.stack([x0, y0, x1, y1], 1).astype(np.int64)


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's ``bicubic_filter`` (a = -0.5), with its operations in its order."""
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


@dataclass(frozen=True)
class Pass:
    """One Pillow bicubic pass from ``in_size`` to ``out_size`` pixels along an axis."""

    weights: np.ndarray  # [out, in] float64: the fixed-point coefficients times 2^-22, zero outside each filter
    first: np.ndarray  # [out] the first source pixel each output reads
    end: np.ndarray  # [out] one past its last
    near_tie: bool  # some coefficient is within 2^-26 of a rounding step (see the module's docstring)


@lru_cache(maxsize=4)
def pillow_pass(in_size: int, out_size: int) -> Pass:
    """Pillow's coefficients for a pass (``precompute_coeffs`` with ``box = (0, in_size)``, then
    ``normalize_coeffs_8bpc``), vectorised over the outputs."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale  # the bicubic filter reaches 2 pixels, times the scale when reducing
    ksize = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)  # C's (int) truncates, as astype does
    count = np.minimum((centre + support + 0.5).astype(np.int64), in_size) - first
    taps = np.arange(ksize)
    used = taps < count[:, None]
    pos = first[:, None] + taps
    w = np.where(used, _bicubic((pos - centre[:, None] + 0.5) * (1.0 / filterscale)), 0.0)
    total = np.zeros(out_size)
    for k in range(ksize):  # summed tap by tap, in C's order
        total = total + w[:, k]
    w = np.where(total[:, None] != 0.0, w / np.where(total == 0.0, 1.0, total)[:, None], w)
    steps = np.abs(w) * (1 << 22) + 0.5  # C: (int)(±0.5 + w * 2^22)
    fixed = np.copysign(np.trunc(steps), w)
    weights = np.zeros((out_size, in_size))
    rows, cols = np.nonzero(used)
    weights[rows, pos[rows, cols]] = fixed[rows, cols] * SCALE
    near = np.abs(steps - np.round(steps))[used & (w != 0)]
    return Pass(weights, first, first + count, bool(near.size and near.min() < 2.0**-26))


TILE = 48  # outputs per matrix product: a filter reads a few pixels, so a long block's weights are mostly zeros


def _apply(k: Pass, o: slice, src: slice, left: np.ndarray | None, right: np.ndarray | None) -> np.ndarray:
    """Pass ``k``'s sums for outputs ``o`` from source pixels ``src`` (which hold all they read), as
    ``left @ weights.T`` (sources along ``left``'s columns) or ``weights @ right`` (along ``right``'s
    rows), TILE outputs at a time, each product with just the sources those outputs read."""
    if o.stop - o.start <= TILE:
        return left @ k.weights[o, src].T if left is not None else k.weights[o, src] @ right
    parts = []
    for a in range(o.start, o.stop, TILE):
        b = min(a + TILE, o.stop)
        s0, s1 = int(k.first[a]), int(k.end[b - 1])
        sources = slice(s0 - src.start, s1 - src.start)
        parts.append(left[:, sources] @ k.weights[a:b, s0:s1].T if left is not None else k.weights[a:b, s0:s1] @ right[sources])
    return np.concatenate(parts, axis=1 if left is not None else 0)


def _resize(pixels: np.ndarray, first: Pass, second: Pass, u: slice, v: slice, ou: slice, ov: slice) -> np.ndarray:
    """Output block ``[ov, 3, ou]`` of the two passes (``first`` along axis u, then ``second`` along
    v) of ``pixels``, laid out ``[v, 3, u]`` and holding source rows ``v`` and columns ``u`` (every
    pixel those outputs read). Float64 in [0, 255.5]: truncated to uint8 (as assigning into a uint8
    array does), the pixels.

    Each pass ends in Pillow's ``clip8``, ``floor(sum + 1/2)`` in 0..255: here ``sum + 1/2`` clipped to
    [0, 255.5], then truncated (the same on that range)."""
    n_v, n_u = pixels.shape[0], pixels.shape[2]
    band = pixels.astype(np.float64, order="C").reshape(n_v * 3, n_u)
    mid = _apply(first, ou, u, band, None)  # [v * 3, ou]
    mid += 0.5
    np.clip(mid, 0.0, 255.5, out=mid)
    np.trunc(mid, out=mid)
    out = _apply(second, ov, v, None, mid.reshape(n_v, -1))  # [ov, 3 * ou]
    out += 0.5
    np.clip(out, 0.0, 255.5, out=out)
    return out.reshape(out.shape[0], 3, -1)


def _check_patches(prompter: Prompter, patches: Sequence[np.ndarray], windows: Sequence[tuple[int, int, int, int]]) -> None:
    """A prompter's ``render_windows`` answer: one uint8 ``[h, w, 3]`` array per window, of its size."""
    name = type(prompter).__name__
    if len(patches) != len(windows):
        raise RefbenchError(f"prompter {name}'s render_windows gave {len(patches)} windows for {len(windows)}",
                            "return one array per window, in order")
    for patch, (x0, y0, x1, y1) in zip(patches, windows):
        if not isinstance(patch, np.ndarray) or patch.dtype != np.uint8 or patch.shape != (y1 - y0, x1 - x0, 3):
            got = f"{patch.dtype} {list(patch.shape)}" if isinstance(patch, np.ndarray) else type(patch).__name__
            raise RefbenchError(f"prompter {name}'s render_windows gave {got} for window {(x0, y0, x1, y1)}",
                                f"return uint8 [{y1 - y0}, {x1 - x0}, 3] (rows, columns, RGB) for it")
