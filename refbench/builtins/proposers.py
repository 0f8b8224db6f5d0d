"""Candidate boxes: a detector's output (MAttNet's files, COCO results) or the annotated boxes, with masks on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ..boxes import Box
from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import ImageItem, Options, Proposer
from ..masks import annotation_boxes, inside_fraction, with_mask
from ..refer import DETECTIONS_FIX, load_detections, read_detection_list

MASKS_FIX = "use the masks file made with these detections (MAttNet's *_masks.json, or a COCO results file with segmentation)"


class DetectionsProposer(Proposer):
    """Boxes from a MAttNet-format detections file (the protocol of the published results) or a COCO results file.

    With ``masks``, each box carries its detection's mask."""

    class Options(Options):
        path: Path
        masks: Path | None = Field(None, description="detection masks: MAttNet's *_masks.json (an RLE per det_id) or a COCO "
                                                     "results file with segmentation (may be the detections file itself)")
        min_score: float = Field(0.0, description="drop detections scoring below this")
        max_per_image: int | None = Field(None, ge=1, description="keep the highest-scoring N")

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, cls.Options)
        problems = [] if options.path.is_file() else [RefbenchError(f"detections file not found: {options.path}", DETECTIONS_FIX)]
        if options.masks is not None and not options.masks.is_file():
            problems.append(RefbenchError(f"masks file not found: {options.masks}", MASKS_FIX))
        return problems

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.ids: dict[int, list[int | None]] = {}  # each image's detection ids, filled by load_detections
        self.by_image = load_detections(self.options.path, self.ids)
        self.masks, self.by_id = (None, False) if self.options.masks is None else align_masks(self.options.masks, self.ids)

    def propose(self, item: ImageItem) -> list[Box]:
        boxes = self.by_image.get(item.image_id, [])
        keep = [k for k, b in enumerate(boxes) if b.score >= self.options.min_score]
        if self.options.max_per_image is not None:
            keep = sorted(keep, key=lambda k: -boxes[k].score)[: self.options.max_per_image]
        if self.masks is None:
            return [boxes[k] for k in keep]
        segs, ids = self.masks.get(item.image_id, []), self.ids.get(item.image_id, [])
        out = []
        for k in keep:  # only the boxes kept get their masks decoded and checked
            name = _name(ids[k], k)
            box = with_mask(boxes[k], segs[k], item.height, item.width, f"mask of detection {name} (image {item.image_id})")
            if not self.by_id and inside_fraction(box.mask, box) < 0.5:  # matched by position: meant for another box
                raise RefbenchError(f"{self.options.masks}: the mask matched to detection {name} (image {item.image_id}, its "
                                    f"detection #{k}) lies mostly outside its box {[box.x, box.y, box.w, box.h]}; masks matched "
                                    "by position must be in the detections' order", MASKS_FIX)
            out.append(box)
        return out

    def describe(self) -> dict[str, Any]:
        out = {"path": str(self.options.path), "sha256": sha256(self.options.path)}
        if self.options.masks is not None:
            out["masks"] = {"path": str(self.options.masks), "sha256": sha256(self.options.masks)}
        return out


def align_masks(path: Path, ids: dict[int, list[int | None]]) -> tuple[dict[int, list[Any]], bool]:
    """Each image's mask segmentations, in the order of its detections (``ids``: det_ids per image in
    file order), and whether they were matched by det_id (when both files carry them) rather than by
    position within each image. The first mismatch (count, det_id, image) raises one line naming it."""
    entries = []
    for i, e in enumerate(read_detection_list(path, "masks")):
        seg = e.get("rle", e.get("segmentation")) if isinstance(e, dict) else None
        try:
            image_id = int(e["image_id"])
            det_id = int(e["det_id"]) if "det_id" in e else None
        except (KeyError, TypeError, ValueError):
            image_id, det_id = None, None
        if seg is None or image_id is None:
            raise RefbenchError(f"{path}: mask #{i} is not {{det_id, image_id, rle}} or {{image_id, segmentation}}: {str(e)[:80]}",
                                MASKS_FIX)
        entries.append((det_id, image_id, seg))
    n_dets = sum(len(v) for v in ids.values())
    if len(entries) != n_dets:
        raise RefbenchError(f"{path} holds {len(entries)} masks for {n_dets} detections", MASKS_FIX)
    out: dict[int, list[Any]] = {}
    if all(d is not None for d, _, _ in entries) and all(d is not None for v in ids.values() for d in v):
        table = {d: (image, seg) for d, image, seg in entries}
        for image, dets in ids.items():
            for d in dets:
                if d not in table:
                    raise RefbenchError(f"detection {d} (image {image}) has no mask in {path}", MASKS_FIX)
                if table[d][0] != image:
                    raise RefbenchError(f"detection {d} is on image {image} in the detections but on image {table[d][0]} in {path}",
                                        MASKS_FIX)
                out.setdefault(image, []).append(table[d][1])
        return out, True
    for _, image, seg in entries:
        out.setdefault(image, []).append(seg)
    for image, dets in ids.items():
        if len(out.get(image, [])) != len(dets):
            raise RefbenchError(f"image {image} has {len(dets)} detections but {len(out.get(image, []))} masks in {path}", MASKS_FIX)
    return out, False


def _name(det_id: int | None, k: int) -> str:
    return str(det_id) if det_id is not None else f"#{k}"


class GroundTruthProposer(Proposer):
    """Every annotated box of the image (the 'ground-truth proposals' setting), with masks on request.

    With ``masks: true`` each box carries its annotation's segmentation from instances.json."""

    class Options(Options):
        masks: bool = Field(False, description="give each box its annotation's segmentation (for mask prompters)")

    def propose(self, item: ImageItem) -> list[Box]:
        return annotation_boxes(item, self.options.masks)
