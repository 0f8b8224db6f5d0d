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

if TYPE_CHECKING:
    import torch

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


class Prompter(Component, ABC):
    """Turns an image and its candidate boxes into one view per box (the visual prompt).

    ``render`` is the reference path. A prompter whose views keep the image's size may also
    offer :meth:`render_resized`, which a scorer uses to draw on an image already resized to
    the model's input (``views: resized`` in the clip scorer). Both run in worker processes,
    one call at a time per process. A prompter may also offer :meth:`render_tensor`, the same
    views drawn with torch ops on a batch of images already on the model's device (``views:
    device`` in the clip scorer); it runs in the process that holds the model.
    """

    #: True when :meth:`render_resized` is implemented.
    renders_resized: ClassVar[bool] = False
    #: True when :meth:`render_tensor` is implemented.
    renders_tensor: ClassVar[bool] = False
    #: When set, every view equals the image except within this many pixels (plus one, for rounding)
    #: of its box, clipped to the image (or at the image's pixel nearest a box outside it), and
    #: depends only on the image and its own box: a scorer may then recompute only there, and ask
    #: :meth:`render_windows` for some of the boxes only (the clip scorer's exact views do).
    #: None: views may differ anywhere.
    draws_within_box: ClassVar[int | None] = None

    #: True when the views are drawn from each candidate's mask (:attr:`Box.mask`): the runner then
    #: checks, before it starts, that every candidate has one, and names where masks come from if not.
    needs_masks: ClassVar[bool] = False

    #: Phrases are cut to this many characters before the template is applied (as the method's
    #: original code fed its tokeniser); None: whole phrases.
    phrase_chars: ClassVar[int | None] = None

    #: The text template of the method this prompt comes from (``{}`` is the phrase), e.g.
    #: ``"{} is in red color."``; a scorer that formats phrases applies it unless its own config sets one.
    template: ClassVar[str | None] = None

    @abstractmethod
    def render(self, image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
        """One view per box, in order. Must not modify ``image``."""

    def render_windows(self, image: Image.Image, boxes: Sequence[Box],
                       windows: Sequence[tuple[int, int, int, int]]) -> list[np.ndarray]:
        """Each view's pixels within ``windows[i] = (x0, y0, x1, y1)`` (half-open, non-empty, inside the
        image): ``[y1 - y0, x1 - x0, 3]`` uint8 RGB, what :meth:`render` draws there. A scorer that
        needs only part of each view asks for it. The default renders each view whole and cuts the
        window out; a prompter whose views keep the image's size may draw only the windows instead."""
        views = self.render(image, boxes)
        if any(v.size != image.size for v in views):
            raise RefbenchError(f"prompter {type(self).__name__} draws views of another size than the image, so it has no windows",
                                "draw views of the image's size, or leave draws_within_box unset")
        return [np.asarray(v.convert("RGB"))[y0:y1, x0:x1] for v, (x0, y0, x1, y1) in zip(views, windows)]

    def render_resized(self, image: np.ndarray, boxes: Sequence[Box], scale: float,
                       out: np.ndarray | None = None) -> np.ndarray:
        """Views drawn on an image already resized by ``scale`` (``H x W x 3`` uint8), boxes given in
        its pixels; returns ``[len(boxes), H, W, 3]`` uint8, written into ``out`` when given (any
        array of that shape, e.g. a transposed view of a channels-first batch). Sizes drawn in
        pixels (outlines) scale by ``scale``. Only when :attr:`renders_resized` is True."""
        raise RefbenchError(f"prompter {type(self).__name__} draws only on the full image",
                            "use the scorer's exact views (views: exact)")

    def render_tensor(self, images: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`render`'s views drawn with torch ops, batched over boxes and images, on the device
        the images are on (e.g. the model's GPU). Only when :attr:`renders_tensor` is True.

        ``images``: uint8 ``[B, 3, H, W]`` RGB (any strides; ``[3, H, W]`` is one image), all of one
        size. ``boxes``: ``[N, 4]`` xywh in those images' pixels, float64 (the coordinates a
        :class:`Box` holds), on the images' device. ``index``: ``[N]`` int64 on that device, the image
        each box is drawn on (None: every box on image 0). Returns ``[N, 3, H, W]`` uint8 on that
        device, ``views[i]`` the view of ``boxes[i]`` on ``images[index[i]]``: the pixels
        :meth:`render` draws for it (a prompter documents any difference). Must not modify ``images``.
        """
        raise RefbenchError(f"prompter {type(self).__name__} draws only with PIL and numpy (no tensor path)",
                            "use the scorer's exact views (views: exact)")


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
        """A line for the end of a run: e.g. how many answers were missing or unusable."""
        return None
