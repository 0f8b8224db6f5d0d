"""Stage 3: images made ready for the models, in background worker processes.

A worker decodes an image, has each method's scorer prepare its views and phrases, and joins
consecutive images of its share into chunks: for each embedding method one batch of views and
one of phrases, so a chunk crosses to the main process as a few large tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from ..boxes import Box
from ..errors import RefbenchError
from ..interfaces import EmbeddingScorer, ImageItem
from .components import Method


def load_image(item: ImageItem) -> Image.Image:
    """The item's image as RGB; a missing, unreadable or wrongly sized file is a :class:`RefbenchError`."""
    try:
        with Image.open(item.path) as im:
            image = im.convert("RGB")
    except FileNotFoundError:
        raise RefbenchError(f"image {item.image_id} not found: {item.path}",
                            "check dataset.images points at the folder holding the data set's images") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"image {item.image_id} is unreadable: {item.path} ({exc})", "the file is damaged; restore it") from None
    if image.size != (item.width, item.height):
        raise RefbenchError(f"image {item.path} is {image.width}x{image.height} but the annotations say {item.width}x{item.height}",
                            "the image folder does not match the annotations")
    return image


@dataclass
class Prepared:
    """One image ready for the models: its candidates, and the input of scorers that score one
    image at a time (embedding scorers' inputs travel batched in the :class:`Chunk`)."""

    item: ImageItem
    boxes: list[Box]
    views: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """Consecutive images of one worker's share (at most ``batch_size`` views, or phrases of images
    without candidates, or one image's): the unit handed from a worker to the main process; or the
    error that stopped the worker."""

    images: list[Prepared]
    views: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)
    error: RefbenchError | None = None


def prepare(item: ImageItem, boxes: list[Box], image_methods: Sequence[Method]) -> Prepared:
    """The image's input for each method that looks at it: a scorer's prepared views and phrases
    (when there are candidates, by :meth:`~refbench.Scorer.prepare`), the decoded image for a grounder."""
    return _prepare_group([item], {item.image_id: boxes}, image_methods, together=False)[0]


def seal(images: list[Prepared], view_methods: Sequence[Method]) -> Chunk:
    """Join the images' inputs of every embedding method into one batch each."""
    chunk = Chunk(images)
    live = [p for p in images if p.boxes]
    for m in view_methods:
        if isinstance(m.scorer, EmbeddingScorer) and live:
            chunk.views[m.id] = m.scorer.concat([p.views.pop(m.id) for p in live])
            chunk.texts[m.id] = m.scorer.concat_texts([p.texts.pop(m.id) for p in live])
    return chunk


#: At most this many decoded pixels (12 MiB of RGB) are prepared together: a chunk of many large
#: images is prepared in several groups, so a worker holds about as much as this at once
PREPARE_PIXELS = 1 << 22


def prepare_many(items: Sequence[ImageItem], boxes: dict[int, list[Box]], image_methods: Sequence[Method]) -> list[Prepared]:
    """:func:`prepare` of several images, each scorer's views of a group of them made by one
    :meth:`~refbench.Scorer.prepare_many` call (a scorer may share work across images); groups of
    at most :data:`PREPARE_PIXELS` pixels (or one image)."""
    out: list[Prepared] = []
    group: list[ImageItem] = []
    pixels = 0
    for item in items:
        if group and pixels + item.width * item.height > PREPARE_PIXELS:
            out += _prepare_group(group, boxes, image_methods)
            group, pixels = [], 0
        group.append(item)
        pixels += item.width * item.height
    return out + (_prepare_group(group, boxes, image_methods) if group else [])


def _prepare_group(items: Sequence[ImageItem], boxes: dict[int, list[Box]], image_methods: Sequence[Method],
                   together: bool = True) -> list[Prepared]:
    """One group of :func:`prepare_many`: each scorer's views by one ``prepare_many`` call, or with
    ``together`` False by ``prepare``, image by image."""
    ps = [Prepared(item, boxes[item.image_id]) for item in items]
    images: dict[int, Image.Image] = {}

    def image(k: int) -> Image.Image:
        if k not in images:
            images[k] = load_image(ps[k].item)
        return images[k]

    for k, p in enumerate(ps):  # decoded in order, so the first bad image is the one named
        if p.boxes or any(m.grounder is not None for m in image_methods):
            image(k)
    for m in image_methods:
        if m.grounder is not None:
            for k, p in enumerate(ps):
                p.views[m.id] = image(k)
            continue
        assert m.scorer is not None
        live = [k for k, p in enumerate(ps) if p.boxes]
        if together:
            made = m.scorer.prepare_many([image(k) for k in live], [ps[k].boxes for k in live], m.prompter)
        else:
            made = [m.scorer.prepare(image(k), ps[k].boxes, m.prompter) for k in live]
        for k, views in zip(live, made):
            ps[k].views[m.id] = views
            if isinstance(m.scorer, EmbeddingScorer):
                ps[k].texts[m.id] = m.scorer.prepare_texts([r.text for r in ps[k].item.refs])
    return ps


