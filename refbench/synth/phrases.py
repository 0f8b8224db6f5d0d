"""Phrases: which phrase types single out an object, the sentences that state them, and refs.

A phrase is stated only when its fact holds with ``SAFETY`` to spare, so a re-check of the
written annotations with these thresholds (strict or not) always agrees with the generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .spec import PHRASE_TYPES, SHAPES, SIZE_NAMES, SynthSpec

# Phrase rules, as fractions of the canvas.
MID_MARGIN = 0.10  # location: centres at least this far from the middle line
NEAR = 0.28  # relation: anchor within this distance of the target ...
FAR = 0.45  # ... and at least this far from every look-alike of the target
SAFETY = 0.01  # margin every stated fact holds by (canvas fraction, or IoU for detections)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "attribute": ("{c} {s}", "the {c} {s}", "a {c} {s}", "the only {c} {s}", "{c} {s} shape", "the {c} {s} shape"),
    "location": ("{side} {c} {s}", "the {side} {c} {s}", "{c} {s} {where}", "the {c} {s} {where}",
                 "{c} {s} in the {side} half"),
    "superlative": ("{w} {c} {s}", "the {w} {c} {s}", "{c} {s} that is the {w}"),
    "relation": ("{c} {s} next to the {ac} {ash}", "the {c} {s} next to the {ac} {ash}", "{c} {s} by the {ac} {ash}",
                 "{c} {s} near the {ac} {ash}", "the {c} {s} near the {ac} {ash}", "{c} {s} beside the {ac} {ash}"),
}
_WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
SUPERLATIVE_WORDS = {"big": ("biggest", "largest"), "small": ("smallest", "tiniest")}
# The fewest distinct sentences any (phrase type, target) offers: one location axis.
MAX_SENTENCES = len(TEMPLATES["location"])

# The phrase types each variant states; synthref+ is the RefCOCO+ analogue, without location words.
ALLOWED = {"synthref": frozenset(PHRASE_TYPES), "synthref+": frozenset(("attribute", "superlative"))}


def phrase_options(anns: Sequence[Mapping[str, Any]], i: int, canvas: int) -> dict[str, list[Any]]:
    """The phrase types that single out ``anns[i]`` among ``anns``, with their free parameters.

    Works on annotation dicts (``category_id``, ``colour``, ``size``, ``bbox``), so a data
    set can be re-checked from its ``instances.json``. Returns a subset of
    ``{"attribute": [None], "location": ["left"|"right"|"top"|"bottom", ...],
    "superlative": ["big"|"small"], "relation": [anchor indices]}``; empty if none applies.
    """
    def kind(a: Mapping[str, Any]) -> tuple[str, int]:
        return a["colour"], a["category_id"]

    def centre(a: Mapping[str, Any]) -> tuple[float, float]:
        x, y, w, h = a["bbox"]
        return x + w / 2, y + h / 2

    target = anns[i]
    same = [a for j, a in enumerate(anns) if j != i and kind(a) == kind(target)]
    if not same:
        return {"attribute": [None]}
    options: dict[str, list[Any]] = {}

    mid, margin = canvas / 2, (MID_MARGIN + SAFETY) * canvas
    sides = []
    for axis, (low_word, high_word) in enumerate((("left", "right"), ("top", "bottom"))):
        t = centre(target)[axis] - mid
        others = [centre(a)[axis] - mid for a in same]
        if abs(t) >= margin and all(abs(o) >= margin and o * t < 0 for o in others):
            sides.append(low_word if t < 0 else high_word)
    if sides:
        options["location"] = sides

    rank = SIZE_NAMES.index(target["size"])
    other_ranks = [SIZE_NAMES.index(a["size"]) for a in same]
    if all(rank > r for r in other_ranks):
        options["superlative"] = ["big"]
    elif all(rank < r for r in other_ranks):
        options["superlative"] = ["small"]

    kinds = [kind(a) for a in anns]
    near, far = (NEAR - SAFETY) * canvas, (FAR + SAFETY) * canvas
    anchors = [j for j, a in enumerate(anns)
               if kinds.count(kind(a)) == 1 and math.dist(centre(a), centre(target)) <= near
               and all(math.dist(centre(a), centre(o)) >= far for o in same)]
    if anchors:
        options["relation"] = anchors
    return options


def choose_phrases(rng: np.random.Generator, anns: list[dict[str, Any]], options: list[dict[str, list[Any]]],
                   targets: list[int], allowed: frozenset[str],
                   spec: SynthSpec) -> list[tuple[int, list[tuple[str, str]]]]:
    """One ref per describable target: a phrase type drawn uniformly among the valid ones,
    then ``spec.sentences_per_ref`` distinct sentences of it, as ``(target, [(type, text)])``."""
    out = []
    for i in targets:
        valid = [t for t in PHRASE_TYPES if t in options[i] and t in allowed]
        if not valid:
            continue
        phrase_type = valid[int(rng.integers(len(valid)))]
        candidates = sentences(anns, i, phrase_type, options[i][phrase_type])
        k = min(int(rng.integers(spec.sentences_per_ref[0], spec.sentences_per_ref[1] + 1)), len(candidates))
        out.append((i, [(phrase_type, candidates[j]) for j in sorted(rng.permutation(len(candidates))[:k])]))
    return out


def sentences(anns: Sequence[Mapping[str, Any]], i: int, phrase_type: str, params: Sequence[Any]) -> list[str]:
    """Every distinct sentence of ``phrase_type`` about ``anns[i]``, in a fixed order.

    ``params`` are the phrase type's free parameters as :func:`phrase_options` gives them.
    """
    c, s = anns[i]["colour"], SHAPES[anns[i]["category_id"] - 1]
    templates = TEMPLATES[phrase_type]
    if phrase_type == "attribute":
        return [t.format(c=c, s=s) for t in templates]
    if phrase_type == "location":
        return [t.format(c=c, s=s, side=side, where=_WHERE[side]) for side in params for t in templates]
    if phrase_type == "superlative":
        return [t.format(c=c, s=s, w=w) for w in SUPERLATIVE_WORDS[params[0]] for t in templates]
    return [t.format(c=c, s=s, ac=anns[j]["colour"], ash=SHAPES[anns[j]["category_id"] - 1])
            for j in params for t in templates]


def ref_dict(ref_id: int, first_sent_id: int, image_id: int, ann_id: int, category_id: int, split: str,
             sents: list[tuple[str, str]]) -> dict[str, Any]:
    """A ref in RefCOCO's layout (its keys, in its order) plus each sentence's ``phrase_type``."""
    records = [{"tokens": text.split(), "raw": text, "sent_id": first_sent_id + k, "sent": text,
                "phrase_type": phrase_type} for k, (phrase_type, text) in enumerate(sents)]
    return {"sent_ids": [x["sent_id"] for x in records], "file_name": f"synthref_{image_id:012d}_{ann_id}.jpg",
            "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split,
            "sentences": records, "category_id": category_id}
