"""Exact views without resizing every full-size copy.

The exact path's reference is: render each view on the full image, then torchvision's
``Resize(size, BICUBIC)`` (shortest side to ``size``) and ``CenterCrop(size)``. On a PIL image
that resize is Pillow's ``Image.resize``: a horizontal pass, then a vertical one, each with an
8-bit result. A horizontal output row depends only on the same source row, a vertical output
column only on the same intermediate column, and a pass's coefficients only on the sizes in and
out. So when a view differs from the image only within a rectangle of rows ``[ya, yb)`` and
columns ``[xa, xb)`` (horizontal pass first; the other order is the same, transposed):

- only rows ``[ya, yb)`` of the intermediate (horizontally resized) image differ: they are
  recomputed by resizing those rows of the view, at full width, horizontally;
- only the intermediate columns whose filter reaches ``[xa, xb)`` differ, and only output
  columns of the same index: they are recomputed by resizing those columns of the view's
  intermediate image, at full height, vertically.

Every pass runs in Pillow with the same sizes in and out as the reference's (full width for
the horizontal pass, full height for the vertical one), so the coefficients, the rounding and
the 8-bit intermediate are the reference's: the views are bit-identical to it. Only which
pixels to recompute is derived here, generously (a pixel more each side than Pillow's filter
reaches); recomputing too much costs time, never exactness. All views of an image share two
Pillow calls: their row bands are stacked into one tall image, their column strips side by side
into one wide image. Pillow's box argument (resample a region onto a sub-grid) is not used: it
takes the region as 32-bit floats and computes each output pixel's centre from the region's
start, so its coefficients are sure to equal the full resize's only where the scale and the
region's start are exact binary fractions (a scale of 2, not 640/298).
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

import numpy as np
from PIL import Image

from refbench import Box

BICUBIC = Image.Resampling.BICUBIC
TRANSPOSE = Image.Transpose.TRANSPOSE
SUPPORT = 2.0  # Pillow's bicubic filter reaches 2 source pixels (x the scale when reducing)


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


def reach(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output pixel of a Pillow bicubic pass from ``in_size`` to ``out_size``, the first and
    one-past-last source pixel its filter may read, widened by a pixel each side (the same
    arithmetic as Pillow's coefficients, so a rounding difference cannot narrow it)."""
    scale = in_size / out_size
    support = SUPPORT * max(scale, 1.0)
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.clip(np.trunc(centre - support + 0.5) - 1, 0, in_size).astype(np.int64)
    end = np.clip(np.trunc(centre + support + 0.5) + 1, 0, in_size).astype(np.int64)
    return first, end