def chunk_of(items: Sequence[ImageItem], boxes: dict[int, list[Box]], view_methods: Sequence[Method]) -> list[Chunk]:
    """The chunk of ``items``; where one fails, the images before it as one chunk (they are scored)
    and the error, as preparing them one at a time gives them."""
    try:
        return [seal(prepare_many(items, boxes, view_methods), view_methods)]
    except RefbenchError:
        done: list[Prepared] = []
        for item in items:
            try:
                done.append(prepare(item, boxes[item.image_id], view_methods))
            except RefbenchError as first:  # travels to the main process as a value, message intact
                return ([seal(done, view_methods)] if done else []) + [Chunk([], error=first)]
        return [seal(done, view_methods)]  # only the joint preparation failed: the images one at a time stand


def build_chunks(items: Iterable[ImageItem], boxes: dict[int, list[Box]], view_methods: Sequence[Method],
                 batch_size: int) -> Iterator[Chunk]:
    """Prepare images in order and group them so each chunk holds at most ``batch_size`` views (phrases,
    for an image without candidates), or one image: a grounder's run journals chunk by chunk too. A
    chunk's images are prepared together (:func:`prepare_many`); after an error, nothing more."""
    group: list[ImageItem] = []
    n = 0
    for item in items:
        weight = len(boxes[item.image_id]) or len(item.refs)  # an image without candidates (a grounder's) counts its phrases
        if group and n + weight > batch_size:
            chunks = chunk_of(group, boxes, view_methods)
            yield from chunks
            if chunks[-1].error is not None:
                return
            group, n = [], 0
        group.append(item)
        n += weight
    if group:
        yield from chunk_of(group, boxes, view_methods)


class Chunks(torch.utils.data.IterableDataset):
    """The chunks of ``items``; in a DataLoader worker, of its share (every ``num_workers``-th image)."""

    def __init__(self, items: list[ImageItem], boxes: dict[int, list[Box]], view_methods: list[Method], batch_size: int) -> None:
        self.items, self.boxes, self.view_methods, self.batch_size = items, boxes, view_methods, batch_size

    def share(self) -> range:
        """The positions in ``items`` of this process's share, in the order its chunks hold them."""
        info = torch.utils.data.get_worker_info()
        return range(len(self.items)) if info is None else range(info.id, len(self.items), info.num_workers)

    def __iter__(self) -> Iterator[Chunk]:
        return build_chunks([self.items[i] for i in self.share()], self.boxes, self.view_methods, self.batch_size)


def single(x: Any) -> Any:
    return x


def one_thread(_: int) -> None:
    """A forked worker computes on one thread: OpenMP's pool does not survive a fork, and a BLAS
    pool per worker (numpy's, e.g. for a scorer's matrix products) would oversubscribe the CPUs."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


def loader(source: torch.utils.data.IterableDataset, workers: int, pin: bool = False) -> torch.utils.data.DataLoader:
    """``source`` read by ``workers`` forked processes, at most two items per worker waiting."""
    return torch.utils.data.DataLoader(source, batch_size=None, num_workers=workers, collate_fn=single,
                                       worker_init_fn=one_thread, prefetch_factor=2, pin_memory=pin)


def chunk_stream(items: list[ImageItem], boxes: dict[int, list[Box]], methods: list[Method], batch_size: int,
                 workers: int) -> Iterable[Chunk]:
    """Chunks prepared in ``workers`` background processes (in this one when 0). Memory stays flat
    however large the data set: at most two chunks per worker wait."""
    view_methods = [m for m in methods if m.uses_image]
    source = Chunks(items, boxes, view_methods, batch_size)
    if workers == 0 or not items:
        return iter(source)
    pin = any(isinstance(m.scorer, EmbeddingScorer) and m.scorer.pin_memory for m in view_methods)
    return loader(source, min(workers, len(items)), pin)
