"""What a plugin implements: data sets, proposers, prompters, scorers, combinators.

Every component is built from its YAML block: the block's keys (less ``plugin``) are
validated against the class's ``Options`` pydantic model, so a typo fails with the
field's name before any work starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from .boxes import Box


class Options(BaseModel):
    """Base of every component's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """A configurable piece. Subclasses declare ``Options`` and take it in ``__init__``."""

    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | None = None) -> None:
        self.options = options if options is not None else type(self).Options()

    def describe(self) -> dict[str, Any]:
        """Provenance recorded in results (file hashes, resolved weights...)."""
        return {}


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotated object of an image (COCO ``annotations`` entry)."""

    id: int
    box: Box
    category: str = ""


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


@dataclass(slots=True)
class ScoreRequest:
    """What a scorer sees for one image."""

    item: ImageItem
    refs: Sequence[Ref]
    boxes: Sequence[Box]
    views: Any = None  # whatever ``Scorer.prepare`` returned, when ``uses_views``

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.refs]


# ---------------------------------------------------------------- interfaces


class Dataset(Component, ABC):
    """A benchmark's images and phrases, grouped by image."""

    @abstractmethod
    def __iter__(self) -> Iterator[ImageItem]:
        """Yield every image that has at least one phrase in the selected splits."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of images."""

    def key(self) -> str:
        """Leaderboard grouping key, e.g. ``refcoco/unc``: runs on the same data compare."""
        return type(self).__name__.lower()


class Proposer(Component, ABC):
    """Offers the candidate boxes of an image."""

    @abstractmethod
    def propose(self, item: ImageItem) -> list[Box]:
        """Candidate boxes (xywh pixels). An empty list is allowed here; the protocol decides."""


class Prompter(Component, ABC):
    """Turns an image and its candidate boxes into one view per box (the visual prompt)."""

    @abstractmethod
    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        """One view per box, in order. Must not modify ``image``."""


class Scorer(Component, ABC):
    """Scores every phrase of an image against every candidate.

    ``prepare`` runs in the runner's background workers; ``score`` in the main process, or
    in the workers too when the runner scores there (``runner.scoring``).
    """

    #: False for scorers that look only at boxes (baselines): no image is decoded for them.
    uses_views: ClassVar[bool] = True

    #: True when the model runs on a GPU: it is then only used in the main process (CUDA does
    #: not survive a fork), never scored in worker processes.
    on_gpu: bool = False

    def prepare(self, image: Image.Image, boxes: Sequence[Box], prompter: Prompter | None) -> Any:
        """Turn an image and boxes into this scorer's input (default: the prompter's views)."""
        if prompter is None:
            raise ValueError(f"{type(self).__name__} needs a prompter")
        return prompter.render(image, boxes)

    @abstractmethod
    def score(self, request: ScoreRequest) -> np.ndarray:
        """Logits ``[len(request.refs), len(request.boxes)]``; larger is better."""


class EmbeddingScorer(Scorer, ABC):
    """A two-tower scorer: logits factor into per-view and per-text features.

    The runner then encodes views of many images in one batch and each phrase once. ``prepare``,
    ``prepare_texts``, ``concat`` and ``concat_texts`` run in the background workers (a worker
    joins the images of a chunk); the encoders and ``logits`` in the main process.
    """

    #: True when batches should reach ``encode_views`` in pinned memory (GPU scorers).
    pin_memory: bool = False

    @abstractmethod
    def encode_views(self, views: Any) -> Any:
        """Features of a batch of prepared views (``prepare`` outputs concatenated)."""

    def prepare_texts(self, texts: Sequence[str]) -> Any:
        """Turn one image's phrases into encoder input (tokenise); runs in the workers."""
        return list(texts)

    def concat_texts(self, prepared: Sequence[Any]) -> Any:
        """Join several images' prepared phrases into one batch for :meth:`encode_texts`."""
        return [t for p in prepared for t in p]

    @abstractmethod
    def encode_texts(self, texts: Any) -> Any:
        """Features of a batch of prepared phrases (``concat_texts`` output)."""

    @abstractmethod
    def logits(self, text_features: Any, view_features: Any) -> np.ndarray:
        """``[n_texts, n_views]`` logits from features."""

    def to_device(self, views: Any) -> Any:
        """Move a batch (``concat`` output) to where the model runs, e.g. asynchronously to a GPU.
        The runner slices batches (``views[a:b]``) and joins slices with ``concat`` so that every
        ``encode_views`` call gets exactly ``runner.batch_size`` views (the last may be smaller)."""
        return views

    @abstractmethod
    def concat(self, prepared: Sequence[Any]) -> Any:
        """Join several images' prepared views into one batch for :meth:`encode_views`
        (:func:`refbench.transfer.cat` builds tensors in shared memory when run in a worker)."""

    def score(self, request: ScoreRequest) -> np.ndarray:
        return self.logits(self.encode_texts(self.prepare_texts(request.texts)), self.encode_views(request.views))


class Combinator(Component, ABC):
    """Builds a method's logits from other methods' logits of the same run (e.g. ensembles)."""

    @property
    @abstractmethod
    def members(self) -> list[str]:
        """Ids of the methods it combines."""

    @abstractmethod
    def combine(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        """Logits of the members (in ``members`` order), each ``[T, V]`` -> ``[T, V]``."""
