"""The green-shading visual prompt: each candidate drawn on its own copy of the image."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Annotated, Literal, Sequence

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from refbench import Box, Canvas, Lookup, Options, Prompter, as_array

if TYPE_CHECKING:
    import torch

LIMEGREEN = (50, 205, 50)


def pixel_bounds(boxes: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Boxes -> half-open pixel rectangles [x0, x1) x [y0, y1), ``[N, 4]`` int64: corners rounded half
    to even, clipped to the image, at least 1 px."""
    xywh = as_array(boxes)
    lo = np.clip(np.rint(xywh[:, :2]), 0, (width - 1, height - 1))
    hi = np.minimum(np.maximum(np.rint(xywh[:, :2] + xywh[:, 2:]), lo + 1), (width, height))
    return np.concatenate([lo, hi], 1).astype(np.int64)


class GreenShade(Prompter):
    """Fills the box with a colour at an opacity and outlines it (default limegreen, 0.5, 2 px).

    The prompt is :meth:`draw`; refbench derives the full-image, resized, windowed and on-device
    views from it. ``style: seed`` draws as the original fine-tuning code wrote its views instead
    (see :func:`seed_view`); such views exist only on the full image (no ``views: resized``) and
    only with PIL and numpy (no ``views: device``).
    """

    class Options(Options):
        colour: tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)],
                      Annotated[int, Field(ge=0, le=255)]] = Field(LIMEGREEN, description="RGB of fill and outline")
        alpha: float = Field(0.5, ge=0, le=1, description="opacity of the fill (style seed: select_zone's alpha)")
        outline: int = Field(2, ge=0, description="outline width in pixels, drawn inside the box (style seed: the rectangles' thickness)")
        style: Literal["refbench", "seed"] = Field(
            "refbench", description="refbench: this fill and outline; seed: the fine-tuning code's drawing, JPEG round trip included")

        @model_validator(mode="after")
        def _seed_needs_an_outline(self):
            if self.style == "seed" and self.outline < 1:
                raise ValueError("style seed draws OpenCV rectangles, which are at least 1 px wide: set outline >= 1")
            return self

    draws_within_box = 0  # fill and outline stay inside each box's pixel bounds

    def __init__(self, options: Options | None = None) -> None:
        super().__init__(options)
        self._tint = np.asarray(self.options.colour, dtype=np.float32) * self.options.alpha  # float32, as numpy computes it
        self._on: dict[torch.device, tuple[Lookup, torch.Tensor]] = {}  # device -> _constants
        if self.options.style == "seed":  # JPEG views: made on the full image only, and changed everywhere
            self.draws_within_box = None
            self.phrase_chars = 150  # create_refexp_data.py cuts phrases to 150 characters

    @property
    def draws(self) -> bool:
        """``style: seed`` views exist on the full image only: it draws them itself (:meth:`render`)."""
        return self.options.style != "seed" and super().draws

    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        if self.options.style == "seed":
            o = self.options
            base = np.asarray(image.convert("RGB"))
            return [jpeg_round_trip(seed_view(base, box, o.colour, o.alpha, o.outline)) for box in boxes]
        return super().render(image, boxes)

    def draw(self, canvas: Canvas) -> torch.Tensor:
        """The box blended with the colour at ``alpha`` (float64, as numpy computes it, rounded half to
        even) inside a solid outline of ``outline`` pixels (at the canvas's scale, at least 1), drawn
        inside the box's pixel bounds (:func:`pixel_bounds`: corners rounded half to even, clipped to
        the image, at least 1 px)."""
        import torch

        o = self.options
        xy, wh = canvas.boxes[:, :2], canvas.boxes[:, 2:]
        limit = torch.stack(canvas.size, 1).double()  # each view's image's (width, height)
        lo = torch.minimum(torch.round(xy).clamp_(min=0), limit - 1)  # pixel_bounds, batched
        hi = torch.minimum(torch.maximum(torch.round(xy + wh), lo + 1), limit)
        corners = torch.cat([lo, hi], 1).long()
        blend, solid = self._constants(canvas.device)
        t = max(1, round(o.outline * canvas.scale)) if o.outline else 0
        views = canvas.views
        if t:
            canvas.paint(views, *corners.unbind(1), solid)
            corners = corners + corners.new_tensor([t, t, -t, -t])
        return canvas.paint(views, *corners.unbind(1), blend)

    def blended(self, pixels: torch.Tensor) -> torch.Tensor:
        """The blend of uint8 pixels with the colour: ``round(pixel * (1 - alpha) + alpha * colour)`` in
        float64, rounded half to even. Each channel on its own, so :meth:`draw` paints it as a
        :class:`refbench.Lookup` of every value."""
        import torch

        tint = torch.from_numpy(self._tint).to(pixels.device).double().view(3, 1, 1)
        return torch.round(pixels.double() * (1 - self.options.alpha) + tint).to(torch.uint8)

    def _constants(self, device: torch.device) -> tuple[Lookup, torch.Tensor]:
        """The blend as a lookup and the outline's colour (``[3]`` uint8) on ``device``, made once."""
        import torch

        if device not in self._on:
            self._on[device] = (Lookup.of(self.blended, device), torch.tensor(self.options.colour, dtype=torch.uint8, device=device))
        return self._on[device]


