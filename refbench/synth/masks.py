"""Detection masks for SynthRef, in MAttNet's ``*_masks.json`` format: what a Mask R-CNN head run on
each detected box would give, here read off the scene's polygons.

A detection's mask is the objects' union within its box (a true detection gets its object, a
loose one parts of its neighbours too); a box over bare background gets the ellipse inscribed
in it. It depends only on the written annotations and boxes, so it is derived from the files
and added to a data set written before masks existed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from ..files import write_atomic
from .spec import VARIANTS

_ELLIPSE_POINTS = 32


def masks_path(root: Path, variant: str) -> Path:
    return root / "dets" / f"{variant}_unc_masks.json"


def write_masks(root: Path) -> None:
    """Write every variant's masks file that is missing (the variants share images, objects and detections)."""
    todo = [v for v in VARIANTS if not masks_path(root, v).is_file()]
    if not todo:
        return
    instances = json.loads((root / todo[0] / "instances.json").read_text(encoding="utf-8"))
    dets = json.loads((root / "dets" / f"{todo[0]}_unc_dets.json").read_text(encoding="utf-8"))
    data = json.dumps(detection_masks(instances, dets), separators=(",", ":")).encode()
    for variant in todo:
        write_atomic(masks_path(root, variant), data)


def detection_masks(instances: dict[str, Any], dets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One MAttNet mask entry per detection: its fields plus ``rle`` (compressed, counts as text)."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in instances["images"]}
    polygons: dict[int, list[list[float]]] = {}
    for ann in instances["annotations"]:
        polygons.setdefault(ann["image_id"], []).extend(ann["segmentation"])
    objects: dict[int, Any] = {}  # image -> RLE of the union of its objects
    out = []
    for det in dets:
        image = det["image_id"]
        h, w = sizes[image]
        if image not in objects:
            objects[image] = coco_mask.merge(coco_mask.frPyObjects(polygons[image], h, w))
        box = coco_mask.frPyObjects(np.array([det["box"]], dtype=np.float64), h, w)
        rle = coco_mask.merge([objects[image], *box], intersect=True)
        if coco_mask.area(rle) == 0:
            rle = coco_mask.frPyObjects([_ellipse(det["box"])], h, w)[0]
        out.append({**det, "rle": {"size": [h, w], "counts": rle["counts"].decode("ascii")}})
    return out


def _ellipse(box: list[float]) -> list[float]:
    x, y, w, h = box
    t = np.linspace(0, 2 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    return np.round(np.stack([x + w / 2 * (1 + np.cos(t)), y + h / 2 * (1 + np.sin(t))], axis=1), 2).ravel().tolist()
