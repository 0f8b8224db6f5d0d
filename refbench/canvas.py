"""What a visual prompt draws on: :class:`Canvas`, one batch of views with torch ops.

A prompter defines its prompt once, as :meth:`Prompter.draw` over a canvas, and refbench derives
every path a scorer asks for from it: the reference views on the full image, the views on an image
already resized to the model's input, the windows around each box that exact views recompute, and
the batched views on the model's device. Each path is the same definition on a different canvas:
the whole image on the CPU, the resized image (with its ``scale``), a batch of windows (with their
``origin`` in the image), or a batch of images on a GPU. Coordinates are always the whole image's
pixels, so a window's pixels come out exactly as the whole view's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch


#: What one more call of a per-pixel ``source`` in :meth:`Canvas.paint` costs on the CPU, in pixels
#: computed (torch's few microseconds per operation on small tensors)
CALL_PIXELS = 4096


@dataclass(frozen=True, eq=False)
class Lookup:
    """A per-channel map of pixel values, as a ``source`` of :meth:`Canvas.paint`: where channel ``c``
    of the image is ``v``, the view becomes ``table[c, v]``. ``table``: uint8 ``[3, 256]``.

    A tint or a change of brightness or contrast maps each channel's value on its own: as a lookup it
    computes nothing per pixel. A lookup is itself a per-pixel function (calling it applies it), so
    :meth:`Canvas.paint` computes it as one, over the rectangles' union or per rectangle. Make one
    with :meth:`of`, from the same function a per-pixel source would be, so the views are that
    function's, value for value. The table is read once (the CPU path keeps a copy): treat it as
    immutable."""

    table: torch.Tensor

    def __post_init__(self) -> None:
        import torch

        if tuple(self.table.shape) != (3, 256) or self.table.dtype != torch.uint8:
            dtype = str(self.table.dtype).removeprefix("torch.")
            raise TypeError(f"a lookup's table is uint8 [3, 256], not {dtype} {list(self.table.shape)}")

    @classmethod
    def of(cls, function: Callable[[torch.Tensor], torch.Tensor], device: torch.device | str = "cpu") -> "Lookup":
        """``function`` (a per-pixel function of uint8 ``[..., 3, h, w]`` pixels whose channel ``c``
        depends only on the input's channel ``c``) tabulated over every value 0-255, on ``device``."""
        import torch

        values = torch.arange(256, dtype=torch.uint8, device=device).expand(3, 1, 256).contiguous()  # [3, h=1, w=256]
        table = function(values).reshape(3, 256)
        if table.dtype != torch.uint8:
            raise TypeError(f"a lookup's function returns uint8 pixels, not {table.dtype}")
        return cls(table.contiguous())

    def apply(self, pixels: torch.Tensor) -> torch.Tensor:
        """The table applied to uint8 ``[..., 3, h, w]`` pixels, on their device."""
        import torch

        if pixels.device.type == "cpu":
            # channel by channel through bytes.translate, a byte-to-byte table in C: 1.3-2.4 times as
            # fast as numpy's take (measured), which first widens every uint8 index to a pointer-sized integer
            values = pixels.numpy()
            part = np.empty(values.shape, np.uint8)
            for c, table in enumerate(self._bytes()):
                plane = part[..., c, :, :]
                plane[...] = np.frombuffer(values[..., c, :, :].tobytes().translate(table), np.uint8).reshape(plane.shape)
            return torch.from_numpy(part)
        offsets = torch.arange(0, 768, 256, device=pixels.device).view(3, 1, 1)
        return torch.take(self.table.to(pixels.device), pixels.long() + offsets)

    def _bytes(self) -> list[bytes]:
        """Each channel's table as the 256 bytes :meth:`bytes.translate` takes, made once."""
        if "_translate" not in self.__dict__:
            object.__setattr__(self, "_translate", [bytes(row) for row in self.table.cpu().numpy()])
        return self.__dict__["_translate"]

    __call__ = apply


@dataclass
class Canvas:
    """One batch of views to draw: ``N`` boxes, each on its image (or on its window of the image).

    ``images``: uint8 ``[B, 3, h, w]``, the pixels drawn on. ``boxes``: float64 ``[N, 4]`` xywh in the
    whole image's pixels (at this canvas's scale). ``index``: int64 ``[N]``, the image of each box.
    ``size``: each view's whole image's ``(width, height)``, two int64 ``[N]`` tensors (a canvas may
    hold windows of images of several sizes; ints given are spread over the views); bound
    coordinates with ``clamp(min=...)``, ``clamp(max=...)`` and ``torch.minimum``, which take them
    as they are. ``scale``: this image's size over the original's
    (1 on the full image); strokes sized in pixels scale by it. ``origin``: int64 ``[N, 2]``, each
    view's top-left ``(x, y)`` in the whole image when the images are windows of it, else None.
    """

    images: torch.Tensor
    boxes: torch.Tensor
    index: torch.Tensor
    size: tuple[torch.Tensor, torch.Tensor]
    scale: float = 1.0
    origin: torch.Tensor | None = None
    #: where the first :attr:`views` are copied to (a ``[N, 3, h, w]`` uint8 buffer the caller returns),
    #: instead of a new tensor
    out: torch.Tensor | None = field(default=None, repr=False)
    _shared: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        import torch

        n = len(self.index)
        per_view = [("boxes", self.boxes), ("origin", self.origin)]
        per_view += [("size", side) for side in self.size if isinstance(side, torch.Tensor) and side.dim() and len(side) != 1]
        for name, value in per_view:
            if value is not None and len(value) != n:
                raise ValueError(f"a canvas of {n} views has {len(value)} rows of {name}: narrow every per-view field "
                                 "together (dataclasses.replace(canvas, boxes=..., index=..., size=..., origin=...))")
        self.size = tuple(side.to(self.device, torch.int64).expand(n) if isinstance(side, torch.Tensor)
                          else torch.full((n,), int(side), dtype=torch.int64, device=self.device) for side in self.size)

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def views(self) -> torch.Tensor:
        """A fresh copy of each box's image: ``[N, 3, h, w]`` uint8, to draw on in place."""
        import torch

        if self.out is not None:  # the caller's buffer, handed out once
            views, self.out = self.out, None
        elif self.device.type != "cpu":
            return torch.index_select(self.images, 0, self.index)
        else:  # laid out in memory as the images are (channels first, or channels last)
            views = torch.empty((len(self.index), *self.images.shape[1:]), dtype=torch.uint8,
                                memory_format=torch.channels_last if self._channels_last else torch.contiguous_format)
        if self.device.type != "cpu":
            return views.copy_(self.images[self.index])
        # numpy's broadcast and gather copies cost a fraction of torch's on small images
        images, target = self.images.numpy(), views.numpy()
        if self._channels_last:  # both in memory order, where the copies are plain
            images, target = images.transpose(0, 2, 3, 1), target.transpose(0, 2, 3, 1)
        if images.shape[0] == 1:
            target[:] = images[0]
        else:
            np.take(images, self.index.numpy(), axis=0, out=target, mode="clip")  # "clip": no buffered copy (the indices are valid)
        return views

    @property
    def _channels_last(self) -> bool:
        """Whether the images lie in memory channels last (``[B, h, w, 3]`` permuted to ``[B, 3, h, w]``)."""
        import torch

        return not self.images.is_contiguous() and self.images.is_contiguous(memory_format=torch.channels_last)

    def per_image(self, name: str, make: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``make(images)`` (a per-pixel function of the ``[B, 3, h, w]`` images, e.g. a blend or a
        blur), computed once per canvas: ``[B, C, h, w]``, image by image (``[canvas.index]`` lays it
        out per view)."""
        if name not in self._shared:
            self._shared[name] = make(self.images)
        return self._shared[name]

    def paint(self, views: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor,
              source: torch.Tensor | Lookup | Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Set each view's half-open pixel rectangle ``[x0, x1) x [y0, y1)`` (``[N]`` integers in the
        whole image's pixels) from ``source``, in place, and return ``views``.

        ``source`` is one colour, a 1-D ``[3]`` uint8 tensor; or a per-image ``[B, C, h, w]`` tensor (e.g.
        ``images``, or :meth:`per_image`'s), read at the same pixels of the view's image; or a
        per-pixel function of uint8 ``[..., 3, h', w']`` pixels (e.g. a blend), which is then computed
        once over the rectangles' union or once per rectangle, whichever computes fewer pixels (a
        :class:`Lookup` is one). On the CPU each rectangle is a slice copy; elsewhere one masked
        select over the batch."""
        import torch

        if self.device.type != "cpu":
            if callable(source):
                source = source(self.images)
            source = source.view(1, -1, 1, 1) if source.dim() == 1 else source[self.index]
            return views.copy_(torch.where(self.rect(x0, y0, x1, y1), source, views))
        h, w = self.images.shape[-2:]
        corners = torch.stack([x0, y0, x1, y1], 1).long()
        if self.origin is not None:  # each view's rectangle within its window
            corners = corners - torch.cat([self.origin, self.origin], 1)
        # clipped to the view in plain Python: a few boxes an image cost less so than in numpy
        live = []
        for i, (image, (xa, ya, xb, yb)) in enumerate(zip(self.index.tolist(), corners.tolist())):
            xa, ya, xb, yb = max(xa, 0), max(ya, 0), min(xb, w), min(yb, h)
            if xa < xb and ya < yb:
                live.append((i, image, xa, ya, xb, yb))
        if not live:
            return views
        out = views.numpy()  # the same memory: numpy's slice copies cost a fraction of torch's
        if not callable(source) and source.dim() == 1:
            # copied from a block filled once, in the views' memory order: numpy broadcasts a
            # colour into a slice several times slower than it copies one
            tall, wide = max(r[5] - r[3] for r in live), max(r[4] - r[2] for r in live)
            fill = np.empty((1, 3, tall, wide), np.uint8)
            if views.is_contiguous(memory_format=torch.channels_last) and not views.is_contiguous():
                fill = np.empty((1, tall, wide, 3), np.uint8).transpose(0, 3, 1, 2)
            fill[:] = source.numpy()[:, None, None]
            for i, _, xa, ya, xb, yb in live:
                out[i, :, ya:yb, xa:xb] = fill[0, :, : yb - ya, : xb - xa]
            return views
        left = top = 0
        if callable(source):
            left, top = min(r[2] for r in live), min(r[3] for r in live)
            right, bottom = max(r[4] for r in live), max(r[5] for r in live)
            # once over the rectangles' union on every image, or once per rectangle, whichever
            # computes fewer pixels (a call counts as CALL_PIXELS more)
            pixels = sum((xb - xa) * (yb - ya) for _, _, xa, ya, xb, yb in live) + CALL_PIXELS * (len(live) - 1)
            if len(self.images) * (right - left) * (bottom - top) > pixels:
                for i, image, xa, ya, xb, yb in live:
                    out[i, :, ya:yb, xa:xb] = source(self.images[image, :, ya:yb, xa:xb]).numpy()
                return views
            part = source(self.images[:, :, top:bottom, left:right]).numpy()
        else:
            part = source.numpy()
        for i, image, xa, ya, xb, yb in live:
            out[i, :, ya:yb, xa:xb] = part[image, :, ya - top : yb - top, xa - left : xb - left]
        return views

    def columns(self) -> torch.Tensor:
        """The whole image's column of each view's pixels: int64 ``[N, w]``."""
        import torch

        xs = torch.arange(self.images.shape[-1], device=self.device).expand(len(self.boxes), -1)
        return xs if self.origin is None else xs + self.origin[:, :1]

    def rows(self) -> torch.Tensor:
        """The whole image's row of each view's pixels: int64 ``[N, h]``."""
        import torch

        ys = torch.arange(self.images.shape[-2], device=self.device).expand(len(self.boxes), -1)
        return ys if self.origin is None else ys + self.origin[:, 1:]

    def rect(self, x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        """``[N, 1, h, w]`` masks of the half-open pixel rectangles ``[x0, x1) x [y0, y1)`` (``[N]``
        integers in the whole image's pixels; empty where ``x0 >= x1`` or ``y0 >= y1``)."""
        columns, rows_ = self.columns(), self.rows()
        cols = (columns >= x0[:, None]) & (columns < x1[:, None])
        rows = (rows_ >= y0[:, None]) & (rows_ < y1[:, None])
        return (rows[:, :, None] & cols[:, None, :])[:, None]

    def pixels(self, size: float) -> float:
        """A stroke of ``size`` original-image pixels at this canvas's scale, at least 1 pixel."""
        return max(1.0, size * self.scale)
