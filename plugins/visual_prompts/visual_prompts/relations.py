"""ReCLIP's spatial-relation resolver as a combinator over any scorer (``reclip_relations``).

A phrase is parsed by rules (no model) into a subject, superlatives and relations to object
phrases; relations between candidate boxes follow ReCLIP's definitions (allenai/reclip
``interpreter.py``: centres and areas compared strictly, ``within`` as the fraction of a box
inside the other; keywords from ``heuristics.py``), and they are combined with the member's
per-candidate probabilities as ReCLIP's ``methods/parse.py`` does:

- entity = P(subject); each relation multiplies it by ``rel @ P(object)`` (then normalised);
- each superlative ``s`` gives ``p'[i] = p[i] * sum_j p[j] s[i, j]`` (then normalised);
- the answer is ``P(phrase) * entity``, normalised, returned as log-probabilities.

The member's logits score only the whole phrase, so P(subject) is approximated by P(phrase)
(softened by ``temperature``) and P(object) by a text-free prior (``object: uniform``, or
``object: phrase``: the subject's probabilities with its own box left out), refined by the
object's own superlatives. :func:`resolve` also takes ``score_text``, the probabilities of any
text over the candidates, and then scores subjects and objects separately as ReCLIP does; the
combinator passes it when the runner offers its member's scores for other texts
(``request.score_texts``; option ``sub_phrases``). Two additions to
ReCLIP's keywords: ``bottom``/``lower``/``upper`` as superlatives, and a ``near`` relation
(``next to``, ``near``, ``beside``, ``by``, ``close to``), which ReCLIP reads as a plain text
expansion: ``exp(-d / (near_scale * diagonal))`` of the centres' distance ``d``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import Field

from refbench import Box, Combinator, Options, ScoreRequest, as_array

# superlative / location word -> the ReCLIP relation whose soft count ranks candidates
SUPERLATIVES: dict[str, str] = {
    **dict.fromkeys(("left", "leftmost", "west", "western"), "left"),
    **dict.fromkeys(("right", "rightmost", "east", "eastern"), "right"),
    **dict.fromkeys(("above", "north", "top", "topmost", "upper", "highest"), "above"),
    **dict.fromkeys(("below", "south", "underneath", "front", "bottom", "bottommost", "lower", "lowest"), "below"),
    **dict.fromkeys(("bigger", "biggest", "larger", "largest", "closer", "closest", "nearest"), "bigger"),
    **dict.fromkeys(("smaller", "smallest", "tinier", "tiniest", "further", "furthest"), "smaller"),
}
# relation phrases, longest first; each names its ReCLIP relation (``near`` is this module's)
RELATIONS: tuple[tuple[tuple[str, ...], str], ...] = tuple(sorted((
    (("to", "the", "left", "of"), "left"), (("on", "the", "left", "of"), "left"), (("left", "of"), "left"),
    (("to", "the", "right", "of"), "right"), (("on", "the", "right", "of"), "right"), (("right", "of"), "right"),
    (("above",), "above"), (("over",), "above"), (("on", "top", "of"), "above"), (("behind",), "above"),
    (("below",), "below"), (("under",), "below"), (("beneath",), "below"), (("underneath",), "below"),
    (("in", "front", "of"), "below"),
    (("bigger", "than"), "bigger"), (("larger", "than"), "bigger"), (("smaller", "than"), "smaller"),
    (("inside",), "within"), (("within",), "within"), (("contained", "in"), "within"),
    (("next", "to"), "near"), (("close", "to"), "near"), (("near",), "near"), (("beside",), "near"),
    (("by",), "near"), (("nearby",), "near"),
), key=lambda r: -len(r[0])))
# words that name the picture, not an object: "on the left side", "in the left half" stay superlatives
NULL_WORDS = frozenset(("part", "image", "side", "picture", "half", "region", "section", "photo", "corner"))
FILLER = frozenset(("the", "a", "an", "that", "is", "which", "who", "on", "in", "at", "of", "one", "most", "very",
                    "far", "to", "and", "this", "its", "shape", "only"))


@dataclass(frozen=True)
class Parsed:
    """A phrase's structure: the subject's words, its superlatives (relation names, in order) and its
    relations as ``(relation name, object phrase)``."""

    subject: str
    superlatives: tuple[str, ...] = ()
    relations: tuple[tuple[str, "Parsed"], ...] = field(default=())


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _names_object(words: Sequence[str]) -> bool:
    """True when ``words`` hold a content word other than location, superlative and picture words."""
    return any(w not in FILLER and w not in NULL_WORDS and w not in SUPERLATIVES for w in words)


def _noun_phrase(words: Sequence[str]) -> Parsed:
    sups = tuple(dict.fromkeys(SUPERLATIVES[w] for w in words if w in SUPERLATIVES))
    subject = [w for w in words if w not in SUPERLATIVES and w not in FILLER and w not in NULL_WORDS]
    return Parsed(" ".join(subject), sups)


def parse(text: str) -> Parsed:
    """Split a phrase at its first relation phrase whose object names an object ("cup above the
    plate" -> subject "cup", relation above "plate"); location and superlative words elsewhere are
    the subject's superlatives ("man on the left", "the biggest red circle", "leftmost zebra")."""
    words = _words(text)
    for i in range(len(words)):
        for pattern, name in RELATIONS:
            if tuple(words[i:i + len(pattern)]) == pattern and i > 0:
                rest = words[i + len(pattern):]
                if _names_object(rest) and _names_object(words[:i]):
                    head = _noun_phrase(words[:i])
                    obj = parse(" ".join(rest))
                    return Parsed(head.subject, head.superlatives, ((name, obj),))
    return _noun_phrase(words)


# ------------------------------------------------------------------ relations between boxes


def relation_matrix(name: str, boxes: Sequence[Box], near_scale: float = 0.25,
                    diagonal: float | None = None) -> np.ndarray:
    """``[N, N]``: how far ``boxes[i]`` stands in relation ``name`` to ``boxes[j]``.

    ReCLIP's definitions: left/right/above/below compare box centres strictly, bigger/smaller
    compare areas strictly (1 or 0; 0 on the diagonal), within is the fraction of box i's area
    inside box j. ``near``: ``exp(-d / (near_scale * diagonal))`` of the centres' distance, 0 on the
    diagonal (``diagonal``: the image's, default the boxes' hull's)."""
    b = as_array(boxes)
    cx, cy, area = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2, b[:, 2] * b[:, 3]
    if name == "left":
        return (cx[:, None] < cx[None, :]).astype(float)
    if name == "right":
        return (cx[:, None] > cx[None, :]).astype(float)
    if name == "above":
        return (cy[:, None] < cy[None, :]).astype(float)
    if name == "below":
        return (cy[:, None] > cy[None, :]).astype(float)
    if name == "bigger":
        return (area[:, None] > area[None, :]).astype(float)
    if name == "smaller":
        return (area[:, None] < area[None, :]).astype(float)
    if name == "within":
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
        iw = np.clip(np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]), 0, None)
        ih = np.clip(np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]), 0, None)
        return iw * ih / np.maximum(area[:, None], 1e-12)
    if name == "near":
        if diagonal is None:
            diagonal = float(np.hypot(np.ptp(b[:, 0]) + b[:, 2].max(), np.ptp(b[:, 1]) + b[:, 3].max())) if len(b) else 1.0
        d = np.hypot(cx[:, None] - cx[None, :], cy[:, None] - cy[None, :])
        out = np.exp(-d / max(near_scale * diagonal, 1e-12))
        np.fill_diagonal(out, 0.0)
        return out
    raise ValueError(f"unknown relation {name!r}")


