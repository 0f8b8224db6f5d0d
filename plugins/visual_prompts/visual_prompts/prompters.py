"""Visual prompts from the zero-shot referring-expression literature, one class each.

Every prompter draws each candidate box on its own copy of the image and names the text
template its method scores phrases with (the clip scorer applies it unless its config sets
one). Defaults are those of the code each method was published with:

- ``blur`` (ReCLIP, allenai/reclip ``executor.py``): the image blurred by Pillow's
  ``GaussianBlur(100)``, the box pasted back sharp; "a photo of {}".
- ``cpt_shade`` (ReCLIP's CPT-adapted baseline, ``executor.py``): the box tinted with
  (240, 0, 30) at opacity 127/255; "{} is in red color.".
- ``red_circle`` (Shtedritski et al., ICCV 2023, as ylingfeng/FGVP draws it in
  ``fgvp-reclip/fine_grained_visual_prompt.py``): an ellipse inscribed in the box, red, 2 px;
  "a photo of {}" (FGVP's ``--text_prompt`` default).
- ``grayscale_outside`` (FGVP's ``grayscale_box_mask``): the image outside the box in
  grayscale, the box in colour; "a photo of {}".

The box's pixels are those ReCLIP's mask rectangle covers (:func:`box_pixels`), for every
prompter that treats the box as a region.
"""

from __future__ import annotations

from typing import Annotated, Sequence

import numpy as np
from PIL import Image, ImageFilter
from pydantic import Field

from refbench import Box, Options, Prompter

Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]


def box_pixels(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """The box's pixels as a half-open rectangle ``[x0, x1) x [y0, y1)``: its corners clamped to the
    image, cut to whole pixels (``int()``), the right and bottom pixel included. This is the pixel
    set of ReCLIP's mask, ``ImageDraw.rectangle((left, top, right, bottom))``, so an integer box
    ``(x, y, w, h)`` covers ``w + 1`` columns from ``x``; the rectangle may be empty (a box
    entirely off the image)."""
    left = min(max(box.x, 0.0), width)
    top = min(max(box.y, 0.0), height)
    right = min(max(box.x + box.w, 0.0), width)
    bottom = min(max(box.y + box.h, 0.0), height)
    x0, y0 = int(left), int(top)
    x1, y1 = min(int(right), width - 1) + 1, min(int(bottom), height - 1) + 1
    return x0, y0, max(x0, x1), max(y0, y1)


def _views(image: np.ndarray, n: int, out: np.ndarray | None) -> np.ndarray:
    """``n`` copies of ``image`` (H x W x 3 uint8, or H x W x 1 for all three channels), in ``out`` when given."""
    views = np.empty((n, *image.shape[:2], 3), dtype=np.uint8) if out is None else out
    views[:] = image
    return views


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an H x W x 3 uint8 image, as Pillow's ``convert("L")`` computes it
    (16-bit fixed-point weights 0.299, 0.587, 0.114, rounded)."""
    rgb = image.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


class Blur(Prompter):
    """ReCLIP's blur: the whole image Gaussian-blurred (Pillow, radius 100), the box pasted back sharp.

    The blur is computed once per image and shared by its views. Only the full image is drawn
    (no ``render_resized``): a blur at the model's size is not the resized blur of the image.
    """

    template = "a photo of {}"

    class Options(Options):
        radius: float = Field(100.0, gt=0, description="Pillow GaussianBlur radius (ReCLIP's blur_std_dev)")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        rgb = image.convert("RGB")
        sharp = np.asarray(rgb)
        blurred = np.asarray(rgb.filter(ImageFilter.GaussianBlur(self.options.radius)))
        h, w = sharp.shape[:2]
        views = []
        for box in boxes:
            view = blurred.copy()
            x0, y0, x1, y1 = box_pixels(box, w, h)
            view[y0:y1, x0:x1] = sharp[y0:y1, x0:x1]
            views.append(Image.fromarray(view))
        return views


class CptShade(Prompter):
    """ReCLIP's CPT-adapted baseline: the box tinted red (240, 0, 30) at opacity 127/255; "{} is in red color."."""

    template = "{} is in red color."
    renders_resized = True

    class Options(Options):
        colour: RGB = Field((240, 0, 30), description="RGB of the tint")
        alpha: float = Field(127 / 255, ge=0, le=1, description="opacity of the tint")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        return [Image.fromarray(v) for v in self._shade(np.asarray(image.convert("RGB")), boxes)]

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float, out: np.ndarray | None = None) -> np.ndarray:
        """The same arithmetic on the image already resized to the model's input (nothing here is sized in pixels)."""
        return self._shade(image, boxes, out)

    def _shade(self, image: np.ndarray, boxes: Sequence[Box], out: np.ndarray | None = None) -> np.ndarray:
        """Each view: inside the box ``rint((1 - alpha) * pixel + alpha * colour)``, elsewhere the image."""
        h, w = image.shape[:2]
        a = self.options.alpha
        tint = np.asarray(self.options.colour, dtype=np.float32) * a
        views = _views(image, len(boxes), out)
        for view, box in zip(views, boxes):
            x0, y0, x1, y1 = box_pixels(box, w, h)
            view[y0:y1, x0:x1] = np.rint(image[y0:y1, x0:x1] * np.float32(1 - a) + tint).astype(np.uint8)
        return views


