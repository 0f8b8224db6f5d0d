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

Each prompt is defined once, as torch ops over a :class:`refbench.Canvas` (``draw``); refbench
derives the full-image, resized, windowed and on-device views from it. The blur reproduces
Pillow's ``GaussianBlur`` (three box blurs a direction, in its fixed-point arithmetic); on the
CPU it is Pillow's own, the same integers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from PIL import Image, ImageFilter
from pydantic import Field

from refbench import Box, Canvas, Lookup, Options, Prompter

if TYPE_CHECKING:
    import torch

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


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an H x W x 3 uint8 image, as Pillow's ``convert("L")`` computes it
    (16-bit fixed-point weights 0.299, 0.587, 0.114, rounded)."""
    rgb = image.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


# ---------------------------------------------------------------- the tensor path (render_tensor)


def box_pixels_bounds(canvas: Canvas) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`box_pixels`' rectangles of the canvas's boxes: ``x0, y0, x1, y1``, each ``[N]`` int64."""
    import torch

    width, height = canvas.size  # each view's image's, [N]
    x, y, w, h = canvas.boxes.unbind(1)
    left, top = x.clamp(min=0).clamp(max=width), y.clamp(min=0).clamp(max=height)
    right, bottom = (x + w).clamp(min=0).clamp(max=width), (y + h).clamp(min=0).clamp(max=height)
    x0, y0 = left.long(), top.long()  # int(): truncation, of numbers >= 0
    x1 = torch.maximum(right.long().clamp(max=width - 1) + 1, x0)
    y1 = torch.maximum(bottom.long().clamp(max=height - 1) + 1, y0)
    return x0, y0, x1, y1


def luma_tensor(images: torch.Tensor) -> torch.Tensor:
    """:func:`luma` of ``[B, 3, H, W]`` uint8 images: ``[B, 1, H, W]`` uint8, the same integers."""
    import torch

    rgb = images.to(torch.int32)
    return ((rgb[:, 0:1] * 19595 + rgb[:, 1:2] * 38470 + rgb[:, 2:3] * 7471 + 0x8000) >> 16).to(torch.uint8)


def _f32(x: float) -> np.float32:
    return np.float32(x)


def pillow_box_radius(radius: float, passes: int = 3) -> np.float32:
    """The box radius Pillow's ``GaussianBlur(radius)`` blurs with (``_gaussian_blur_radius`` in
    BoxBlur.c), in its float32 arithmetic."""
    r, n = _f32(radius), passes
    sigma2 = _f32(r * r / _f32(n))
    big_l = _f32(np.sqrt(12.0 * np.float64(sigma2) + 1.0))
    small_l = _f32(np.floor((np.float64(big_l) - 1.0) / 2.0))
    a = _f32((_f32(2) * small_l + _f32(1)) * (small_l * (small_l + _f32(1)) - _f32(3) * sigma2))
    a = _f32(a / _f32(_f32(6) * (sigma2 - (small_l + _f32(1)) * (small_l + _f32(1)))))
    return _f32(small_l + a)


def box_blur_lines(x: torch.Tensor, radius: np.float32) -> torch.Tensor:
    """One pass of Pillow's ``ImagingHorizontalBoxBlur`` along the last dimension of uint8 ``x``:
    ``(ww * (the 2r + 1 pixels around) + fw * (the two next ones) + 2**23) >> 24``, edge pixels
    repeated beyond the ends, with Pillow's 24-bit fixed-point weights; uint8 out."""
    import torch

    r = int(radius)
    ww = int(np.float32(1 << 24) / np.float32(radius * np.float32(2) + np.float32(1)))
    fw = ((1 << 24) - (2 * r + 1) * ww) // 2
    n = x.shape[-1]
    pad = torch.arange(-r - 1, n + r + 1, device=x.device).clamp_(0, n - 1)
    line = x[..., pad].to(torch.int64)  # index p = i + r + 1 holds pixel i
    sums = torch.nn.functional.pad(line.cumsum(-1), (1, 0))  # sums[k] = line[:k].sum()
    window = sums[..., 2 * r + 2 : 2 * r + 2 + n] - sums[..., 1 : n + 1]  # line[i + 1 : i + 2r + 2]: pixels i - r .. i + r
    far = line[..., :n] + line[..., 2 * r + 2 :]  # pixels i - r - 1 and i + r + 1
    return ((window * ww + far * fw + (1 << 23)) >> 24).to(torch.uint8)


