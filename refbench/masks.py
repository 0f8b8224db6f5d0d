"""Region masks: COCO segmentations (polygons or run-length encoding), checked and decoded with pycocotools.

A candidate's mask travels on its :class:`~refbench.Box` as compressed COCO RLE (``{"size":
[height, width], "counts": bytes}``): small to pickle to worker processes, and what MAttNet's
detection masks and COCO results files already hold. Polygons (``instances.json``) are
converted once, when they are read, by :func:`mask_rle`; prompters read masks with
:func:`decode_mask`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from .boxes import Box
from .errors import RefbenchError
from .items import ImageItem

Rle = dict[str, Any]


def mask_rle(segmentation: Any, height: int, width: int, where: str) -> Rle:
    """Compressed RLE of a COCO ``segmentation`` for a ``width`` x ``height`` image: a list of
    polygons (``[[x1, y1, x2, y2, ...], ...]``), uncompressed RLE (``counts`` a list of run
    lengths) or compressed RLE (``counts`` a string). Raises a :class:`RefbenchError` naming
    ``where`` (e.g. ``"annotation 7"``) for a polygon of fewer than 3 points, a non-finite
    coordinate, or RLE whose size or run lengths do not match the image."""
    fix = "fix or regenerate the file holding it"
    if isinstance(segmentation, (list, tuple)):
        if not segmentation:
            raise RefbenchError(f"{where}: empty segmentation (no polygon)", fix)
        polygons = []
        for i, poly in enumerate(segmentation):
            sized = isinstance(poly, (list, tuple, np.ndarray))
            if not sized or len(poly) < 6 or len(poly) % 2:
                n = len(poly) // 2 if sized else 0
                raise RefbenchError(f"{where}: polygon {i} has {n} point{'s' * (n != 1)}; a polygon needs at least 3", fix)
            numeric = (poly.ndim == 1 and poly.dtype.kind in "iuf" if isinstance(poly, np.ndarray)
                       else all(isinstance(v, (int, float)) for v in poly))
            coords = np.asarray(poly, dtype=np.float64) if numeric else np.array([np.nan])
            if not np.isfinite(coords).all():
                raise RefbenchError(f"{where}: polygon {i} has a non-numeric or non-finite coordinate", fix)
            polygons.append(coords)  # pycocotools takes float64 arrays as they are
        return _compact(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width)))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = segmentation["size"]
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, (int, float)) for v in size)
                and list(size) == [height, width]):
            raise RefbenchError(f"{where}: RLE of size {size!r} (height, width) for a {width}x{height} image, "
                                f"expected [{height}, {width}]", fix)
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
                raise RefbenchError(f"{where}: RLE run lengths do not cover the {width}x{height} image "
                                    f"({sum(c for c in counts if isinstance(c, int))} pixels, expected {height * width})", fix)
            return _compact(coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width))
        raw = counts.encode("utf-8") if isinstance(counts, str) else counts  # a non-ASCII character's bytes are out of range
        if not isinstance(raw, bytes) or rle_total(raw) != height * width:
            raise RefbenchError(f"{where}: corrupt compressed RLE (its runs do not cover the {width}x{height} image)", fix)
        return {"size": [height, width], "counts": raw}
    raise RefbenchError(f"{where}: segmentation is neither polygons nor RLE: {str(segmentation)[:60]}", fix)


def rle_total(counts: bytes) -> int | None:
    """The number of pixels compressed RLE ``counts`` covers (the sum of its runs, decoded as
    pycocotools' ``rleFrString`` does), or None when the string is malformed (a character out of
    range, a run cut short, a negative run). pycocotools decodes such strings without complaint."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                return None
            c = counts[p] - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return sum(runs)


def box_rle(x: float, y: float, w: float, h: float, height: int, width: int) -> Rle:
    """Compressed RLE of an xywh box (pycocotools' ``frBbox``)."""
    return _compact(coco_mask.frPyObjects(np.array([[x, y, w, h]], dtype=np.float64), height, width)[0])


def with_mask(box: Box, segmentation: Any, height: int, width: int, where: str) -> Box:
    """``box`` carrying ``segmentation`` as its mask (checked by :func:`mask_rle`). An empty mask (a
    polygon of no area, a detector's mask that thresholded to nothing) is replaced by the box's
    rectangle, so the candidate is still marked rather than drawn like no candidate at all."""
    rle = mask_rle(segmentation, height, width, where)
    if mask_area(rle) == 0:  # the box, at least a pixel each way (a sub-pixel box covers no pixel centre)
        rle = box_rle(box.x, box.y, max(box.w, 1.0), max(box.h, 1.0), height, width)
    return replace(box, mask=rle)


def annotation_boxes(item: ImageItem, masks: bool = True) -> list[Box]:
    """The boxes of ``item``'s annotations, in order, each carrying its segmentation as a mask
    (when ``masks``): what the ``gt`` proposer offers with ``masks: true`` and what training with a
    mask prompter draws. An annotation without a segmentation, or with a bad one, raises one line
    naming it."""
    if not masks:
        return [a.box for a in item.annotations]
    out = []
    for a in item.annotations:
        where = f"annotation {a.id} (image {item.image_id})"
        if a.segmentation is None:
            raise RefbenchError(f"{where} has no segmentation",
                                "use a data set whose annotations carry segmentations (refer's instances.json; the parquet "
                                "and MDETR layouts do not), or a box prompter")
        out.append(with_mask(a.box, a.segmentation, item.height, item.width, where))
    return out


def decode_mask(mask: Rle) -> np.ndarray:
    """A mask (compressed RLE, as :attr:`Box.mask` holds it) as a ``height x width`` bool array."""
    return coco_mask.decode(mask).astype(bool)


def mask_area(mask: Rle) -> int:
    """The number of pixels in ``mask``."""
    return int(coco_mask.area(mask))


def inside_fraction(mask: Rle, box: Box) -> float:
    """The fraction of ``mask``'s pixels within ``box`` grown by a pixel on each side (1.0 for an empty mask)."""
    area = mask_area(mask)
    if area == 0:
        return 1.0
    h, w = mask["size"]
    grown = box_rle(box.x - 1, box.y - 1, box.w + 2, box.h + 2, h, w)
    return int(coco_mask.area(coco_mask.merge([mask, grown], intersect=True))) / area


def _compact(rle: Any) -> Rle:
    rle = rle[0] if isinstance(rle, list) else rle
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]}
