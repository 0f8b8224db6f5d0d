"""``refbench compare A B``: two methods on the phrases both evaluated, with a paired test.

A and B are ``RUN:METHOD``; B may be a bare ``METHOD`` of A's run. RUN is a run id or any part
of one that names a single completed run (e.g. the hash ``7c119f`` the leaderboard shows).
Runs on different data keys or under different protocol rules are never compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import RefbenchError
from .journal import Journal
from .results import JOURNAL, Store, read_record
from .stats import Comparison, compare


@dataclass
class Side:
    run_id: str
    method: str
    record: dict[str, Any]
    hits: dict[int, tuple[tuple[str, int], bool]]  # sent_id -> ((split, image_id), hit)

    @property
    def label(self) -> str:
        return f"{self.run_id}:{self.method}"


def find_run(store: Store, name: str) -> dict[str, Any]:
    """The completed run whose id is ``name``, or the only one whose id contains it."""
    runs = []
    for run_dir in store.run_dirs():
        if name == run_dir.name:
            runs = [run_dir]
            break
        if name in run_dir.name:
            runs.append(run_dir)
    if not runs:
        raise RefbenchError(f"no run {name!r} under {store.root}", "`refbench leaderboard` shows run ids (the hash is enough)")
    if len(runs) > 1:
        raise RefbenchError(f"{name!r} names {len(runs)} runs ({', '.join(r.name for r in runs[:3])}...)",
                            "give more of the run id")
    record = read_record(runs[0])
    if record.get("status") != "complete":
        raise RefbenchError(f"run {runs[0].name} is not complete", "finish it first: rerun its config")
    return record


def side(store: Store, spec: str, default_run: str | None = None) -> Side:
    run_name, _, method = spec.rpartition(":")
    run_name = run_name or default_run or ""
    if not run_name:
        raise RefbenchError(f"{spec!r} names no run", "write RUN:METHOD, e.g. 7c119f:ensemble")
    record = find_run(store, run_name)
    methods = list(record.get("metrics", {}))
    if method not in methods:
        raise RefbenchError(f"run {record['run_id']} has no method {method!r}", f"its methods: {', '.join(methods)}")
    hits = {int(r["sent_id"]): ((str(r["split"]), int(r["image_id"])), bool(r["hit"]))
            for r in Journal(store.root / record["run_id"] / JOURNAL).records() if r["method"] == method}
    return Side(record["run_id"], method, record, hits)


def compare_specs(store: Store, a: str, b: str, resamples: int = 2000, seed: int = 0) -> tuple[Side, Side, Comparison]:
    if resamples < 100:
        raise RefbenchError(f"--resamples {resamples} is too few for a 95% interval", "use 100 or more (default 2000)")
    first = side(store, a)
    second = side(store, b, default_run=first.run_id)
    if first.label == second.label:
        raise RefbenchError(f"{first.label} is compared with itself", "name two different methods")
    protocol = lambda r: {k: v for k, v in r["protocol"].items() if k not in ("choice", "unit", "centre_in_box")}  # noqa: E731
    for what, get in (("data", lambda r: r["dataset_key"]), ("protocol", protocol)):
        if get(first.record) != get(second.record):
            raise RefbenchError(f"{first.label} and {second.label} differ in {what} ({get(first.record)} vs {get(second.record)})",
                                "compare methods evaluated on the same data under the same rule")
    try:
        result = compare(first.hits, second.hits, resamples, seed)
    except ValueError:
        raise RefbenchError(f"{first.label} and {second.label} share no phrase", "compare runs of the same splits") from None
    return first, second, result


def render(first: Side, second: Side, c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"a": first.label, "b": second.label, "dataset_key": first.record["dataset_key"],
                           "rule": first.record["protocol"]["rule"], **c.as_dict()}, indent=1)
    sign = "+" if c.difference >= 0 else ""
    return "\n".join([
        f"A = {first.label}",
        f"B = {second.label}",
        f"data {first.record['dataset_key']}, {first.record['protocol']['rule']}",
        f"phrases both evaluated: {c.n} ({c.images} images)",
        f"accuracy: A {c.accuracy_a:.2f}, B {c.accuracy_b:.2f}",
        f"difference A - B: {sign}{c.difference:.2f} points, 95% interval [{c.difference_ci95[0]:.2f}, "
        f"{c.difference_ci95[1]:.2f}] (paired bootstrap over images, {c.resamples} resamples, seed {c.seed})",
        f"A right, B wrong: {c.only_a}; B right, A wrong: {c.only_b}; McNemar exact p = {c.mcnemar_p:.4g}",
    ])