# ---------------------------------------------------------------- style: seed
#
# The original fine-tuning code (davidbchang/clip-refcoco, create_refexp_data.py) drew every
# candidate on a BGR copy of the image, wrote it with cv2.imwrite and read it back with Pillow:
#
#   x1, y1, w, h = [int(k) for k in box]
#   view = opencv_draw_tools.select_zone(image.copy(), (x1, y1, x1 + w, y1 + h), alpha=0.5, color=limegreen,
#                                        thickness=2, filled=True)
#   view = cv2.rectangle(view, (x1, y1), (x1 + w, y1 + h), color=limegreen, thickness=2)
#
# select_zone (opencv-draw-tools-fernaperg 1.2.0, the last release under that import name) clamps
# the corners, draws a "peephole" at opacity alpha, fills the box at opacity alpha / 3, and draws a
# 2-px rectangle at opacity alpha. The functions below draw the same pixels with numpy; the colour
# is given in RGB (the original's BGR colour on a BGR image is the same colour).

PEEPHOLE_ARM = 7  # select_zone's peephole: 7-px arms at the corners (3 px wide) and mid-edges (1 px)


def cv_blend(colour: Sequence[int], pixels: np.ndarray, alpha: float) -> np.ndarray:
    """``cv2.addWeighted(overlay, alpha, frame, 1 - alpha, 0)`` where the overlay is ``colour``: float32
    weights, ``fma(colour, alpha, frame * (1 - alpha))`` rounded to float32 once, then to the nearest
    integer (ties to even), as OpenCV's vectorised 8-bit path computes it."""
    beta_term = (pixels.astype(np.float32) * np.float32(1 - alpha)).astype(np.float64)
    exact = np.asarray(colour, dtype=np.float64) * np.float64(np.float32(alpha)) + beta_term  # exact in float64
    return np.clip(np.rint(exact.astype(np.float32)), 0, 255).astype(np.uint8)


def _fill(mask: np.ndarray, xa: int, ya: int, xb: int, yb: int) -> None:
    """Set the inclusive pixel rectangle ``[xa, xb] x [ya, yb]`` of ``mask``, clipped to it."""
    h, w = mask.shape
    xa, ya, xb, yb = max(xa, 0), max(ya, 0), min(xb, w - 1), min(yb, h - 1)
    if xa <= xb and ya <= yb:
        mask[ya : yb + 1, xa : xb + 1] = True


def _disc(mask: np.ndarray, x: int, y: int, r: int) -> None:
    """OpenCV's filled circle of integer radius ``r`` at ``(x, y)``: the pixels with ``dx² + dy² <= r²``."""
    for dy in range(-r, r + 1):
        half = int(np.sqrt(r * r - dy * dy))
        _fill(mask, x - half, y + dy, x + half, y + dy)


