"""Exact views computed only where each box changes them.

The exact path's reference is: render each view on the full image, then torchvision's
``Resize(size, BICUBIC)`` (shortest side to ``size``) and ``CenterCrop(size)``. On a PIL image
that resize is Pillow's ``Image.resize``: two passes (horizontal then vertical, or the other
way round), each a sum of source pixels times fixed-point coefficients (22 fractional bits),
rounded and clipped to 8 bits. An output pixel of a pass depends only on the source pixels
its filter reaches along that pass's axis, and a pass's coefficients only on the sizes in
and out.

So when a view differs from its image only within a rectangle, only the output pixels whose
filters reach that rectangle differ from the plainly resized image's. Per image, Pillow
resizes the image once; per view, this module computes just the output block its box
reaches, from the view's pixels in the source window those outputs read (the prompter's
:meth:`~refbench.Prompter.render_windows`), with the same coefficients and the same integer
arithmetic as Pillow:

- the coefficients are Pillow's ``precompute_coeffs`` and ``normalize_coeffs_8bpc``, computed
  in float64 with the same operations in the same order;
- each pass is a matrix product of 8-bit values and integer coefficients (scaled by 2^-22,
  which is exact): every product and partial sum is a multiple of 2^-22 below 2^31 of them,
  so float64 holds it exactly and the order of the sums does not matter;
- each pass ends as Pillow's does, in ``clip8``: ``floor(sum + 1/2)`` clipped to 0..255.

Whether that reproduces the installed Pillow is checked once per image size (see
:meth:`ExactViews._check`): each pass alone on noise strips, then both, in the installed
Pillow's order (:func:`first_pass_vertical`; Pillow 13 runs the vertical pass first for images
whose height loses more than twice as many pixels as their width, 12.1 and earlier the
horizontal one, 12.2 and 12.3 the vertical one only for images over 100 times taller than wide
whose height shrinks), on output blocks of a noise image of that size, against ``Image.resize``.
A size that fails (another Pillow's arithmetic), whose order cannot be told, whose coefficients
lie within 2^-26 of a rounding step (where a platform's float arithmetic, e.g. a fused multiply-
add, could round Pillow's the other way), or whose passes would need dense matrices over
``MAX_WEIGHTS`` entries keeps the reference path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from refbench import Box, Prompter

from .pillow_resize import (BICUBIC, MAX_WEIGHTS, SCALE, TILE, Pass, _apply, _bicubic, _check_patches, _resize,  # noqa: F401
                            changed_rects, crop_offsets, first_pass_vertical, pillow_order, pillow_pass, resized_size,
                            vertical_first)


@dataclass(frozen=True)
class Geometry:
    """How images of one size are resized: the passes in Pillow's order, as axes u (first) and v."""

    flip: bool  # the vertical pass first: u is y, v is x
    resized: tuple[int, int]  # (width, height) after Resize
    crop: tuple[int, int]  # (left, top) of CenterCrop
    first: Pass
    second: Pass