class GrayscaleOutside(Prompter):
    """The image outside the box in grayscale (ITU-R 601-2 luma, Pillow's "L"), the box in colour (FGVP's grayscale_box_mask)."""

    template = "a photo of {}"
    renders_resized = True

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        return [Image.fromarray(v) for v in self._draw(np.asarray(image.convert("RGB")), boxes)]

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float, out: np.ndarray | None = None) -> np.ndarray:
        """The same on the image already resized to the model's input (luma is per pixel)."""
        return self._draw(image, boxes, out)

    def _draw(self, image: np.ndarray, boxes: Sequence[Box], out: np.ndarray | None = None) -> np.ndarray:
        h, w = image.shape[:2]
        views = _views(luma(image)[..., None], len(boxes), out)  # broadcast to the three channels
        for view, box in zip(views, boxes):
            x0, y0, x1, y1 = box_pixels(box, w, h)
            view[y0:y1, x0:x1] = image[y0:y1, x0:x1]
        return views


def ellipse_ring(box: Box, width: int, height: int, thickness: float) -> tuple[slice, slice, np.ndarray]:
    """Where an ellipse inscribed in ``box`` is drawn with a line ``thickness`` pixels wide: centre
    ``(x + w/2, y + h/2)``, semi-axes ``w/2`` and ``h/2``, the line centred on the curve. A pixel is
    drawn when its centre lies inside the ellipse grown by ``thickness / 2`` on each semi-axis and
    not inside the one shrunk by as much. Returns the rows and columns the ring can touch (clipped
    to the image) and the ring's mask over them."""
    cx, cy, a, b = box.x + box.w / 2, box.y + box.h / 2, box.w / 2, box.h / 2
    half = thickness / 2
    rows = slice(max(int(np.floor(cy - b - half)), 0), min(int(np.ceil(cy + b + half)) + 1, height))
    cols = slice(max(int(np.floor(cx - a - half)), 0), min(int(np.ceil(cx + a + half)) + 1, width))
    dy = (np.arange(rows.start, max(rows.start, rows.stop)) + 0.5 - cy)[:, None]
    dx = (np.arange(cols.start, max(cols.start, cols.stop)) + 0.5 - cx)[None, :]
    outer = (dx / (a + half)) ** 2 + (dy / (b + half)) ** 2 <= 1
    if a - half > 0 and b - half > 0:
        outer &= (dx / (a - half)) ** 2 + (dy / (b - half)) ** 2 >= 1
    return rows, cols, outer


class RedCircle(Prompter):
    """The red circle (Shtedritski et al., ICCV 2023, as FGVP draws it): an ellipse inscribed in the box, red (255, 0, 0), 2 px.

    FGVP draws with ``cv2.ellipse(..., thickness=2)`` on the image already resized to the model's
    input, its centre and semi-axes cut to whole pixels; here they keep their fractions, and the
    line is ``thickness`` pixels wide around the curve. OpenCV's 2-px line covers the curve +-1 px,
    about 3 px: ``thickness: 3`` draws closer to FGVP's pixels. ``views: resized`` in the clip
    scorer draws at the model's size, as FGVP does; the full-image path draws ``thickness`` image pixels.
    """

    template = "a photo of {}"
    renders_resized = True

    class Options(Options):
        colour: RGB = Field((255, 0, 0), description="RGB of the line")
        thickness: float = Field(2.0, ge=1, description="line width in pixels, centred on the ellipse")

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        return [Image.fromarray(v) for v in self._draw(np.asarray(image.convert("RGB")), boxes, self.options.thickness)]

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float, out: np.ndarray | None = None) -> np.ndarray:
        """The ellipse drawn on the image already resized to the model's input, the line ``thickness * scale``
        pixels wide (at least 1): as wide, relative to the image, as on the full image."""
        return self._draw(image, boxes, max(1.0, self.options.thickness * scale), out)

    def _draw(self, image: np.ndarray, boxes: Sequence[Box], thickness: float, out: np.ndarray | None = None) -> np.ndarray:
        h, w = image.shape[:2]
        colour = np.asarray(self.options.colour, dtype=np.uint8)
        views = _views(image, len(boxes), out)
        for view, box in zip(views, boxes):
            rows, cols, ring = ellipse_ring(box, w, h, thickness)
            view[rows, cols][ring] = colour
        return views