def cv_segment(mask: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], thickness: int, caps: Sequence[tuple[int, int]]) -> None:
    """An axis-aligned ``cv2.line`` (8-connected) from ``p0`` to ``p1`` into ``mask``: 1 px wide, both ends
    included, when ``thickness <= 1``; otherwise a band ``(thickness + 1) // 2`` pixels to each side of
    the segment (over its length) with a filled circle of that radius at each point of ``caps``."""
    (x0, y0), (x1, y1) = p0, p1
    if thickness <= 1:
        _fill(mask, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        return
    d = (thickness + 1) // 2
    if (x0, y0) != (x1, y1):
        if y0 == y1:
            _fill(mask, min(x0, x1), y0 - d, max(x0, x1), y0 + d)
        else:
            _fill(mask, x0 - d, min(y0, y1), x0 + d, max(y0, y1))
    for x, y in caps:
        _disc(mask, x, y, d)


def cv_rectangle(mask: np.ndarray, x1: int, y1: int, x2: int, y2: int, thickness: int) -> None:
    """``cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness)`` into ``mask``: its four edges as
    thick lines with a round cap at every corner; ``thickness < 0`` fills it (corners included)."""
    if thickness < 0:
        _fill(mask, min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        return
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    for i, p in enumerate(corners):
        q = corners[(i + 1) % 4]
        cv_segment(mask, p, q, thickness, [q])


def select_zone_position(x1: int, y1: int, x2: int, y2: int, width: int, height: int, t: int) -> tuple[int, int, int, int]:
    """select_zone's corner adjustment: the corners clamped to the image (the release raises for corners
    off the image; they are clamped here), then kept ``t`` pixels inside it and ``t`` apart."""
    x1, x2 = (min(max(v, 0), width) for v in (x1, x2))
    y1, y2 = (min(max(v, 0), height) for v in (y1, y2))
    x2 = int(min(max(x2, 2 * t), width - t))
    y2 = int(min(max(y2, 2 * t), height - t))
    return int(min(max(x1, t), x2 - t)), int(min(max(y1, t), y2 - t)), x2, y2


def seed_view(image: np.ndarray, box: Box, colour: Sequence[int], alpha: float, t: int) -> np.ndarray:
    """One candidate drawn as the fine-tuning code drew it, before its JPEG round trip (H x W x 3 uint8):
    the box's coordinates truncated with ``int()``; select_zone's peephole (blended at ``alpha``), its
    fill (at ``alpha / 3``) and its ``t``-px rectangle (at ``alpha``) on the adjusted corners; then an
    opaque ``t``-px ``cv2.rectangle`` from ``(x1, y1)`` to ``(x1 + w, y1 + h)``, centred on the edges."""
    h, w = image.shape[:2]
    x1, y1, bw, bh = (int(v) for v in (box.x, box.y, box.w, box.h))
    ax1, ay1, ax2, ay2 = select_zone_position(x1, y1, x1 + bw, y1 + bh, w, h, t)
    frame = image.copy()
    arm = PEEPHOLE_ARM
    if ax2 - ax1 > 2 * 2 + arm and ay2 - ay1 > 2 * 2 + arm:  # add_peephole's own thickness: 2
        mask = np.zeros((h, w), dtype=bool)
        for (xa, ya), (xb, yb) in [((ax1, ay1), (ax1 + arm, ay1)), ((ax2, ay1), (ax2 - arm, ay1)), ((ax1, ay2), (ax1 + arm, ay2)),
                                   ((ax2, ay2), (ax2 - arm, ay2)), ((ax1, ay1), (ax1, ay1 + arm)), ((ax1, ay2), (ax1, ay2 - arm)),
                                   ((ax2, ay1), (ax2, ay1 + arm)), ((ax2, ay2), (ax2, ay2 - arm))]:
            cv_segment(mask, (xa, ya), (xb, yb), 3, [(xa, ya), (xb, yb)])
        ym, xm = (ay1 + ay2) // 2, (ax1 + ax2) // 2
        for (xa, ya), (xb, yb) in [((ax1, ym), (ax1 + arm, ym)), ((ax2, ym), (ax2 - arm, ym)),
                                   ((xm, ay1), (xm, ay1 + arm)), ((xm, ay2), (xm, ay2 - arm))]:
            cv_segment(mask, (xa, ya), (xb, yb), 1, [])
        frame[mask] = cv_blend(colour, frame[mask], alpha)
    fill = (slice(ay1, ay2 + 1), slice(ax1, ax2 + 1))
    frame[fill] = cv_blend(colour, frame[fill], alpha / 3.0)
    mask = np.zeros((h, w), dtype=bool)
    cv_rectangle(mask, ax1, ay1, ax2, ay2, t)
    frame[mask] = cv_blend(colour, frame[mask], alpha)
    mask[:] = False
    cv_rectangle(mask, x1, y1, x1 + bw, y1 + bh, t)
    frame[mask] = np.asarray(colour, dtype=np.uint8)
    return frame


def jpeg_round_trip(view: np.ndarray, quality: int = 95) -> Image.Image:
    """``view`` written as a baseline JPEG at ``quality`` with 4:2:0 chroma (cv2.imwrite's defaults) by
    Pillow's libjpeg, and decoded again by Pillow, as the fine-tuning code's data loader read its views."""
    buffer = io.BytesIO()
    Image.fromarray(view).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")