def _normalise(p: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    total = p.sum()
    return p / total if total > 0 and np.isfinite(total) else fallback


def apply_superlative(p: np.ndarray, sup: np.ndarray) -> np.ndarray:
    """ReCLIP's superlative: ``p'[i] = p[i] * sum_j p[j] sup[i, j]``, normalised (``p`` when all vanish)."""
    return _normalise(p * (sup @ p), p)


def resolve(parsed: Parsed, probs: np.ndarray, boxes: Sequence[Box], *, object_prior: str = "uniform",
            near_scale: float = 0.25, diagonal: float | None = None, subject: np.ndarray | None = None,
            baseline_threshold: float = float("inf"),
            score_text: Callable[[str], np.ndarray] | None = None) -> np.ndarray:
    """Probabilities over ``boxes`` for a parsed phrase whose whole-phrase probabilities are ``probs``.

    ``subject``: the subject's probabilities (default ``probs``). ``score_text``: when given, the
    probabilities of any text over ``boxes`` (ReCLIP's separate noun-phrase scoring); it then gives
    every subject's and object's probabilities and ``subject``/``object_prior`` are unused. As
    ReCLIP's ``baseline_threshold``, relations and superlatives apply only while the top subject
    probability is under that many times the second."""
    n = len(boxes)
    probs = _normalise(np.asarray(probs, dtype=np.float64), np.full(n, 1.0 / max(n, 1)))
    subject = probs if subject is None else _normalise(np.asarray(subject, dtype=np.float64), probs)
    if score_text is not None and parsed.subject:
        subject = _normalise(np.asarray(score_text(parsed.subject), dtype=np.float64), probs)
    if n < 2:
        return probs
    m1, m2 = np.sort(subject)[-2:][::-1]
    if not m1 < baseline_threshold * m2:
        return probs
    mats: dict[str, np.ndarray] = {}

    def rel(name: str) -> np.ndarray:
        if name not in mats:
            mats[name] = relation_matrix(name, boxes, near_scale, diagonal)
        return mats[name]

    def object_probs(obj: Parsed) -> np.ndarray:
        if score_text is not None and obj.subject:
            return _normalise(np.asarray(score_text(obj.subject), dtype=np.float64), np.full(n, 1.0 / n))
        return np.full(n, 1.0 / n) if object_prior == "uniform" else subject

    def entity(node: Parsed, subject_probs: np.ndarray) -> np.ndarray:
        p = subject_probs
        for name, obj in node.relations:
            po = entity(obj, object_probs(obj))
            r = rel(name)
            if object_prior == "phrase" or score_text is not None:
                r = r * (1.0 - np.eye(n))
            p = _normalise(p * (r @ po), p)
        for name in node.superlatives:
            p = apply_superlative(p, rel(name))
        return p

    return _normalise(probs * entity(parsed, subject), probs)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class ReclipRelations(Combinator):
    """ReCLIP's relation and superlative resolver on one member method's logits (see the module)."""

    class Options(Options):
        of: list[str] = Field(min_length=1, max_length=1, description="the one member method (a scorer's logits)")
        object: Literal["uniform", "phrase"] = Field("uniform", description="prior for a relation's object")
        near_scale: float = Field(0.25, gt=0, description="distance scale of `near`, a fraction of the image diagonal")
        temperature: float = Field(1.0, gt=0, description="the subject's and object's probabilities are the softmax "
                                   "of the member's logits / temperature (> 1: spread like a noun-only score)")
        baseline_threshold: float = Field(float("inf"), gt=0, description="resolve only while the top subject "
                                          "probability is under this many times the second (ReCLIP's option)")
        floor: float = Field(1e-12, gt=0, lt=1, description="probabilities are clipped to this before the log")
        sub_phrases: bool = Field(True, description="score the subject and object phrases themselves when the runner "
                                  "offers it (request.score_texts), as ReCLIP does; else the whole phrase stands in")

    @property
    def members(self) -> list[str]:
        return list(self.options.of)

    def combine(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        """Without the phrases and boxes nothing can be resolved: the member's log-probabilities."""
        return np.log(np.clip(_softmax(np.asarray(logits[0], dtype=np.float64)), self.options.floor, None))

    def combine_for(self, request: ScoreRequest, logits: Sequence[np.ndarray]) -> np.ndarray:
        x = np.asarray(logits[0], dtype=np.float64)
        if x.shape[-1] == 0:
            return x
        probs = _softmax(x)
        diagonal = float(np.hypot(request.item.width, request.item.height)) or None
        o = self.options
        subject = _softmax(x / o.temperature)
        member_logits = request.score_texts if o.sub_phrases else None

        def score_text(text: str) -> np.ndarray:  # the member's probabilities for a sub-phrase, as ReCLIP scores it
            assert member_logits is not None
            return _softmax(np.asarray(member_logits([text])[0], dtype=np.float64)[0] / o.temperature)

        out = np.stack([resolve(parse(ref.text), probs[k], request.boxes, object_prior=o.object, near_scale=o.near_scale,
                                diagonal=diagonal, subject=subject[k], baseline_threshold=o.baseline_threshold,
                                score_text=score_text if member_logits is not None else None)
                        for k, ref in enumerate(request.refs)]) if len(request.refs) else probs
        return np.log(np.clip(out, self.options.floor, None))
