"""What a plugin implements: data sets, proposers, prompters, scorers, combinators, grounders.

Every component is built from its YAML block: the block's keys (less ``plugin``) are
validated against the class's ``Options`` pydantic model, so a typo fails with the
field's name before any work starts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Sequence

import numpy as np
from PIL import Image

from .boxes import Box
from .component import Component, Options
from .errors import RefbenchError
from .items import Annotation, Answer, ImageItem, Ref, ScoreRequest
from .prompter import Prompter


__all__ = ["Annotation", "Answer", "Combinator", "Component", "Dataset", "EmbeddingScorer", "Grounder", "ImageItem", "Options",
           "Prompter", "Proposer", "Ref", "ScoreRequest", "Scorer"]


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

    def known_sent_ids(self) -> set[int]:
        """Every sent_id of the selected splits, including phrases the data set's own options leave out
        (e.g. ``exclude``): what an answer file for these splits may name."""
        return {r.sent_id for item in self for r in item.refs}


class Proposer(Component, ABC):
    """Offers the candidate boxes of an image.

    The runner calls ``propose`` in the main process for every selected image, one after
    another, before any image is prepared, and checks every box then (``proposer.invalid``);
    a proposer that runs a model should keep it fast or read precomputed proposals.
    """

    @abstractmethod
    def propose(self, item: ImageItem) -> list[Box]:
        """Candidate boxes (xywh pixels). An empty list is allowed here; the protocol decides."""

    def report(self) -> str | None:
        """A line for the end of a run, after every image was proposed: e.g. how many images a cache
        of proposals served. Not recorded in run.json (it may differ when a run is resumed)."""
        return None


class Scorer(Component, ABC):
    """Scores every phrase of an image against every candidate.

    Contract: ``prepare`` is pure (it may run in any process, in any order, and its result
    may be pickled to another process); ``score`` gets one image's request at a time and
    returns one row of logits per phrase. A scorer is never called from two threads at once.
    """

    #: False for scorers that look only at boxes (baselines): no image is decoded for them.
    uses_views: ClassVar[bool] = True

    @property
    def on_gpu(self) -> bool:
        """True when the model runs on a GPU. Such a scorer is only used in the process that built
        it (CUDA does not survive a fork), never in a forked worker."""
        return False

    def use_prompter(self, prompter: Prompter | None) -> None:
        """Called once when a method is built with this scorer and ``prompter`` (e.g. to take its
        text template), before any image is prepared."""

    def check_prompter(self, prompter: Prompter | None) -> list[RefbenchError]:
        """Problems with using ``prompter`` (None: the method names none) with this scorer, found when
        a run is built. By default a scorer that looks at views needs a prompter."""
        if self.uses_views and prompter is None:
            return [RefbenchError(f"scorer {type(self).__name__} looks at views and needs a prompter",
                                  "add e.g. prompter: {plugin: green_shade}")]
        return []

    def prepare(self, image: Image.Image, boxes: Sequence[Box], prompter: Prompter | None) -> Any:
        """Turn an image and boxes into this scorer's input (default: the prompter's views)."""
        if prompter is None:
            raise RefbenchError(f"scorer {type(self).__name__} needs a prompter", "add prompter: {plugin: NAME}")
        return prompter.render(image, boxes)

    def prepare_many(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]],
                     prompter: Prompter | None) -> list[Any]:
        """:meth:`prepare` of several images (``boxes[k]`` on ``images[k]``), one result per image, each
        what :meth:`prepare` returns for it. The runner prepares a chunk's images with one call per
        group of them (at most ``refbench.run.prepare.PREPARE_PIXELS`` decoded pixels), so a
        scorer may share work across them (the clip scorer draws its exact views' windows in one
        batch). By default, image by image."""
        return [self.prepare(image, b, prompter) for image, b in zip(images, boxes)]

    @abstractmethod
    def score(self, request: ScoreRequest) -> np.ndarray:
        """Logits ``[len(request.refs), len(request.boxes)]``; larger is better."""


class EmbeddingScorer(Scorer, ABC):
    """A two-tower scorer: logits factor into per-view and per-phrase features.

    Implementing it lets the runner encode the views of many images in one batch and each
    distinct phrase once. The contract:

    - ``prepare(image, boxes, prompter)`` -> one image's views, a batch of ``len(boxes)``
      rows; ``prepare_texts(texts)`` -> one image's phrases, ``len(texts)`` rows. Both are
      pure and picklable (they may run in worker processes).
    - ``concat`` / ``concat_texts`` join such batches in order; the result must support
      ``len()`` and row slicing (``batch[a:b]``), since the runner cuts encoder batches across
      images and joins slices with ``concat``. Tensors are a natural fit;
      :func:`refbench.join_tensors` joins tensors so they cross processes without a copy.
    - ``encode_views(batch)`` -> one feature row per view; ``encode_texts(batch)`` -> one per
      phrase; ``logits(text_features, view_features)`` -> ``[n_texts, n_views]`` numpy.
      Feature rows must be sliceable and joinable with ``torch.cat`` (tensors).
    - An encoder call's output depends only on its own rows (no batch statistics), so a
      view's features do not depend on which batch it travelled in.
    """

    @property
    def pin_memory(self) -> bool:
        """True when view batches should reach :meth:`to_device` in pinned memory (GPU scorers)."""
        return False

    @abstractmethod
    def encode_views(self, views: Any) -> Any:
        """Features of a batch of prepared views (``concat`` output or a slice of it)."""

    def prepare_texts(self, texts: Sequence[str]) -> Any:
        """Turn one image's phrases into encoder input (e.g. token ids)."""
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
        """Move a batch of prepared views to where the model runs (e.g. asynchronously to a GPU)."""
        return views

    @abstractmethod
    def concat(self, prepared: Sequence[Any]) -> Any:
        """Join several images' prepared views into one batch for :meth:`encode_views`."""

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

    def combine_for(self, request: ScoreRequest, logits: Sequence[np.ndarray]) -> np.ndarray:
        """What the runner calls: :meth:`combine`, with the image's phrases and candidate boxes at hand
        for combinators that reason about them (e.g. spatial relations between candidates)."""
        return self.combine(logits)


