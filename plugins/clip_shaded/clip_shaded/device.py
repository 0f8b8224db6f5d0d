"""``views: device``: the workers only decode; views are drawn and resized where the model runs.

A prepared batch (:class:`DeviceViews`) holds each image once, as decoded, and one row per view
(its image, its box). The scorer draws the views with the prompter's :meth:`Prompter.render_tensor`
on the model's device and resizes them there (:func:`resize_crop`), a few images of one size
at a time, so a worker hands over the image's bytes instead of ``len(boxes)`` rendered copies.

The resize follows the exact path's ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` on a PIL
image: Pillow resizes along one axis, rounds to 8 bits, then resizes along the other, in the
order :func:`first_pass_vertical` gives. torch's bicubic ``interpolate`` with ``antialias=True``
uses Pillow's filter (Keys, a = -0.5, widened by the scale when reducing), so the same two
passes in the same order with the same rounding between them land within a grey level of
Pillow's fixed-point arithmetic almost everywhere (tests/test_device_views.py states the
figures). The second pass runs only on the columns (or rows) the crop keeps: a pass maps each
line across it on its own, so that is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from refbench import Box, Prompter, RefbenchError, as_array, join_tensors

from .views import crop_offsets, first_pass_vertical, resized_size

BUDGET = 1 << 26  # values of full-size views drawn and resized at once (256 MiB as float32)


@dataclass(eq=False)
class DeviceViews:
    """Views to draw: images stored once, one row per view. Supports ``len()`` (views), row slicing
    (``batch[a:b]``, whose images are a view of this batch's pixels, not a copy) and :meth:`concat`,
    as the runner's contract for prepared views asks; it pickles as one uint8 tensor (which the
    runner's workers write to shared memory) and a few small arrays.

    Rows are grouped by image in order (``image`` never decreases), so a slice's images are a
    contiguous run of this batch's."""

    pixels: torch.Tensor  # uint8 [total]: every image's H x W x 3 pixels as decoded, one image after another
    sizes: np.ndarray  # int64 [M, 2]: each image's (height, width)
    offsets: np.ndarray  # int64 [M + 1]: where each image starts in ``pixels``, and where the last one ends
    image: np.ndarray  # int64 [N]: each view's image
    boxes: np.ndarray  # float64 [N, 4]: each view's box, xywh in its image's pixels
    prompter: Prompter | None  # draws the views (render_tensor)

    @classmethod
    def of(cls, image: Image.Image, boxes: Sequence[Box], prompter: Prompter | None) -> DeviceViews:
        """One decoded image and its boxes (the worker's whole share of the work)."""
        rgb = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # H x W x 3, owned and writable
        pixels = torch.from_numpy(rgb.reshape(-1))
        return cls(pixels, np.array([rgb.shape[:2]], dtype=np.int64), np.array([0, pixels.numel()], dtype=np.int64),
                   np.zeros(len(boxes), dtype=np.int64), as_array(boxes),
                   prompter)

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, rows: slice) -> DeviceViews:
        if not isinstance(rows, slice):
            raise TypeError("DeviceViews takes row slices only")
        a, b, step = rows.indices(len(self))
        if step != 1:
            raise ValueError("DeviceViews takes contiguous row slices only")
        if a >= b:
            return DeviceViews(self.pixels[:0], self.sizes[:0], self.offsets[:1] * 0, self.image[:0], self.boxes[:0], self.prompter)
        i0, i1 = int(self.image[a]), int(self.image[b - 1]) + 1
        start, end = int(self.offsets[i0]), int(self.offsets[i1])
        return DeviceViews(self.pixels[start:end], self.sizes[i0:i1], self.offsets[i0 : i1 + 1] - start,
                           self.image[a:b] - i0, self.boxes[a:b], self.prompter)

    @staticmethod
    def concat(parts: Sequence[DeviceViews]) -> DeviceViews:
        """The parts' rows in order (in a runner's worker, the pixels go straight to shared memory, as
        :func:`refbench.join_tensors` writes them; elsewhere one part is returned as it is)."""
        pixels = join_tensors([p.pixels for p in parts])
        if len(parts) == 1:
            return parts[0] if pixels is parts[0].pixels else DeviceViews(pixels, *_rows(parts[0]))
        counts = np.cumsum([0] + [len(p.sizes) for p in parts])
        starts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts])
        return DeviceViews(pixels,
                           np.concatenate([p.sizes for p in parts]).reshape(-1, 2),
                           np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)]),
                           np.concatenate([p.image + c for p, c in zip(parts, counts)]),
                           np.concatenate([p.boxes for p in parts]).reshape(-1, 4),
                           next((p.prompter for p in parts if p.prompter is not None), None))

    def to(self, device: torch.device) -> DeviceViews:
        """The pixels on ``device`` (asynchronously where the copy can be); rows stay on the host."""
        if self.pixels.device == device:
            return self
        return DeviceViews(self.pixels.to(device, non_blocking=True), self.sizes, self.offsets, self.image, self.boxes,
                           self.prompter)

    def groups(self) -> Iterator[tuple[torch.Tensor, int, int, int]]:
        """Runs of consecutive images of one size: ``(images, first image, first row, end row)``,
        ``images`` a ``[B, 3, H, W]`` view (channels last in memory) of the pixels, no copy."""
        m, i = len(self.sizes), 0
        rows = np.searchsorted(self.image, np.arange(m + 1), side="left")  # first row of each image
        while i < m:
            j = i + 1
            while j < m and (self.sizes[j] == self.sizes[i]).all():
                j += 1
            if rows[j] > rows[i]:
                h, w = (int(v) for v in self.sizes[i])
                images = self.pixels[int(self.offsets[i]) : int(self.offsets[j])].view(j - i, h, w, 3).permute(0, 3, 1, 2)
                yield images, i, int(rows[i]), int(rows[j])
            i = j


