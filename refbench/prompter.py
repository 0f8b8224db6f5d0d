"""The visual prompt's interface: :class:`Prompter`, defined once by :meth:`Prompter.draw`, with
every path a scorer asks for derived from it."""

from __future__ import annotations

from abc import ABC
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

import numpy as np
from PIL import Image

from .boxes import Box
from .canvas import Canvas
from .component import Component
from .errors import RefbenchError

if TYPE_CHECKING:
    import torch


#: At most this many pixels in one canvas of :meth:`Prompter.render_windows_many` (3 MiB of
#: RGB; one window larger than that gets a canvas of its own)
WINDOW_PIXELS = 1 << 20


class Prompter(Component, ABC):
    """Turns an image and its candidate boxes into one view per box (the visual prompt).

    A prompt is defined once, by :meth:`draw`: torch ops over a :class:`~refbench.Canvas`, a batch of
    boxes on their images. refbench derives every path from it, each the same pixels:

    - :meth:`render`, the reference views on the full image (PIL in, PIL out);
    - :meth:`render_resized`, the views drawn on the image already resized to the model's input,
      strokes scaled (``views: resized`` in the clip scorer), unless :attr:`any_size` is False;
      :meth:`render_resized_many` draws several images of one size and scale in one batch;
    - :meth:`render_windows`, only the pixels within given windows around the boxes (the clip
      scorer's exact views), when :attr:`draws_within_box` is set; :meth:`render_windows_many`
      draws several images' windows in one batch;
    - :meth:`render_tensor`, batched over images on the device the images are on (``views:
      device``).

    A prompter that draws otherwise (e.g. through a JPEG round trip) overrides :meth:`render` alone
    and leaves :meth:`draw` undefined: it then has the reference path only. The paths run in worker
    processes or where the model runs, one call at a time per process.
    """

    #: When set, every view equals the image except within this many pixels (plus one, for rounding)
    #: of its box, clipped to the image (or at the image's pixel nearest a box outside it), and
    #: depends only on the image and its own box, pixel by pixel: a scorer may then recompute only
    #: there, and ask :meth:`render_windows` for some of the boxes only (the clip scorer's exact
    #: views do). None: views may differ anywhere.
    draws_within_box: ClassVar[int | None] = None

    #: Whether :meth:`draw` on an image resized to the model's input gives that input's views
    #: (a tint does; a blur of fixed radius does not): then :meth:`render_resized` exists.
    any_size: ClassVar[bool] = True

    #: True when the views are drawn from each candidate's mask (:attr:`Box.mask`): the runner then
    #: checks, before it starts, that every candidate has one, and names where masks come from if not.
    needs_masks: ClassVar[bool] = False

    #: Phrases are cut to this many characters before the template is applied (as the method's
    #: original code fed its tokeniser); None: whole phrases.
    phrase_chars: ClassVar[int | None] = None

    #: The text template of the method this prompt comes from (``{}`` is the phrase), e.g.
    #: ``"{} is in red color."``; a scorer that formats phrases applies it unless its own config sets one.
    template: ClassVar[str | None] = None

    def draw(self, canvas: Canvas) -> torch.Tensor:
        """The prompt: each box's view on its image, ``[N, 3, h, w]`` uint8 on the canvas's device, drawn
        with torch ops from ``canvas`` (see :class:`~refbench.Canvas`; coordinates are the whole
        image's pixels, strokes scale by ``canvas.pixels``). Must not modify ``canvas.images``."""
        raise RefbenchError(f"prompter {type(self).__name__} draws only its reference views (no draw)",
                            "use the scorer's exact views (views: exact)")

    @property
    def draws(self) -> bool:
        """Whether this prompter defines :meth:`draw`, so that every path exists. A subclass that
        overrides :meth:`render` below the class that defines its :meth:`draw` draws its own views:
        it then has the reference path only (its other paths would not be its views)."""
        mro = type(self).__mro__
        drawer = next(c for c in mro if "draw" in vars(c))
        renderer = next(c for c in mro if "render" in vars(c))
        return drawer is not Prompter and mro.index(drawer) <= mro.index(renderer)

    @property
    def renders_resized(self) -> bool:
        """Whether :meth:`render_resized` exists: :meth:`draw` is defined and :attr:`any_size`."""
        return self.draws and self.any_size

    @property
    def renders_tensor(self) -> bool:
        """Whether :meth:`render_tensor` exists: :meth:`draw` is defined."""
        return self.draws

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        """One view per box, in order: :meth:`draw` on the full image. Must not modify ``image``."""
        import torch

        pixels = np.array(np.asarray(image.convert("RGB")).transpose(2, 0, 1), order="C")  # a writable copy: torch shares its memory
        views = self._drawn(torch.from_numpy(pixels)[None], boxes, 1.0)
        return [Image.fromarray(v) for v in views.permute(0, 2, 3, 1).numpy()]

    def render_windows(self, image: Image.Image, boxes: Sequence[Box],
                       windows: Sequence[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """Each view's pixels within ``windows[i] = (x0, y0, x1, y1)`` (half-open, non-empty, inside the
        image): ``[y1 - y0, x1 - x0, 3]`` uint8 RGB, what :meth:`render` draws there. With
        :meth:`draw` and :attr:`draws_within_box`, only the windows are drawn, in one batch; otherwise
        each view is rendered whole and its window cut out."""
        if not windows:
            return []
        if not self.draws or self.draws_within_box is None:
            views = self.render(image, boxes)
            if any(v.size != image.size for v in views):
                raise RefbenchError(f"prompter {type(self).__name__} draws views of another size than the image, so it has no windows",
                                    "draw views of the image's size, or leave draws_within_box unset")
            return [np.asarray(v.convert("RGB"))[y0:y1, x0:x1] for v, (x0, y0, x1, y1) in zip(views, windows)]
        return self._windows([image], [boxes], [windows])[0]

    def render_windows_many(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]],
                            windows: Sequence[Sequence[tuple[int, int, int, int]]]) -> list[list[np.ndarray]]:
        """:meth:`render_windows` of several images at once: ``boxes[k]`` and ``windows[k]`` on
        ``images[k]``, the answer ``[k]`` that image's. With :meth:`draw` and
        :attr:`draws_within_box`, the windows of all the images are drawn together, in canvases of at
        most :data:`WINDOW_PIXELS` pixels, so that the per-call cost of :meth:`draw` (a few dozen
        small torch operations) is shared by many images; otherwise, or where a subclass overrides
        :meth:`render_windows`, image by image."""
        if type(self).render_windows is not Prompter.render_windows or not self.draws or self.draws_within_box is None:
            return [self.render_windows(i, b, w) for i, b, w in zip(images, boxes, windows)]
        return self._windows(images, boxes, windows)

    def _windows(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]],
                 windows: Sequence[Sequence[tuple[int, int, int, int]]]) -> list[list[np.ndarray]]:
        """:meth:`draw` on crops of the windows, each at the top-left of its canvas slot, channels last
        as the images are (plain row copies in; the views, drawn in the crops' layout, come out as
        contiguous rows). Windows are grouped by size, so a canvas pads little."""
        import torch

        out: list[list[np.ndarray]] = [[None] * len(w) for w in windows]  # type: ignore[list-item]
        flat = [(k, j, w) for k, ws in enumerate(windows) for j, w in enumerate(ws)]
        if not flat:
            return out
        pixels = [np.asarray(i if i.mode == "RGB" else i.convert("RGB")) for i in images]  # read only: copied into the crops
        flat.sort(key=lambda f: (f[2][3] - f[2][1], f[2][2] - f[2][0]))  # by height, then width
        groups, group, tall, wide = [], [], 0, 0
        for f in flat:
            x0, y0, x1, y1 = f[2]
            t, w = max(tall, y1 - y0), max(wide, x1 - x0)
            if group and (len(group) + 1) * t * w > WINDOW_PIXELS:
                groups.append((group, tall, wide))
                group, t, w = [], y1 - y0, x1 - x0
            group.append(f)
            tall, wide = t, w
        groups.append((group, tall, wide))
        with torch.inference_mode(), _one_thread():
            for group, tall, wide in groups:
                crops = np.zeros((len(group), tall, wide, 3), np.uint8)
                for crop, (k, _, (x0, y0, x1, y1)) in zip(crops, group):
                    crop[: y1 - y0, : x1 - x0] = pixels[k][y0:y1, x0:x1]
                origin = torch.tensor([w[:2] for _, _, w in group], dtype=torch.int64)
                size = torch.tensor([pixels[k].shape[1::-1] for k, _, _ in group], dtype=torch.int64)  # each view's image's (width, height)
                canvas = Canvas(torch.from_numpy(crops).permute(0, 3, 1, 2), _boxes([boxes[k][j] for k, j, _ in group]),
                                torch.arange(len(group)), tuple(size.unbind(1)), origin=origin)
                views = self.draw(canvas).permute(0, 2, 3, 1).numpy()
                for v, (k, j, (x0, y0, x1, y1)) in zip(views, group):
                    out[k][j] = v[: y1 - y0, : x1 - x0]
        return out

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float,
                       out: np.ndarray | None = None) -> np.ndarray:
        """Views drawn on an image already resized by ``scale`` (``H x W x 3`` uint8), boxes given in
        its pixels; returns ``[len(boxes), H, W, 3]`` uint8, written into ``out`` when given (any
        array of that shape, e.g. a transposed view of a channels-first batch). Sizes drawn in
        pixels (outlines) scale by ``scale``. Only when :attr:`renders_resized` is True."""
        return self._resized_views([image], [boxes], scale, out)

    def render_resized_many(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[Box]], scale: float,
                            out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`render_resized` of several images of one size, each resized by the same ``scale``,
        drawn in one batch: ``[sum of len(boxes[k]), H, W, 3]``, image by image (written into ``out``
        when given). Where a subclass overrides :meth:`render_resized`, image by image through it."""
        if not self.renders_resized:
            raise RefbenchError(f"prompter {type(self).__name__} draws only on the full image",
                                "use the scorer's exact views (views: exact)")
        if len({image.shape for image in images}) > 1:
            raise RefbenchError(f"render_resized_many got images of {len({i.shape for i in images})} sizes",
                                "draw images of one size together (each resized to the model's input)")
        if type(self).render_resized is not Prompter.render_resized:
            views = [self.render_resized(image, b, scale) for image, b in zip(images, boxes)]
            joined = np.concatenate(views) if views else np.empty((0, 0, 0, 3), np.uint8)
            if out is None:
                return joined
            out[...] = joined
            return out
        return self._resized_views(images, boxes, scale, out)

    def _resized_views(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[Box]], scale: float,
                       out: np.ndarray | None) -> np.ndarray:
        """:meth:`draw` of every box on its resized image, into ``out`` when given."""
        if not self.renders_resized:
            raise RefbenchError(f"prompter {type(self).__name__} draws only on the full image",
                                "use the scorer's exact views (views: exact)")
        import torch

        # channels first, once, writable: each view then copies its image plainly
        pixels = np.empty((len(images), 3, *images[0].shape[:2]), np.uint8) if images else np.empty((0, 3, 0, 0), np.uint8)
        for k, image in enumerate(images):
            pixels[k] = image.transpose(2, 0, 1)
        index = torch.from_numpy(np.repeat(np.arange(len(images), dtype=np.int64), [len(b) for b in boxes]))
        target = None if out is None else torch.from_numpy(out).permute(0, 3, 1, 2)
        views = self._drawn(torch.from_numpy(pixels), [b for bs in boxes for b in bs], scale, target, index)
        if out is None:
            return views.permute(0, 2, 3, 1).numpy()
        if views.data_ptr() != target.data_ptr() or views.stride() != target.stride():  # drawn elsewhere than into out
            target.copy_(views)
        return out

    def render_tensor(self, images: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`draw` on a batch of images on their device (e.g. the model's GPU).

        ``images``: uint8 ``[B, 3, H, W]`` RGB (any strides; ``[3, H, W]`` is one image), all of one
        size. ``boxes``: ``[N, 4]`` xywh in those images' pixels, float64 (the coordinates a
        :class:`Box` holds). ``index``: ``[N]`` int64, the image each box is drawn on (None: every box
        on image 0). Returns ``[N, 3, H, W]`` uint8 on that device, ``views[i]`` the view of
        ``boxes[i]`` on ``images[index[i]]``: the pixels :meth:`render` draws for it. Must not modify ``images``.
        """
        if not self.renders_tensor:
            raise RefbenchError(f"prompter {type(self).__name__} draws only with PIL and numpy (no tensor path)",
                                "use the scorer's exact views (views: exact)")
        from .tensors import tensor_args

        images, boxes, index = tensor_args(images, boxes, index)
        return self.draw(Canvas(images, boxes, index, (images.shape[-1], images.shape[-2])))

    def _drawn(self, images: torch.Tensor, boxes: Sequence[Box], scale: float, out: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`draw` of every box on its ``[B, 3, H, W]`` image (``index``; None: all on image 0), the
        views in ``out`` when given."""
        import torch

        if type(self).draw is Prompter.draw:
            raise RefbenchError(f"prompter {type(self).__name__} defines neither draw nor render",
                                "define draw (the prompt as torch ops over a Canvas) or override render")
        with torch.inference_mode(), _one_thread():
            index = torch.zeros(len(boxes), dtype=torch.int64) if index is None else index
            return self.draw(Canvas(images, _boxes(boxes), index, (images.shape[-1], images.shape[-2]), scale=scale, out=out))


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread while a prompt draws on the CPU: its tensors are a few boxes and small
    windows, and a second OpenMP thread left spinning after them slows the numpy (BLAS) work that
    follows, e.g. the clip scorer's exact resize, by up to half."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _boxes(boxes: Sequence[Box]) -> torch.Tensor:
    """Boxes as a float64 ``[N, 4]`` xywh tensor."""
    import torch

    from .boxes import as_array

    return torch.from_numpy(np.ascontiguousarray(as_array(boxes), dtype=np.float64).reshape(-1, 4))