class Grounder(Component, ABC):
    """Predicts one box per phrase directly (a detector, a VLM, a predictions file), instead of
    choosing among proposals. The protocol judges its box against the truth under the run's
    conventions; upper bound and chance do not apply to it."""

    #: False for grounders that never look at the image (e.g. predictions read from a file).
    uses_image: ClassVar[bool] = True

    def expect(self, items: Sequence[ImageItem], known: set[int] | None = None) -> list[RefbenchError]:
        """Called once before a run (and by ``refbench validate``) with every selected image, and the
        sent_ids the data set knows (``Dataset.known_sent_ids``; more than the items hold when a
        limit or an exclusion applies): the place to check predictions, all problems at once."""
        return []

    @property
    def on_gpu(self) -> bool:
        """True when the model runs on a GPU: the grounder is then only used in the process that
        built it (CUDA does not survive a fork), never in a forked worker."""
        return False

    @abstractmethod
    def ground(self, image: Image.Image | None, item: ImageItem) -> Sequence[Box | Answer | None]:
        """One answer per phrase of ``item.refs``, in order: a box (xywh pixels of the original
        image), an :class:`Answer` (a box or None, with the model's raw text), or None where there is
        no answer (scored as a miss). ``image`` is None unless :attr:`uses_image`."""

    def ground_batch(self, images: Sequence[Image.Image | None],
                     items: Sequence[ImageItem]) -> list[Sequence[Box | Answer | None]]:
        """:meth:`ground` for several images at once: what the runner calls, with the consecutive
        images it has ready (``images[i]`` is ``items[i]``'s). A model-backed grounder overrides it to
        batch across images and their phrases by its own batch size; the answers must not depend on
        which images share a call. The default grounds one image at a time."""
        return [self.ground(image, item) for image, item in zip(images, items)]

    def report(self) -> str | None:
        """A line for the end of a run from this process's grounder (e.g. how many answers a cache
        served), or None. The runner itself counts the answers scored as misses by their
        :class:`Answer` ``problem`` (``no_answer`` for a None), over the whole journal: a grounder
        need not count them."""
        return None