def _rows(batch: DeviceViews) -> tuple:
    return batch.sizes, batch.offsets, batch.image, batch.boxes, batch.prompter


def resize_crop(views: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, 3, H, W]`` uint8 views -> ``[N, 3, size, size]`` float32 (whole numbers 0..255): the
    shortest side to ``size`` (bicubic, antialiased), then the centre crop, as two passes rounded
    to 8 bits in Pillow's order (:func:`first_pass_vertical`); a pass whose axis keeps its size is
    skipped, as Pillow skips it."""
    h, w = views.shape[-2:]
    rw, rh = resized_size(w, h, size)
    left, top = crop_offsets(rw, rh, size)
    x = views.float()
    if first_pass_vertical(w, h, size) is not False:  # where Pillow's order cannot be told, Pillow 13's
        x = _pass(x, (rh, w)) if rh != h else x
        x = x[..., top : top + size, :]  # the horizontal pass maps each row on its own: only the kept ones
        x = _pass(x, (size, rw)) if rw != w else x
        return x[..., left : left + size]
    x = _pass(x, (h, rw)) if rw != w else x
    x = x[..., left : left + size]  # the vertical pass maps each column on its own: only the kept ones
    x = _pass(x, (rh, size)) if rh != h else x
    return x[..., top : top + size, :]


def _pass(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One of Pillow's passes: bicubic (antialiased when reducing) to ``size``, rounded to 8 bits."""
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255).round_()


def draw(batch: DeviceViews, size: int, out: torch.Tensor | None = None, budget: int = BUDGET) -> torch.Tensor:
    """Every view of ``batch`` drawn by its prompter and resized to ``size``: ``[N, 3, size, size]``
    float32 (0..255) on the batch's device, written into ``out`` when given. Views are drawn at
    full size a group of same-size images at a time, at most ``budget`` view values at once; each
    call hands the prompter only the images those views are on, so its per-image work (a blur, a
    grey copy) is done once per image and call."""
    prompter = batch.prompter
    if prompter is None or not prompter.renders_tensor:
        name = "no prompter" if prompter is None else f"prompter {type(prompter).__name__}"
        raise RefbenchError(f"views: device, but {name} draws no tensor views", "use the scorer's views: exact")
    device = batch.pixels.device
    if out is None:
        out = torch.empty((len(batch), 3, size, size), dtype=torch.float32, device=device)
    if not len(batch):
        return out
    boxes = torch.from_numpy(batch.boxes).to(device, non_blocking=True)
    image = torch.from_numpy(batch.image).to(device, non_blocking=True)
    for images, i0, a, b in batch.groups():
        h, w = images.shape[-2:]
        step = max(1, budget // (3 * h * w))
        for c in range(a, b, step):
            e = min(b, c + step)
            first, last = int(batch.image[c]), int(batch.image[e - 1])  # rows are grouped by image: a contiguous range
            index = image[c:e] - first
            out[c:e] = resize_crop(prompter.render_tensor(images[first - i0 : last - i0 + 1], boxes[c:e], index), size)
    return out
