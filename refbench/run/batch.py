"""Stage 4: chunks of prepared images turned into logits, views encoded in fixed-size batches.

Chunks end at image boundaries, so their sizes vary; the encoders do not see that: views wait
(on the model's device) until a batch of exactly ``batch_size`` is there, and an image is
scored once all its views are encoded. Fixed shapes let the allocator reuse the same blocks,
so memory stays flat. Phrases are encoded per chunk (each distinct phrase once per process,
by the scorer's cache).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..boxes import Box
from ..errors import RefbenchError
from ..interfaces import EmbeddingScorer, ScoreRequest
from ..items import Answer
from .components import Method
from .prepare import Chunk, Prepared

# images with, per method, the logits [phrases, candidates] (None: no candidates), or a grounder's
# boxes [phrases, 4] (NaN rows: no answer) with a note per phrase (its raw text and problem, if any)
Grounded = tuple[np.ndarray, list[dict[str, str]]]
Scored = list[tuple[Prepared, dict[str, "np.ndarray | Grounded | None"]]]


class Scoring:
    """Feeds chunks in, hands scored images out, in order."""

    def __init__(self, methods: list[Method], batch_size: int) -> None:
        self.methods, self.batch_size = methods, batch_size
        self.by_id = {m.id: m for m in methods}
        self.embedding = [m for m in methods if isinstance(m.scorer, EmbeddingScorer)]
        self.queue: list[Prepared] = []  # images whose logits are not out yet, in order
        self.views: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # not yet encoded
        self.unencoded = 0  # views waiting in self.views (the same count for every method)
        self.features: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # encoded, not yet scored
        self.encoded = 0  # views with features in self.features
        self.texts: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # phrase features of queued images

    def _scorer(self, m: Method) -> EmbeddingScorer:
        assert isinstance(m.scorer, EmbeddingScorer)
        return m.scorer

    def feed(self, chunk: Chunk) -> Scored:
        """Take a chunk; return the images now complete, each with its logits per method."""
        live = [p for p in chunk.images if p.boxes]
        if live:
            for m in self.embedding:
                s = self._scorer(m)
                self.views[m.id].append(s.to_device(chunk.views[m.id]))
                self.texts[m.id].append(s.encode_texts(chunk.texts[m.id]))
            self.unencoded += sum(len(p.boxes) for p in live)  # counted without embedding methods too: images then complete per batch
        self.queue.extend(chunk.images)
        while self.unencoded >= self.batch_size:
            self._encode(self.batch_size)
        return self._complete()

    def finish(self) -> Scored:
        if self.unencoded:
            self._encode(self.unencoded)
        return self._complete()

    def _encode(self, n: int) -> None:
        """Encode the first ``n`` waiting views of every embedding method as one batch."""
        for m in self.embedding:
            s = self._scorer(m)
            self.features[m.id].append(s.encode_views(take(self.views[m.id], n, s.concat)))
        self.unencoded -= n
        self.encoded += n

    def _complete(self) -> Scored:
        """Score the leading images whose views are all encoded (one logits product per method)."""
        ready, views, texts = 0, 0, 0
        for p in self.queue:
            if views + len(p.boxes) > self.encoded:
                break
            ready, views, texts = ready + 1, views + len(p.boxes), texts + (len(p.item.refs) if p.boxes else 0)
        if not ready:
            return []
        images, self.queue = self.queue[:ready], self.queue[ready:]
        logits: dict[str, list[np.ndarray | None]] = {}
        view_features: dict[str, list[Any]] = {}  # per embedding method, each image's view features (for combinators)
        for m in self.methods:
            out: list[np.ndarray | None] = [None] * ready
            if m.id in self.features:
                if views:
                    features = take(self.features[m.id], views, torch.cat)
                    every = self._scorer(m).logits(take(self.texts[m.id], texts, torch.cat), features)
                    view_features[m.id] = [None] * ready
                    v = t = 0  # each image takes its block
                    for i, p in enumerate(images):
                        if p.boxes:
                            nv, nt = len(p.boxes), len(p.item.refs)
                            out[i] = every[t : t + nt, v : v + nv]
                            view_features[m.id][i] = features[v : v + nv]
                            v, t = v + nv, t + nt
            elif m.grounder is not None:  # every ready image in one call, so a model batches across them
                answers = m.grounder.ground_batch([p.views.get(m.id) for p in images], [p.item for p in images])
                if len(answers) != ready:
                    raise RefbenchError(f"method {m.id!r} answered {len(answers)} images of {ready}",
                                        "ground_batch returns one list of answers per image, in order")
                out = [grounded(a) for a in answers]  # type: ignore[misc]
            elif m.combinator is not None:
                for i, p in enumerate(images):
                    if p.boxes:
                        scorer = TextScorer(self.by_id, view_features, p, i)
                        out[i] = m.combinator.combine_for(
                            ScoreRequest(p.item, p.item.refs, p.boxes,
                                         score_texts=lambda texts, members=m.combinator.members, sc=scorer: [sc(x, texts) for x in members]),
                            [logits[x][i] for x in m.combinator.members])
            elif m.scorer is not None:
                for i, p in enumerate(images):
                    if p.boxes:
                        out[i] = m.scorer.score(ScoreRequest(p.item, p.item.refs, p.boxes, p.views.get(m.id)))
            logits[m.id] = out
        self.encoded -= views
        return [(p, {k: v[i] for k, v in logits.items()}) for i, p in enumerate(images)]


class TextScorer:
    """A method's logits for other texts against one image's candidates: what a combinator's
    ``request.score_texts`` asks for (e.g. a relation's subject and object phrases). An embedding
    method reuses the image's view features; a per-image scorer scores again; a combinator combines
    its members' logits for the texts."""

    def __init__(self, methods: dict[str, Method], view_features: dict[str, list[Any]], prepared: Prepared, index: int) -> None:
        self.methods, self.view_features, self.p, self.i = methods, view_features, prepared, index

    def __call__(self, method_id: str, texts: Sequence[str]) -> np.ndarray:
        m, p = self.methods[method_id], self.p
        refs = tuple(replace(p.item.refs[0], text=t) for t in texts)  # the texts, as phrases of this image
        if isinstance(m.scorer, EmbeddingScorer):
            s = m.scorer
            return np.asarray(s.logits(s.encode_texts(s.prepare_texts(list(texts))), self.view_features[method_id][self.i]))
        if m.scorer is not None:
            return np.asarray(m.scorer.score(ScoreRequest(p.item, refs, p.boxes, p.views.get(method_id))))
        assert m.combinator is not None
        request = ScoreRequest(p.item, refs, p.boxes, score_texts=lambda more: [self(x, more) for x in m.combinator.members])
        return np.asarray(m.combinator.combine_for(request, [self(x, texts) for x in m.combinator.members]))


NO_ANSWER = "no_answer"  # the problem of a miss whose grounder gave None, or an Answer without a box or a reason


def grounded(answers: Sequence[Box | Answer | None]) -> Grounded:
    """A grounder's answers for one image as boxes ``[phrases, 4]`` (NaN rows: no answer) and a note
    per phrase: the raw text and the problem an :class:`Answer` carries (empty for a plain box); a
    miss without a stated problem is ``no_answer``, so every miss is counted by some reason."""
    rows, notes = [], []
    for a in answers:
        box = a.box if isinstance(a, Answer) else a
        rows.append(box.xywh if box is not None else (np.nan,) * 4)
        note = {k: v for k, v in (("raw", a.raw), ("problem", a.problem)) if v is not None} if isinstance(a, Answer) else {}
        if box is None and "problem" not in note:
            note["problem"] = NO_ANSWER
        notes.append(note)
    return np.array(rows, dtype=np.float64).reshape(-1, 4), notes


def take(parts: list[Any], n: int, join: Callable[[list[Any]], Any]) -> Any:
    """The first ``n`` rows of ``parts`` joined (sliceable batches: tensors, lists), removed from ``parts``."""
    taken, rows = 0, []
    while taken < n:
        part = parts[0]
        k = min(len(part), n - taken)
        rows.append(part[:k])
        taken += k
        if k == len(part):
            parts.pop(0)
        else:
            parts[0] = part[k:]
    return rows[0] if len(rows) == 1 else join(rows)
