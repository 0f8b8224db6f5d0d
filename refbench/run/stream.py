"""Stages 3-5 wired together: images in, images with their logits out, as soon as they are scored."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

from ..boxes import Box
from ..errors import RefbenchError
from ..interfaces import ImageItem
from . import transfer
from .batch import Scored, Scoring
from .components import Method
from .place import Placement
from .prepare import Chunk, Chunks, Prepared, chunk_stream, loader


def score_chunks(chunks: Iterable[Chunk], methods: list[Method], batch_size: int) -> Iterator[Scored]:
    scoring = Scoring(methods, batch_size)
    for chunk in chunks:
        if chunk.error is not None:
            raise chunk.error
        scored = scoring.feed(chunk)
        if scored:
            yield scored
    scored = scoring.finish()
    if scored:
        yield scored


class Shards(torch.utils.data.IterableDataset):
    """Scoring in workers: each worker scores the chunks of its share with its own copy of the
    models and sends back each image's position in ``chunks.items`` with its logits (or the error
    that stopped it, as a value)."""

    def __init__(self, chunks: Chunks, methods: list[Method], batch_size: int) -> None:
        self.chunks, self.methods, self.batch_size = chunks, methods, batch_size

    def __iter__(self) -> Iterator[list[tuple[int, dict[str, Any]]] | RefbenchError]:
        if torch.utils.data.get_worker_info() is not None:
            transfer.share(False)  # a scoring worker keeps its batches: no shared memory
        positions = iter(self.chunks.share())  # every image of the share comes out once, in order
        try:
            with torch.inference_mode():
                for scored in score_chunks(iter(self.chunks), self.methods, self.batch_size):
                    # only each image's position and logits cross back: the main process holds the items
                    # and their boxes, and unpickling them again would cost it time the workers need
                    back = []
                    for p, logits in scored:
                        i = next(positions)
                        assert self.chunks.items[i] is p.item  # the share's images, in order
                        back.append((i, logits))
                    yield back
        except RefbenchError as exc:
            yield exc


def score_stream(items: list[ImageItem], boxes: dict[int, list[Box]], methods: list[Method], batch_size: int,
                 place: Placement) -> Iterator[Scored]:
    """Images with their logits, as soon as they are scored; preparation overlaps scoring."""
    if place.scoring_in_workers and items:
        shards = Shards(Chunks(items, boxes, [m for m in methods if m.uses_image], batch_size), methods, batch_size)
        for scored in loader(shards, min(place.workers, len(items))):
            if isinstance(scored, RefbenchError):
                raise scored
            yield [(Prepared(items[i], boxes[items[i].image_id]), logits) for i, logits in scored]
        return
    with torch.inference_mode():
        yield from score_chunks(chunk_stream(items, boxes, methods, batch_size, place.workers), methods, batch_size)