def pillow_gaussian_blur(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Pillow's ``GaussianBlur(radius)`` of ``[B, C, H, W]`` uint8 images, bit for bit: three box
    blurs along rows, then three along columns, each rounded to 8 bits."""
    box = pillow_box_radius(radius)
    x = images
    if box != 0:
        for _ in range(3):
            x = box_blur_lines(x, box)
        x = x.transpose(-1, -2)
        for _ in range(3):
            x = box_blur_lines(x, box)
        x = x.transpose(-1, -2)
    return x.contiguous()


def gaussian_blur(images: torch.Tensor, radius: float) -> torch.Tensor:
    """Pillow's ``GaussianBlur(radius)`` of ``[B, 3, H, W]`` uint8 images: Pillow's own on the CPU,
    :func:`pillow_gaussian_blur` (the same integers) elsewhere."""
    if images.device.type != "cpu":
        return pillow_gaussian_blur(images, radius)
    import torch

    blurred = [np.asarray(Image.fromarray(np.ascontiguousarray(im.permute(1, 2, 0).numpy())).filter(ImageFilter.GaussianBlur(radius)))
               for im in images]
    return torch.from_numpy(np.stack(blurred)).permute(0, 3, 1, 2)


class Blur(Prompter):
    """ReCLIP's blur: the whole image Gaussian-blurred (Pillow, radius 100), the box pasted back sharp.

    The blur is computed once per image and shared by its views. It is drawn on the full image only
    (``any_size`` False): a blur at the model's size is not the resized blur of the image.
    """

    template = "a photo of {}"
    any_size = False

    class Options(Options):
        radius: float = Field(100.0, gt=0, description="Pillow GaussianBlur radius (ReCLIP's blur_std_dev)")

    def draw(self, canvas: Canvas) -> torch.Tensor:
        blurred = canvas.per_image("blur", lambda im: gaussian_blur(im, self.options.radius))
        return canvas.paint(blurred[canvas.index], *box_pixels_bounds(canvas), canvas.images)


class CptShade(Prompter):
    """ReCLIP's CPT-adapted baseline: the box tinted red (240, 0, 30) at opacity 127/255; "{} is in red color."."""

    template = "{} is in red color."
    draws_within_box = 0

    class Options(Options):
        colour: RGB = Field((240, 0, 30), description="RGB of the tint")
        alpha: float = Field(127 / 255, ge=0, le=1, description="opacity of the tint")

    def draw(self, canvas: Canvas) -> torch.Tensor:
        """Inside the box :meth:`tinted`, painted as a lookup of every value; elsewhere the image."""
        return canvas.paint(canvas.views, *box_pixels_bounds(canvas), Lookup.of(self.tinted, canvas.device))

    def tinted(self, pixels: torch.Tensor) -> torch.Tensor:
        """``rint((1 - alpha) * pixel + alpha * colour)`` in float32 (as numpy computes it, rounded half
        to even), each channel on its own."""
        import torch

        a = self.options.alpha
        tint = torch.from_numpy(np.asarray(self.options.colour, dtype=np.float32) * a).to(pixels.device).view(3, 1, 1)
        return torch.round(pixels.float() * float(np.float32(1 - a)) + tint).to(torch.uint8)


class GrayscaleOutside(Prompter):
    """The image outside the box in grayscale (ITU-R 601-2 luma, Pillow's "L"), the box in colour (FGVP's grayscale_box_mask)."""

    template = "a photo of {}"

    def draw(self, canvas: Canvas) -> torch.Tensor:
        grey = canvas.per_image("luma", luma_tensor)[canvas.index].expand(-1, 3, -1, -1).contiguous()
        return canvas.paint(grey, *box_pixels_bounds(canvas), canvas.images)


class RedCircle(Prompter):
    """The red circle (Shtedritski et al., ICCV 2023, as FGVP draws it): an ellipse inscribed in the box, red (255, 0, 0), 2 px.

    FGVP draws with ``cv2.ellipse(..., thickness=2)`` on the image already resized to the model's
    input, its centre and semi-axes cut to whole pixels; here they keep their fractions, and the
    line is ``thickness`` pixels wide around the curve (at least 1 px at the model's size). OpenCV's
    2-px line covers the curve +-1 px, about 3 px: ``thickness: 3`` draws closer to FGVP's pixels.
    ``views: resized`` in the clip scorer draws at the model's size, as FGVP does; the full-image
    path draws ``thickness`` image pixels.
    """

    template = "a photo of {}"

    class Options(Options):
        colour: RGB = Field((255, 0, 0), description="RGB of the line")
        thickness: float = Field(2.0, ge=1, description="line width in pixels, centred on the ellipse")

    def draw(self, canvas: Canvas) -> torch.Tensor:
        import torch

        colour = torch.tensor(self.options.colour, dtype=torch.uint8, device=canvas.device).view(1, 3, 1, 1)
        return torch.where(ellipse_ring(canvas, canvas.pixels(self.options.thickness)), colour, canvas.views)


def ellipse_ring(canvas: Canvas, thickness: float) -> torch.Tensor:
    """``[N, 1, h, w]`` masks of an ellipse inscribed in each box, drawn with a line ``thickness``
    pixels wide: centre ``(x + w/2, y + h/2)``, semi-axes ``w/2`` and ``h/2``, the line centred on the
    curve. A pixel is drawn when its centre lies inside the ellipse grown by ``thickness / 2`` on
    each semi-axis and not inside the one shrunk by as much (float64)."""
    import torch

    width, height = canvas.size  # each view's image's, [N]
    x, y, w, h = canvas.boxes.unbind(1)
    cx, cy, a, b = x + w / 2, y + h / 2, w / 2, h / 2
    half = thickness / 2
    r0 = torch.floor(cy - b - half).clamp(min=0).long()
    r1 = (torch.ceil(cy + b + half) + 1).clamp(max=height).long()
    c0 = torch.floor(cx - a - half).clamp(min=0).long()
    c1 = (torch.ceil(cx + a + half) + 1).clamp(max=width).long()
    dy = canvas.rows().double() + 0.5 - cy[:, None]  # [N, h]
    dx = canvas.columns().double() + 0.5 - cx[:, None]  # [N, w]
    within = canvas.rect(c0, r0, c1, r1)[:, 0]

    def squared(d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        q = d / s[:, None]
        return q * q

    outer = squared(dx, a + half)[:, None, :] + squared(dy, b + half)[:, :, None] <= 1
    hollow = (a - half > 0) & (b - half > 0)  # else the ring is the whole grown ellipse
    ia = torch.where(hollow, a - half, torch.ones_like(a))
    ib = torch.where(hollow, b - half, torch.ones_like(b))
    inner = squared(dx, ia)[:, None, :] + squared(dy, ib)[:, :, None] >= 1
    return (within & outer & (inner | ~hollow[:, None, None]))[:, None]
