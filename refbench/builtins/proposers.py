"""Candidate boxes: a detector's output (MAttNet's files) or the annotated boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ..boxes import Box
from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import ImageItem, Options, Proposer
from ..refer import DETECTIONS_FIX, load_detections


class DetectionsProposer(Proposer):
    """Boxes from a MAttNet-format detections file (the protocol of the published results)."""

    class Options(Options):
        path: Path
        min_score: float = Field(0.0, description="drop detections scoring below this")
        max_per_image: int | None = Field(None, ge=1, description="keep the highest-scoring N")

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, cls.Options)
        path = options.path
        return [] if path.is_file() else [RefbenchError(f"detections file not found: {path}", DETECTIONS_FIX)]

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        self.by_image = load_detections(self.options.path)

    def propose(self, item: ImageItem) -> list[Box]:
        boxes = [b for b in self.by_image.get(item.image_id, []) if b.score >= self.options.min_score]
        if self.options.max_per_image is not None:
            boxes = sorted(boxes, key=lambda b: -b.score)[: self.options.max_per_image]
        return boxes

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.options.path), "sha256": sha256(self.options.path)}


class GroundTruthProposer(Proposer):
    """Every annotated box of the image (the 'ground-truth proposals' setting)."""

    def propose(self, item: ImageItem) -> list[Box]:
        return [a.box for a in item.annotations]
