"""The evaluation protocol: which box a method picks, whether it is a hit, and the totals.

Per phrase: the candidate with the largest logit (ties: the first) is chosen; it is a hit
when ``IoU(chosen, truth) {>|>=} threshold`` under the chosen IoU convention. The oracle
(upper bound) is a hit when any candidate would be, and ``chance`` is the fraction of
candidates that would be: the expected accuracy of a uniformly random pick.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

from .boxes import as_array, iou
from .config import ProtocolConfig
from .errors import RefbenchError
from .interfaces import ImageItem, Ref


def conventions(protocol: ProtocolConfig) -> dict[str, Any]:
    """What every result records about how it was counted."""
    return {
        "rule": f"IoU(chosen, truth) {protocol.comparison} {protocol.iou}",
        **protocol.model_dump(),
        "choice": "argmax of logits over candidates, first on ties",
        "unit": "one phrase (RefCOCO sentence, keyed by sent_id)",
    }


def hits(ious: np.ndarray, protocol: ProtocolConfig) -> np.ndarray:
    return ious > protocol.iou if protocol.comparison == ">" else ious >= protocol.iou


def judge(item: ImageItem, refs: Sequence[Ref], boxes: np.ndarray, logits: np.ndarray | None,
          protocol: ProtocolConfig, method: str) -> list[dict[str, Any]]:
    """One prediction record per phrase. ``boxes`` is ``[V, 4]``; ``logits`` ``[T, V]``."""
    return judge_many([(item, refs, boxes, logits)], protocol, method)[0]


Case = tuple[ImageItem, Sequence[Ref], np.ndarray, "np.ndarray | None"]  # as judge's arguments


def judge_many(cases: Sequence[Case], protocol: ProtocolConfig, method: str) -> list[list[dict[str, Any]]]:
    """:func:`judge` for many images at once (one list of records per case).

    The phrases of all the images are judged together: candidates are padded to the
    largest image's count (padding is never chosen, never a hit), so the work is a few
    array operations per batch instead of per image.
    """
    out: list[list[dict[str, Any]]] = [[] for _ in cases]
    live, live_logits = [], []
    for k, (item, refs, boxes, logits) in enumerate(cases):
        n_refs, n_boxes = len(refs), len(boxes)
        if n_boxes == 0:
            if protocol.empty_proposals == "error":
                raise RefbenchError(f"image {item.image_id} ({item.path.name}) has no candidate boxes",
                                    "fix the proposals, or set protocol.empty_proposals: miss to count its phrases as misses")
            out[k] = [_record(item, r, method, None, [], 0.0, 0.0, False, False, 0.0, 0) for r in refs]
            continue
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != (n_refs, n_boxes):
            raise RefbenchError(f"method {method!r} returned logits of shape {logits.shape} for image {item.image_id}",
                                f"a scorer must return [phrases, candidates] = [{n_refs}, {n_boxes}]")
        if n_refs:
            live.append(k)
            live_logits.append(logits)
    if not live:
        return out
    counts = np.array([len(cases[k][2]) for k in live])
    phrases = np.array([len(cases[k][1]) for k in live])
    width = int(counts.max())
    per_row = np.repeat(counts, phrases)  # each phrase row's candidate count
    padding = np.arange(width) >= per_row[:, None]  # [phrases, width]: past the image's candidates
    scores = np.full((int(phrases.sum()), width), -np.inf)
    candidates = np.zeros((len(scores), width, 4))
    t = 0
    for k, logits in zip(live, live_logits):  # each phrase row gets its image's logits and boxes
        n_refs, n_boxes = logits.shape
        scores[t : t + n_refs, :n_boxes] = logits
        candidates[t : t + n_refs, :n_boxes] = np.asarray(cases[k][2], dtype=np.float64)
        t += n_refs
    finite = np.isfinite(scores) | padding
    if not finite.all():
        bad = live[int(np.searchsorted(np.cumsum(phrases), int(np.argmin(finite.all(axis=1))), side="right"))]
        raise RefbenchError(f"method {method!r} returned non-finite logits for image {cases[bad][0].image_id}",
                            "check the model's weights and precision (fp16 overflow?)")
    truth = as_array([r.box for k in live for r in cases[k][1]])
    ious = iou(truth[:, None, :], candidates, protocol.iou_convention)
    good = hits(ious, protocol) & ~padding
    chosen = scores.argmax(axis=1)  # padding is -inf: never chosen
    rows = np.arange(len(scores))
    # one conversion to Python values per column (not per phrase): judging runs on every phrase
    columns = zip(chosen.tolist(), candidates[rows, chosen].tolist(), scores[rows, chosen].tolist(), ious[rows, chosen].tolist(),
                  good[rows, chosen].tolist(), good.any(axis=1).tolist(), (good.sum(axis=1) / per_row).tolist())
    for k in live:  # zip stops at the end of refs without taking from columns: each image takes its rows
        item, refs, boxes, _ = cases[k]
        out[k] = [_record(item, ref, method, c, box, score, iou_, hit, oracle, chance, len(boxes))
                  for ref, (c, box, score, iou_, hit, oracle, chance) in zip(refs, columns)]
    return out


IOU_DIGITS, CHANCE_DIGITS = 5, 6  # decimals kept in a record (and summed exactly by _Tally)


def _record(item: ImageItem, ref: Ref, method: str, chosen: int | None, box: list[float], score: float,
            iou: float, hit: bool, oracle: bool, chance: float, n: int) -> dict[str, Any]:
    return {
        "method": method, "sent_id": ref.sent_id, "ref_id": ref.ref_id, "image_id": item.image_id,
        "split": ref.split, "phrase_type": ref.phrase_type, "text": ref.text,
        "chosen": chosen, "box": [round(v, 2) for v in box], "score": round(score, 5),
        "iou": round(iou, IOU_DIGITS), "hit": hit, "oracle": oracle, "chance": round(chance, CHANCE_DIGITS), "candidates": n,
    }


class _Tally:
    """Counts and sums of one group of records. ``chance`` and ``iou`` are recorded rounded to
    ``CHANCE_DIGITS`` and ``IOU_DIGITS`` decimals, so they are summed as integers in those units:
    exact, so the totals do not depend on the order the records come in (workers interleave
    them, a resumed run appends the rest later)."""

    __slots__ = ("n", "hits", "oracle", "chance", "iou")

    def __init__(self) -> None:
        self.n = self.hits = self.oracle = self.chance = self.iou = 0

    def add(self, r: dict[str, Any]) -> None:
        self.n += 1
        self.hits += bool(r["hit"])
        self.oracle += bool(r["oracle"])
        self.chance += round(r["chance"] * 10**CHANCE_DIGITS)
        self.iou += round(r["iou"] * 10**IOU_DIGITS)

    def totals(self) -> dict[str, Any]:
        n = max(self.n, 1)
        return {"n": self.n, "accuracy": 100.0 * self.hits / n, "upper_bound": 100.0 * self.oracle / n,
                "chance": 100.0 * self.chance / 10**CHANCE_DIGITS / n, "mean_iou": self.iou / 10**IOU_DIGITS / n}


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metrics per method (percentages): overall, per split, per phrase type.

    Streams: memory does not grow with the number of records.
    """
    tallies: dict[str, dict[tuple[str, str], _Tally]] = defaultdict(lambda: defaultdict(_Tally))
    for r in records:
        t = tallies[r["method"]]
        t[("all", "")].add(r)
        t[("split", r["split"])].add(r)
        if r["phrase_type"]:
            t[("type", r["phrase_type"])].add(r)
    out = {}
    for method, t in tallies.items():
        out[method] = {
            **t[("all", "")].totals(),
            "splits": {k: v.totals() for (g, k), v in sorted(t.items()) if g == "split"},
            "phrase_types": {k: v.totals() for (g, k), v in sorted(t.items()) if g == "type"},
        }
    return out