class ExactViews:
    """Writes views bit-identical to ``CenterCrop(size)(Resize(size, BICUBIC)(view))`` for prompters
    that declare ``draws_within_box`` (see the module's docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        # image size -> the vertical pass first?, None: the reference path. Only the flag is
        # kept: the coefficients live in pillow_pass's bounded cache (an image size's are up to MBs).
        self._order: dict[tuple[int, int], bool | None] = {}

    def geometry(self, width: int, height: int) -> Geometry | None:
        """The passes for images of this size; None where they would not reproduce ``Image.resize``
        exactly (those images keep the reference path)."""
        key = (width, height)
        if key not in self._order:
            self._order[key] = self._check(width, height)
        flip = self._order[key]
        if flip is None:
            return None
        rw, rh = resized_size(width, height, self.size)
        across, down = pillow_pass(width, rw), pillow_pass(height, rh)
        return Geometry(flip, (rw, rh), crop_offsets(rw, rh, self.size), *((down, across) if flip else (across, down)))

    def _check(self, width: int, height: int) -> bool | None:
        """Whether this size takes the vertical pass first, as the installed Pillow's ``Image.resize``
        does; None: keep the reference path. Each pass alone must reproduce Pillow on noise strips 3
        pixels thick (Pillow then runs only that pass), every output of it; then both passes, in the
        installed Pillow's order (:func:`first_pass_vertical`), on output blocks at the corners and
        the centre of a noise image of this size (cheap for any size: the blocks are computed as
        views' are). Sizes whose passes are too long for a dense matrix, or whose coefficients lie
        near a rounding step, keep the reference path."""
        rw, rh = resized_size(width, height, self.size)
        if max(width * rw, height * rh) > MAX_WEIGHTS:
            return None
        across, down = pillow_pass(width, rw), pillow_pass(height, rh)
        if across.near_tie or down.near_tie:
            return None
        rng = np.random.default_rng(width * 65536 + height)
        for k, n_in, n_out in ((across, width, rw), (down, height, rh)):
            strip = rng.integers(0, 256, (3, n_in, 3), dtype=np.uint8)
            want = np.asarray(Image.fromarray(strip).resize((n_out, 3), BICUBIC))
            sums = np.einsum("oi,yic->yoc", k.weights, strip.astype(np.float64)) + 0.5
            if not np.array_equal(np.clip(sums, 0.0, 255.5).astype(np.uint8), want):
                return None
        flip = first_pass_vertical(width, height, self.size)
        if flip is None:
            return None
        first, second = (down, across) if flip else (across, down)
        noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(noise).resize((rw, rh), BICUBIC))
        pixels = noise.transpose(1, 2, 0) if flip else noise.transpose(0, 2, 1)  # [v, 3, u]
        n_u, n_v = first.weights.shape[0], second.weights.shape[0]  # outputs along u and v
        for a in {0, max(n_u // 2 - 16, 0), max(n_u - 32, 0)}:
            for b in {0, max(n_v // 2 - 16, 0), max(n_v - 32, 0)}:
                ou, ov = slice(a, min(a + 32, n_u)), slice(b, min(b + 32, n_v))
                u = slice(int(first.first[ou.start]), int(first.end[ou.stop - 1]))
                v = slice(int(second.first[ov.start]), int(second.end[ov.stop - 1]))
                got = _resize(pixels[v, :, u], first, second, u, v, ou, ov).astype(np.uint8)
                block = want[ou, ov] if flip else want[ov, ou]  # want is [y, x, 3]; got is [ov, 3, ou]
                if not np.array_equal(got.transpose(2, 0, 1) if flip else got.transpose(0, 2, 1), block):
                    return None
        return flip

    def write(self, image: Image.Image, boxes: Sequence[Box], prompter: Prompter, out: np.ndarray) -> bool:
        """``out[i]`` (``3 x size x size`` uint8) = the reference for the view of ``boxes[i]``; False
        (nothing written) where this image's size keeps the reference path.

        ``image`` is RGB, and ``prompter`` declares ``draws_within_box``: its views equal the image
        outside :func:`changed_rects`. The views' pixels come from its ``render_windows``."""
        return self.write_many([image], [boxes], prompter, [out])[0]

    def write_many(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]], prompter: Prompter,
                   outs: Sequence[np.ndarray]) -> list[bool]:
        """:meth:`write` for several images, their windows drawn in one
        :meth:`~refbench.Prompter.render_windows_many` call."""
        plans = [self._start(image, b, prompter, out) for image, b, out in zip(images, boxes, outs)]
        todo = [k for k, plan in enumerate(plans) if plan is not None and plan[1]]
        patches = prompter.render_windows_many([images[k] for k in todo], [[boxes[k][i] for i in plans[k][1]] for k in todo],
                                               [plans[k][2] for k in todo])
        for k, found in zip(todo, patches):
            geo, keep, windows, blocks = plans[k]
            _check_patches(prompter, found, windows)
            self._finish(geo, keep, found, windows, blocks, outs[k])
        return [plan is not None for plan in plans]

    def _start(self, image: Image.Image, boxes: Sequence[Box], prompter: Prompter, out: np.ndarray
               ) -> tuple[Geometry, list[int], list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]] | None:
        """The plainly resized image written into every view of ``out``, and the plan of what each box
        changes (:meth:`_plan`); None (nothing written) where this image's size keeps the reference path."""
        width, height = image.size
        geo = self.geometry(width, height)
        if geo is None:
            return None
        size = self.size
        left, top = geo.crop
        plain = np.asarray(image.resize(geo.resized, BICUBIC))[top : top + size, left : left + size]
        out[:] = np.ascontiguousarray(plain.transpose(2, 0, 1))  # channels first once, then plain copies
        if not boxes:
            return geo, [], [], []
        return (geo, *self._plan(geo, boxes, prompter.draws_within_box or 0, width, height))

    def _finish(self, geo: Geometry, keep: list[int], patches: Sequence[np.ndarray], windows: list[tuple[int, int, int, int]],
                blocks: list[tuple[int, int, int, int]], out: np.ndarray) -> None:
        """Each changed view's output block, resized from its window's pixels, written into ``out``."""
        left, top = geo.crop
        cu, cv = (top, left) if geo.flip else (left, top)  # the crop's start along u and v
        for i, patch, (x0, y0, x1, y1), (ou0, ov0, ou1, ov1) in zip(keep, patches, windows, blocks):
            ou, ov = slice(ou0, ou1), slice(ov0, ov1)
            if geo.flip:  # u is y: the patch as [x, 3, y], the block comes out [x, 3, y]
                block = _resize(patch.transpose(1, 2, 0), geo.first, geo.second, slice(y0, y1), slice(x0, x1), ou, ov)
                out[i, :, ou0 - cu : ou1 - cu, ov0 - cv : ov1 - cv] = block.transpose(1, 2, 0)
            else:  # u is x: [y, 3, x]
                block = _resize(patch.transpose(0, 2, 1), geo.first, geo.second, slice(x0, x1), slice(y0, y1), ou, ov)
                out[i, :, ov0 - cv : ov1 - cv, ou0 - cu : ou1 - cu] = block.transpose(1, 0, 2)

    def _plan(self, geo: Geometry, boxes: Sequence[Box], margin: int, width: int, height: int
              ) -> tuple[list[int], list[tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
        """For every view with an output pixel its box changes within the crop: its index, the source
        window its output block reads (``x0, y0, x1, y1`` in the image), and that block
        (``u0, v0, u1, v1`` in the resized image's pixels, u and v as in :class:`Geometry`)."""
        size = self.size
        rects = changed_rects(boxes, margin, width, height)
        if geo.flip:
            rects = rects[:, [1, 0, 3, 2]]
        left, top = geo.crop
        cu, cv = (top, left) if geo.flip else (left, top)
        out_u0 = np.maximum(np.searchsorted(geo.first.end, rects[:, 0], "right"), cu)  # outputs whose filter reaches the rect
        out_u1 = np.minimum(np.searchsorted(geo.first.first, rects[:, 2], "left"), cu + size)
        out_v0 = np.maximum(np.searchsorted(geo.second.end, rects[:, 1], "right"), cv)
        out_v1 = np.minimum(np.searchsorted(geo.second.first, rects[:, 3], "left"), cv + size)
        keep = np.flatnonzero((out_u0 < out_u1) & (out_v0 < out_v1))
        if not keep.size:
            return [], [], []
        u0, v0, u1, v1 = out_u0[keep], out_v0[keep], out_u1[keep], out_v1[keep]
        src = np.stack([geo.first.first[u0], geo.second.first[v0], geo.first.end[u1 - 1], geo.second.end[v1 - 1]], 1)
        if geo.flip:
            src = src[:, [1, 0, 3, 2]]
        blocks = np.stack([u0, v0, u1, v1], 1)
        return keep.tolist(), [tuple(w) for w in src.tolist()], [tuple(b) for b in blocks.tolist()]
