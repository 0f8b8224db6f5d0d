"""Visual prompts drawn from each candidate's mask (``Box.mask``) rather than its box.

Masks come from the proposer (``gt`` with ``masks: true``: instances.json segmentations;
``detections`` with ``masks: FILE``: MAttNet's ``*_masks.json`` or a COCO results file); the
runner refuses, before it starts, a mask prompter given candidates without masks. The
prompts and their defaults are FGVP's (Yang et al., NeurIPS 2023, ylingfeng/FGVP,
``fgvp-reclip/fine_grained_visual_prompt.py``), whose headline prompt is the blurred reverse
mask (with SAM's masks there; here the proposer's):

- ``blur_reverse_mask``: the image outside the mask blurred by Pillow's ``GaussianBlur(100)``;
- ``grayscale_reverse_mask``: the image outside the mask in grayscale, with FGVP's weights
  (OpenCV's ``BGR2GRAY`` applied to RGB pixels: 0.114 R + 0.587 G + 0.299 B);
- ``mask_shade``: the mask tinted green (0, 255, 0) at alpha 0.5, its edge outlined in red, 2 px.

FGVP draws on the image resized to a short side of 384 pixels (``short_side``; ``null`` draws
on the image as it is), the mask resized with it (bilinear, any coverage counts, as FGVP
thresholds its interpolated masks at 0). Views are returned at that size; the scorer's own
preprocessing then takes them to the model's input (FGVP squashes to a square instead). Each
image is resized, blurred or converted once and shared by all its views.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageFilter
from pydantic import Field
from scipy import ndimage

from refbench import Box, Options, Prompter, RefbenchError, decode_mask

from .prompters import RGB, luma


def masks_of(boxes: Sequence[Box], width: int, height: int, name: str) -> list[np.ndarray]:
    """Each box's mask as ``height x width`` bools; a box without one, or of another size, is an error."""
    out = []
    for i, box in enumerate(boxes):
        if box.mask is None:
            raise RefbenchError(f"prompter {name}: candidate {i} has no mask",
                                "give the proposer masks (gt: masks: true; detections: masks: FILE)")
        mask = decode_mask(box.mask)
        if mask.shape != (height, width):
            raise RefbenchError(f"prompter {name}: candidate {i}'s mask is {mask.shape[1]}x{mask.shape[0]} "
                                f"on a {width}x{height} image", "the masks file does not match the images")
        out.append(mask)
    return out


class MaskOptions(Options):
    short_side: int | None = Field(384, ge=8, description="draw on the image resized to this short side (FGVP's 384); null: as it is")


def drawing_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """The size FGVP draws at: the short side scaled to ``short_side``, the other side rounded
    (``int(side * scale + 0.5)``, as SAM's resize transform that FGVP copies computes it)."""
    if short_side is None:
        return width, height
    scale = short_side / min(width, height)
    return int(width * scale + 0.5), int(height * scale + 0.5)


class _MaskPrompter(Prompter):
    needs_masks = True
    template = "a photo of {}"
    Options = MaskOptions

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        rgb = image.convert("RGB")
        masks = masks_of(boxes, rgb.width, rgb.height, type(self).__name__)
        size = drawing_size(rgb.width, rgb.height, self.options.short_side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.BILINEAR)
            masks = [np.asarray(Image.fromarray(m.view(np.uint8) * 255).resize(size, Image.BILINEAR)) > 0 for m in masks]
        pixels = np.asarray(rgb)
        outside = self.outside(rgb, pixels) if masks else pixels
        return [Image.fromarray(self.paint(pixels, outside, m)) for m in masks]

    def outside(self, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
        """What replaces the image outside the mask (computed once per image; any shape that broadcasts to ``pixels``)."""
        return pixels

    def paint(self, pixels: np.ndarray, outside: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.where(mask[..., None], pixels, outside)


class BlurReverseMask(_MaskPrompter):
    """FGVP's blur reverse mask: the image outside the candidate's mask Gaussian-blurred (std 100), the mask sharp.

    The blur is Pillow's ``GaussianBlur`` (its radius is the standard deviation), on the drawing
    size's image; "a photo of {}"."""

    class Options(MaskOptions):
        std: float = Field(100.0, gt=0, description="standard deviation of the Gaussian blur, in pixels")

    def outside(self, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(image.filter(ImageFilter.GaussianBlur(self.options.std)))


class GrayscaleReverseMask(_MaskPrompter):
    """FGVP's grayscale reverse mask: the image outside the candidate's mask in grayscale, the mask in colour.

    ``weights: fgvp`` (default) reproduces FGVP's grey, OpenCV's ``BGR2GRAY`` on RGB pixels
    (0.114 R + 0.587 G + 0.299 B, in OpenCV's 15-bit fixed point); ``luma`` is ITU-R 601-2 luma
    (0.299 R + 0.587 G + 0.114 B, Pillow's "L")."""

    class Options(MaskOptions):
        weights: Literal["fgvp", "luma"] = Field("fgvp", description="fgvp: OpenCV BGR2GRAY on RGB, as FGVP; luma: Pillow's L")

    def outside(self, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
        grey = fgvp_grey(pixels) if self.options.weights == "fgvp" else luma(pixels)
        return grey[..., None]  # broadcast over the channels by draw


def fgvp_grey(pixels: np.ndarray) -> np.ndarray:
    """OpenCV's ``cvtColor(rgb, COLOR_BGR2GRAY)`` on 8-bit pixels: its fixed-point coefficients
    (3735, 19235, 9798) / 2^15 for B, G, R applied to channels 0, 1, 2, rounded; so R takes the blue weight."""
    c = pixels.astype(np.uint32)
    return ((c[..., 0] * 3735 + c[..., 1] * 19235 + c[..., 2] * 9798 + (1 << 14)) >> 15).astype(np.uint8)


class MaskShade(_MaskPrompter):
    """The candidate's mask tinted green (0, 255, 0) at alpha 0.5, its edge outlined in red, 2 px.

    FGVP's colourful mask (``rint((1 - alpha) * pixel + alpha * colour)`` inside the mask, as
    ``cv2.addWeighted``) with its contour prompt's line on top. FGVP draws the contour with
    ``cv2.drawContours``, centred on the edge; here the outline is the mask's pixels within
    ``outline`` pixels (8-connected) of its edge or of the image's (the mask eroded inward by a
    3x3 square), so it stays on the object; "a photo of {}"."""

    class Options(MaskOptions):
        colour: RGB = Field((0, 255, 0), description="RGB of the tint")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of the tint")
        outline: int = Field(2, ge=0, description="outline width in pixels inside the mask's edge; 0 = none")
        outline_colour: RGB = Field((255, 0, 0), description="RGB of the outline")

    def paint(self, pixels: np.ndarray, outside: np.ndarray, mask: np.ndarray) -> np.ndarray:
        o = self.options
        colour = np.asarray(o.colour, dtype=np.float32)
        view = pixels.copy()
        view[mask] = np.rint(pixels[mask] * np.float32(1 - o.alpha) + colour * np.float32(o.alpha)).astype(np.uint8)
        if o.outline:
            edge = mask & ~ndimage.binary_erosion(mask, np.ones((3, 3), bool), iterations=o.outline, border_value=0)
            view[edge] = np.asarray(o.outline_colour, dtype=np.uint8)
        return view
