"""Stage 7: a run from start to completion: build, propose, resume or create, stream, complete."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..config import BenchmarkConfig, ProtocolConfig, RunnerConfig
from ..errors import RefbenchError
from ..interfaces import ImageItem, Proposer
from ..metrics import summarize
from ..protocol import conventions
from ..journal import Journal
from ..results import Run, Store, new_record
from . import lifecycle, merge
from .components import Bench, Method, build
from .distributed import run_ranked
from .place import Placement, placement
from .proposals import Proposals, candidates, propose_for
from .record import Recorder, judge_images
from .stream import score_stream
from .world import World

ProgressFn = Callable[[int, int, int], None]  # images done, images total, phrases written
Announce = Callable[[str], None]


def evaluate(items: list[ImageItem], proposer: Proposer | None, methods: list[Method], protocol: ProtocolConfig | None = None,
             runner: RunnerConfig | None = None, invalid: Literal["error", "drop"] = "error") -> dict[str, Any]:
    """Metrics of ``methods`` on ``items`` under ``protocol`` (default: the benchmark default), with
    ``runner``'s batching and placement, without a results folder: what a training loop's
    validation calls. ``invalid`` is ``proposer.invalid``; ``proposer`` may be None when every
    method is a grounder."""
    protocol, runner = protocol or ProtocolConfig(), runner or RunnerConfig()
    proposals = candidates(items, proposer, methods, invalid, protocol.empty_proposals)
    place = placement(runner, methods)
    grounders = frozenset(m.id for m in methods if m.grounder is not None)
    return summarize(r for scored in score_stream(items, proposals.boxes, methods, runner.batch_size, place)
                     for r in judge_images(scored, protocol, set(), grounders))


def run_benchmark(config: BenchmarkConfig, store: Store, config_path: Path | None = None, resume: str | None = None,
                  fresh: bool = False, progress: ProgressFn | None = None, announce: Announce = lambda s: None) -> Run:
    """Run (or resume) a benchmark and return the completed run.

    ``resume``: a run id to continue; otherwise the newest interrupted run of the same config is
    continued unless ``fresh``.
    """
    world = World.detect()  # under torchrun: one rank of several
    if world is not None:
        world.prepare()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    bench = build(config)
    items = list(bench.dataset)[: config.runner.limit]
    proposals = propose_for(bench, items)  # every problem with the data and predictions before any run folder exists
    record = new_record(benchmark=config.name, dataset_key=bench.dataset.key(), config=config.model_dump(mode="json"),
                        config_sha256=config.digest(), config_path=config_path, seed=config.seed,
                        protocol=conventions(config.protocol), components=bench.components,
                        methods={m.id: m.describe() for m in bench.methods},
                        data={"dataset": bench.dataset.describe(),
                              "proposer": bench.proposer.describe() if bench.proposer is not None else None})
    if world is not None:
        def stream(todo: list[ImageItem], journal: Journal, done: set[tuple[str, int]], place: Placement, total: int) -> dict[str, Any]:
            return _stream(bench, todo, proposals, journal, done, place, progress, total)

        return run_ranked(world, bench, items, proposals, record, store,
                          lambda: _open(config, store, record, resume, fresh, announce), stream,
                          announce if world.main else lambda s: None)
    run = _open(config, store, record, resume, fresh, announce)
    try:
        return _execute(bench, items, proposals, run, progress, announce)
    finally:
        run.close()


def _open(config: BenchmarkConfig, store: Store, record: dict[str, Any], resume: str | None, fresh: bool,
          announce: Announce) -> Run:
    """The run to continue (``resume``, or the newest interrupted one of this config) or a new one."""
    if resume is not None:
        run = store.open(resume)
        problem = None
        if run.record.get("config_sha256") != config.digest():
            problem = RefbenchError(f"run {resume} was made with a different config", "resume it with the config it was started with")
        elif changed := _changed_inputs(run.record, record):
            problem = RefbenchError(f"the {changed} changed since run {resume} started", "start a fresh run with --new")
        if problem:
            run.close()
            raise problem
        return run
    if not fresh:
        for candidate in store.unfinished(config.digest()):
            changed = _changed_inputs(candidate.record, record)
            if not changed:
                return candidate
            announce(f"not resuming run {candidate.id}: its {changed} changed since it started")
            candidate.close()
    return store.create(config.name, record)


def _changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Which recorded inputs (data files, weights) differ between a run's record and now."""
    def weights(rec: dict[str, Any]) -> dict[str, Any]:
        return {m: {k: v for k, v in d.items() if k != "device"} for m, d in rec.get("methods", {}).items()}

    if old.get("data") != new["data"]:
        return "data or proposals"
    if weights(old) != weights(new):
        return "model weights"
    return None


def _stream(bench: Bench, todo: list[ImageItem], proposals: Proposals, journal: Journal, done: set[tuple[str, int]],
            place: Placement, progress: ProgressFn | None, total: int) -> dict[str, Any]:
    """Score ``todo`` (of ``total`` images) and append its predictions not in ``done`` to ``journal``,
    synced; returns the images, views and predictions written, and the wall time."""
    start = time.perf_counter()
    counts = {"images": total - len(todo), "views": 0, "written": 0}

    def counted(images: int, views: int, written: int) -> None:
        counts["images"] += images
        counts["views"] += views
        counts["written"] += written
        if progress:
            progress(counts["images"], total, counts["written"])

    counted(0, 0, 0)
    recorder = Recorder(journal, bench.config.protocol, done, background=place.workers > 0 and not place.scoring_in_workers,
                        counted=counted, grounders=frozenset(m.id for m in bench.methods if m.grounder is not None))
    try:
        for scored in score_stream(todo, proposals.boxes, bench.methods, bench.config.runner.batch_size, place):
            recorder.put(scored)
    finally:
        recorder.close()
    journal.sync()
    return {**counts, "wall_s": round(time.perf_counter() - start, 3)}


def _execute(bench: Bench, items: list[ImageItem], proposals: Proposals, run: Run, progress: ProgressFn | None,
             announce: Announce) -> Run:
    if merge.rank_files(run.dir):  # a distributed run continued by one process: its journals become one
        merged = merge.merge(run.dir, repair=True)
        merge.drop_rank_files(run.dir)
        announce(f"run {run.id}: merged {merged['journals']} journals of its torchrun ranks into {run.journal.path.name}")
    repair, done = run.journal.repair()
    lifecycle.resumed(run, done, {run.journal.path.name: repair}, announce)
    todo = lifecycle.remaining(bench, items, done)
    place = placement(bench.config.runner, bench.methods)
    session = lifecycle.begin(bench, run, proposals, kept=len(done), images=len(todo), placement=place.describe(len(todo)),
                              repairs={run.journal.path.name: repair})
    counts = _stream(bench, todo, proposals, run.journal, done, place, progress, len(items))
    wall = counts["wall_s"]
    lifecycle.finish(bench, run, session, items, proposals, lifecycle.reports(bench), announce,
                     wall_s=wall, written=counts["written"], views=counts["views"],
                     images_per_s=round(len(todo) / wall, 2) if wall > 0 else None)
    return run
