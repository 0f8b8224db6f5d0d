"""The data that flows between components: images, their phrases, their annotated boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .boxes import Box


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotated object of an image (COCO ``annotations`` entry)."""

    id: int
    box: Box
    category: str = ""
    #: The object's COCO segmentation, None if it has none: polygons as a tuple of 1-D float64 arrays
    #: (x1, y1, x2, y2, ...), RLE as the file holds it; :func:`refbench.annotation_boxes` turns it into
    #: checked masks on the boxes.
    segmentation: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Ref:
    """One phrase (one RefCOCO sentence): the unit that is scored and counted."""

    sent_id: int
    ref_id: int
    ann_id: int
    text: str
    box: Box
    split: str
    phrase_type: str = ""  # SynthRef tags phrases; real data leaves it empty


@dataclass(frozen=True, slots=True)
class ImageItem:
    """An image with every phrase about it: the runner's unit of work."""

    image_id: int
    path: Path
    width: int
    height: int
    refs: tuple[Ref, ...]
    annotations: tuple[Annotation, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Answer:
    """A grounder's answer to one phrase: its box, and what the model said, kept for audit.

    ``box`` is None when there is no usable answer (scored as a miss); ``problem`` then says why
    (e.g. ``unparsable``, ``outside_unit_range``, ``invalid_box``). ``raw`` is the model's text as it
    came out (a VLM's generation, a predictions file's text): the run's journal keeps it beside the
    phrase's record.
    """

    box: Box | None
    raw: str | None = None
    problem: str | None = None


@dataclass(slots=True)
class ScoreRequest:
    """What a scorer sees for one image."""

    item: ImageItem
    refs: Sequence[Ref]
    boxes: Sequence[Box]
    views: Any = None  # whatever ``Scorer.prepare`` returned, when ``uses_views``
    #: For a combinator: each member's logits ``[len(texts), len(boxes)]`` for other texts against this
    #: image's candidates (e.g. a relation's subject and object), in ``members`` order; None where unavailable.
    score_texts: Callable[[Sequence[str]], list[Any]] | None = None

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.refs]
