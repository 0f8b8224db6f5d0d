"""Totals of prediction records: accuracy and the field's other metrics, per method and group.

Groups: every phrase; per split; per phrase type; per truth-box size (Ref-L4's buckets on
sqrt(w * h) in pixels: small < 128, medium <= 256, large above); per phrase length in words
(1-3, 4-6, 7+). Metrics, in percent: accuracy under the run's rule, the upper bound, chance,
ACC@0.5/0.75/0.9 and mAcc over IoU 0.50:0.05:0.95 (under the run's IoU convention and
comparison), centre-in-box accuracy, and mean IoU (a fraction). With an uncertainty setting,
each group's accuracy also gets a 95% interval (:mod:`refbench.stats`). A grounder's answers
that had no usable box are counted by the reason their record gives (``misses``, e.g.
``{"unparsable": 3}``), so the count covers every process and session that wrote the journal.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

from .protocol import CHANCE_DIGITS, IOU_DIGITS, THRESHOLDS

SIZE_BUCKETS = (("small", 128.0), ("medium", 256.0), ("large", math.inf))  # upper bounds (inclusive) on sqrt(w * h)
LENGTH_BUCKETS = (("1-3", 3), ("4-6", 6), ("7+", math.inf))  # upper bounds (inclusive) on the word count
GROUPS = {"split": "splits", "type": "phrase_types", "size": "sizes", "length": "lengths"}  # group -> key in the metrics
AT = {"0.5": THRESHOLDS.index(0.5) + 1, "0.75": THRESHOLDS.index(0.75) + 1, "0.9": THRESHOLDS.index(0.9) + 1}


def size_bucket(truth: list[float]) -> str:
    side = math.sqrt(max(truth[2], 0.0) * max(truth[3], 0.0))
    return next(name for name, bound in SIZE_BUCKETS if side <= bound)


def length_bucket(text: str) -> str:
    words = len(text.split())
    return next(name for name, bound in LENGTH_BUCKETS if words <= bound)


class Tally:
    """Counts and sums of one group of records. ``chance`` and ``iou`` are recorded rounded to
    ``CHANCE_DIGITS`` and ``IOU_DIGITS`` decimals, so they are summed as integers in those units:
    exact, so the totals do not depend on the order the records come in (workers interleave
    them, a resumed run appends the rest later)."""

    __slots__ = ("n", "hits", "selected", "oracle", "chance", "iou", "graded", "passes", "at", "centre")

    def __init__(self) -> None:
        self.n = self.hits = self.selected = self.oracle = self.chance = self.iou = 0  # selected: records with an upper bound
        self.graded = self.passes = self.centre = 0  # over records that carry ``passes`` and ``centre_in``
        self.at = dict.fromkeys(AT, 0)

    def add(self, r: dict[str, Any]) -> None:
        self.n += 1
        self.hits += bool(r["hit"])
        if r["oracle"] is not None:  # a grounder's records have no upper bound or chance
            self.selected += 1
            self.oracle += bool(r["oracle"])
            self.chance += round(r["chance"] * 10**CHANCE_DIGITS)
        self.iou += round(r["iou"] * 10**IOU_DIGITS)
        passes = r.get("passes")
        if passes is not None:
            self.graded += 1
            self.passes += passes
            self.centre += bool(r["centre_in"])
            for name, needed in AT.items():
                self.at[name] += passes >= needed

    def totals(self) -> dict[str, Any]:
        n = max(self.n, 1)
        selected = self.selected == self.n
        out = {"n": self.n, "accuracy": 100.0 * self.hits / n, "upper_bound": 100.0 * self.oracle / n if selected else None,
               "chance": 100.0 * self.chance / 10**CHANCE_DIGITS / n if selected else None,
               "mean_iou": self.iou / 10**IOU_DIGITS / n}
        if self.graded == self.n:  # records written before these fields existed leave them out
            out.update({"acc_at": {k: 100.0 * v / n for k, v in self.at.items()},
                        "macc": 100.0 * self.passes / len(THRESHOLDS) / n, "centre_accuracy": 100.0 * self.centre / n})
        return out


def summarize(records: Iterable[dict[str, Any]], uncertainty: Any = None) -> dict[str, dict[str, Any]]:
    """Metrics per method: overall and per group (see the module docstring). Streams: memory grows
    with the number of groups and images, not records. ``uncertainty`` (a
    :class:`refbench.config.UncertaintyConfig`) adds ``ci95`` to every accuracy."""
    tallies: dict[str, dict[tuple[str, str], Tally]] = defaultdict(lambda: defaultdict(Tally))
    per_image: dict[str, dict[tuple[str, str], dict[int, list[int]]]] = defaultdict(lambda: defaultdict(dict))
    untruthed: set[str] = set()  # methods with records written before records carried the truth box
    misses: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # method -> problem -> records
    for r in records:
        keys = [("all", ""), ("split", r["split"])]
        if r["phrase_type"]:
            keys.append(("type", r["phrase_type"]))
        if "truth" in r:
            keys += [("size", size_bucket(r["truth"])), ("length", length_bucket(r["text"]))]
        else:
            untruthed.add(r["method"])
        t, images = tallies[r["method"]], per_image[r["method"]]
        if problem := r.get("problem"):
            misses[r["method"]][problem] += 1
        for key in keys:
            t[key].add(r)
            if uncertainty is not None:
                counts = images[key].setdefault((r["split"], r["image_id"]), [0, 0])
                counts[0] += 1
                counts[1] += bool(r["hit"])
    out = {}
    for method, t in tallies.items():
        if method in untruthed:  # buckets over part of the records would mislead: leave them out
            t = {key: tally for key, tally in t.items() if key[0] not in ("size", "length")}
            per_image[method] = {key: v for key, v in per_image[method].items() if key[0] not in ("size", "length")}
        totals = {key: tally.totals() for key, tally in t.items()}
        if uncertainty is not None:
            from .stats import accuracy_intervals  # numpy and scipy only when intervals are asked for

            for key, ci in accuracy_intervals(per_image[method], uncertainty).items():
                totals[key]["ci95"] = ci
        out[method] = {**totals[("all", "")],
                       **{name: {k: v for (g, k), v in sorted(totals.items(), key=_order) if g == group} for group, name in GROUPS.items()}}
        if misses.get(method):
            out[method]["misses"] = dict(sorted(misses[method].items()))
    return out


def _order(item: tuple[tuple[str, str], Any]) -> tuple[str, int, str]:
    """Groups sorted by name, buckets in their own order (small, medium, large)."""
    (group, key), _ = item
    buckets = {"size": [b for b, _ in SIZE_BUCKETS], "length": [b for b, _ in LENGTH_BUCKETS]}.get(group, [])
    return group, buckets.index(key) if key in buckets else 0, key
