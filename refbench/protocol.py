"""The evaluation protocol: which box a method picks, whether it is a hit, and the totals.

Per phrase: the candidate with the largest logit (ties: the first) is chosen; it is a hit
when ``IoU(chosen, truth) {>|>=} threshold`` under the chosen IoU convention. The oracle
(upper bound) is a hit when any candidate would be, and ``chance`` is the fraction of
candidates that would be: the expected accuracy of a uniformly random pick.
"""

from __future__ import annotations

from typing import Any, Sequence

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
        "centre_in_box": "the chosen box's centre lies in the truth box (edges included)",
    }


# IoU thresholds 0.50, 0.55, ..., 0.95 (Ref-L4's mAcc). A record's ``passes`` counts those its
# chosen box clears under the run's comparison: ACC@0.75 is ``passes >= 6``.
THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def hits(ious: np.ndarray, protocol: ProtocolConfig, threshold: float | Sequence[float] | None = None) -> np.ndarray:
    """Whether each IoU counts as a hit at ``threshold`` (default: the protocol's) under its comparison."""
    t = protocol.iou if threshold is None else np.asarray(threshold)
    return ious > t if protocol.comparison == ">" else ious >= t


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
            out[k] = [_record(item, r, method, None, [], 0.0, 0.0, False, False, 0.0, 0, 0, False) for r in refs]
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
    picked, picked_iou = candidates[rows, chosen], ious[rows, chosen]
    passes = hits(picked_iou[:, None], protocol, THRESHOLDS).sum(axis=1)  # thresholds are ascending: a count says which
    centre = picked[:, :2] + picked[:, 2:] / 2
    centre_in = ((centre >= truth[:, :2]) & (centre <= truth[:, :2] + truth[:, 2:])).all(axis=1)
    columns = zip(chosen.tolist(), picked.tolist(), scores[rows, chosen].tolist(), picked_iou.tolist(),
                  good[rows, chosen].tolist(), good.any(axis=1).tolist(), (good.sum(axis=1) / per_row).tolist(),
                  passes.tolist(), centre_in.tolist())
    for k in live:  # zip stops at the end of refs without taking from columns: each image takes its rows
        item, refs, boxes, _ = cases[k]
        out[k] = [_record(item, ref, method, c, box, score, iou_, hit, oracle, chance, len(boxes), npass, inside)
                  for ref, (c, box, score, iou_, hit, oracle, chance, npass, inside) in zip(refs, columns)]
    return out


def judge_grounded(cases: Sequence[tuple[ImageItem, np.ndarray, Sequence[dict[str, Any]]]], protocol: ProtocolConfig,
                   method: str) -> list[list[dict[str, Any]]]:
    """Records of a grounder's boxes (``[phrases, 4]`` xywh per image; NaN rows: no answer, a miss),
    each with its phrase's note (the model's raw text and why there is no box, when known). Upper
    bound and chance do not apply: they are None in its records."""
    truth, pred = [], []
    for item, boxes, _ in cases:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(item.refs):
            raise RefbenchError(f"method {method!r} returned {len(boxes)} boxes for the {len(item.refs)} phrases of image "
                                f"{item.image_id}", "a grounder returns one box (or None) per phrase")
        truth += [r.box.xywh for r in item.refs]
        pred.append(boxes)
    if not truth:
        return [[] for _ in cases]
    t, p = np.asarray(truth, dtype=np.float64), np.concatenate(pred)
    answered = np.isfinite(p).all(axis=1)
    p = np.where(answered[:, None], p, 0.0)
    ious = np.where(answered, iou(t, p, protocol.iou_convention), 0.0)
    good = hits(ious, protocol) & answered
    passes = hits(ious[:, None], protocol, THRESHOLDS).sum(axis=1) * answered
    centre = p[:, :2] + p[:, 2:] / 2
    centre_in = ((centre >= t[:, :2]) & (centre <= t[:, :2] + t[:, 2:])).all(axis=1) & answered
    columns = iter(zip(p.tolist(), answered.tolist(), ious.tolist(), good.tolist(), passes.tolist(), centre_in.tolist()))
    return [[{**_record(item, ref, method, None, box if ok else [], None, iou_, hit, None, None, 0, npass, inside), **note}
             for ref, note, (box, ok, iou_, hit, npass, inside) in zip(item.refs, notes, columns)] for item, _, notes in cases]


IOU_DIGITS, CHANCE_DIGITS = 5, 6  # decimals kept in a record (and summed exactly by _Tally)


def _record(item: ImageItem, ref: Ref, method: str, chosen: int | None, box: list[float], score: float | None, iou: float,
            hit: bool, oracle: bool | None, chance: float | None, n: int, passes: int, centre_in: bool) -> dict[str, Any]:
    return {
        "method": method, "sent_id": ref.sent_id, "ref_id": ref.ref_id, "image_id": item.image_id,
        "split": ref.split, "phrase_type": ref.phrase_type, "text": ref.text, "truth": [round(v, 2) for v in ref.box.xywh],
        "chosen": chosen, "box": [round(v, 2) for v in box], "score": None if score is None else round(score, 5),
        "iou": round(iou, IOU_DIGITS), "hit": hit, "oracle": oracle,
        "chance": None if chance is None else round(chance, CHANCE_DIGITS), "candidates": n,
        "passes": passes, "centre_in": centre_in,
    }