def changed_rect(box: Box, margin: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels ``[x0, x1) x [y0, y1)`` a view of ``box`` may change when its prompter declares
    ``draws_within_box = margin``: the box rounded outwards and grown by ``margin`` and one more
    pixel (for the prompter's own rounding, and its at-least-one-pixel boxes), clipped to the image,
    and at least the image's pixel nearest the box (where a prompter draws a box outside the image)."""
    grow = margin + 1
    x0 = min(max(math.floor(box.x) - grow, 0), width - 1)
    y0 = min(max(math.floor(box.y) - grow, 0), height - 1)
    x1 = min(max(math.ceil(box.x + box.w) + grow, x0 + 1), width)
    y1 = min(max(math.ceil(box.y + box.h) + grow, y0 + 1), height)
    return x0, y0, x1, y1


class ExactViews:
    """Writes views bit-identical to ``CenterCrop(size)(Resize(size, BICUBIC)(view))`` for views that
    differ from their image only near their boxes (see the module's docstring).

    Pillow may run the vertical pass first (the installed one does for some portrait sizes); that
    order is the transpose of the other, so such an image and its views are handled transposed.
    Which order reproduces Pillow's own ``resize`` is checked once per image size, on a noise image
    of that size; a size where neither does (a Pillow whose resize is not two such passes) keeps
    the reference path."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._reach: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        self._order: dict[tuple[int, int], bool | None] = {}  # image size -> transposed?, None: neither order

    def _columns(self, in_size: int, out_size: int, x0: int, x1: int) -> tuple[int, int]:
        """The output columns ``[c0, c1)`` of a horizontal pass that read any of columns ``[x0, x1)``."""
        key = (in_size, out_size)
        if key not in self._reach:
            self._reach[key] = tuple(a.tolist() for a in reach(in_size, out_size))  # type: ignore[assignment]
        first, end = self._reach[key]
        # first and end never decrease along the output, so the columns that overlap are a range
        return bisect.bisect_right(end, x0), bisect.bisect_left(first, x1)

    def transposed(self, width: int, height: int) -> bool | None:
        """Whether images of this size take the transposed order (vertical pass first); None when
        neither order reproduces ``Image.resize`` here."""
        key = (width, height)
        if key not in self._order:
            rw, rh = resized_size(width, height, self.size)
            noise = np.random.default_rng(width * 65536 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
            want = np.asarray(Image.fromarray(noise).resize((rw, rh), BICUBIC))
            self._order[key] = None
            for flip in (False, True):
                src = np.ascontiguousarray(noise.transpose(1, 0, 2)) if flip else noise
                got = _two_passes(src, rh if flip else rw, rw if flip else rh)
                if np.array_equal(got.transpose(1, 0, 2) if flip else got, want):
                    self._order[key] = flip
                    break
        return self._order[key]

    def write(self, image: Image.Image, views: Sequence[Image.Image], boxes: Sequence[Box], margin: int,
              out: np.ndarray) -> bool:
        """``out[i]`` (``size x size x 3`` uint8, any strides) = the reference for ``views[i]``; False
        (nothing written) where this image's size keeps the reference path.

        ``image`` is RGB; every view is RGB, of the image's size, and equal to it outside
        :func:`changed_rect` of its box grown by ``margin``."""
        width, height = image.size
        flip = self.transposed(width, height)
        if flip is None:
            return False
        rw, rh = resized_size(width, height, self.size)
        left, top = crop_offsets(rw, rh, self.size)
        rects = [changed_rect(b, margin, width, height) for b in boxes]
        if not flip:
            bands = [v.crop((0, y0, width, y1)) for v, (_, y0, _, y1) in zip(views, rects)]
            self._write(image, bands, rects, rw, rh, left, top, out)
        else:  # the same algorithm on the transposed image, views and boxes
            bands = [v.crop((x0, 0, x1, height)).transpose(TRANSPOSE) for v, (x0, _, x1, _) in zip(views, rects)]
            rects = [(y0, x0, y1, x1) for x0, y0, x1, y1 in rects]
            self._write(image.transpose(TRANSPOSE), bands, rects, rh, rw, top, left, out.transpose(0, 2, 1, 3))
        return True

    def _write(self, image: Image.Image, bands: list[Image.Image], rects: list[tuple[int, int, int, int]],
               rw: int, rh: int, left: int, top: int, out: np.ndarray) -> None:
        """Horizontal pass first: ``image`` resized to ``rw x rh`` and cropped at ``(left, top)``, with
        each view's changed rows (``bands``, rows ``[y0, y1)`` of its rectangle) and the columns they
        reach recomputed."""
        size = self.size
        width, height = image.size
        across = image.resize((rw, height), BICUBIC)  # the horizontal pass alone
        plain = np.asarray(across.resize((rw, rh), BICUBIC))  # then the vertical one
        out[:] = plain[top : top + size, left : left + size]
        if not bands:
            return
        across_px = np.asarray(across)
        spans = [self._columns(width, rw, x0, x1) for x0, _, x1, _ in rects]

        # horizontal pass of every view's changed rows, stacked into one tall image
        rows = sum(y1 - y0 for _, y0, _, y1 in rects)
        stack = Image.new("RGB", (width, rows))
        r = 0
        for band, (_, y0, _, y1) in zip(bands, rects):
            stack.paste(band, (0, r))
            r += y1 - y0
        across_bands = np.asarray(stack.resize((rw, rows), BICUBIC))

        # vertical pass of every view's changed columns (its intermediate image there), side by side
        cols = sum(c1 - c0 for c0, c1 in spans)
        if not cols:  # no column changes (cannot happen for a box inside the image)
            return
        strips = np.empty((height, cols, 3), dtype=np.uint8)
        r = c = 0
        for (_, y0, _, y1), (c0, c1) in zip(rects, spans):
            strip = strips[:, c : c + c1 - c0]
            strip[:] = across_px[:, c0:c1]
            strip[y0:y1] = across_bands[r : r + y1 - y0, c0:c1]
            r += y1 - y0
            c += c1 - c0
        strips = np.asarray(Image.fromarray(strips).resize((cols, rh), BICUBIC))[top : top + size]

        # each view: the resized image, with its changed columns (within the crop) replaced
        c = 0
        for view_out, (c0, c1) in zip(out, spans):
            k0, k1 = max(c0, left), min(c1, left + size)
            if k0 < k1:
                view_out[:, k0 - left : k1 - left] = strips[:, c + k0 - c0 : c + k1 - c0]
            c += c1 - c0


def _two_passes(pixels: np.ndarray, rw: int, rh: int) -> np.ndarray:
    """``pixels`` (H x W x 3) resized horizontally, then vertically, as two Pillow calls."""
    across = Image.fromarray(pixels).resize((rw, pixels.shape[0]), BICUBIC)
    return np.asarray(across.resize((rw, rh), BICUBIC))

