"""One benchmark across the ranks of ``torchrun``: sharding, agreement, per-rank journals, the merge.

``torchrun --nproc-per-node N -m refbench run CONFIG`` starts N processes with ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` and ``MASTER_ADDR`` set; each detects them here and joins one
``torch.distributed`` group (NCCL when its models are on CUDA, else gloo). Only small control
messages cross ranks: the config's fingerprint, the run id, counts. Each rank scores every
world-th image of the image-sorted list of images not yet done, and appends its predictions to its own journal,
``predictions.rank<k>.jsonl``, in the run folder, which every rank must see (a shared
filesystem). Rank 0 alone looks up, locks and records the run; it merges every journal into
``predictions.jsonl`` (each (method, sent_id) once, the expected set exactly, written
atomically), completes the run, and only then deletes the rank journals. A rerun after a
death anywhere, the merge included, reads every journal in the folder as done.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import RefbenchError
from ..interfaces import ImageItem
from ..journal import Journal
from ..results import RUN_FILE, Run, Store, read_record
from . import lifecycle, merge
from .place import placement
from .world import World

if TYPE_CHECKING:
    from .components import Bench
    from .proposals import Proposals


def fingerprint(digest: str, record: dict[str, Any]) -> tuple[str, str]:
    """What every rank must agree on: the config hash, and a hash of the data and weights it reads
    (the device a method runs on differs between ranks, so it is left out)."""
    weights = {m: {k: v for k, v in d.items() if k != "device"} for m, d in record.get("methods", {}).items()}
    inputs = json.dumps({"data": record["data"], "weights": weights}, sort_keys=True, default=str)
    return digest, hashlib.sha256(inputs.encode()).hexdigest()


def agreement(prints: Sequence[tuple[str, str]]) -> RefbenchError | None:
    """The one error every rank raises when the ranks' fingerprints differ, else None."""
    for what, i in (("config", 0), ("data or model weights", 1)):
        values = [p[i] for p in prints]
        if len(set(values)) > 1:
            odd = [r for r, v in enumerate(values) if v != values[0]]
            return RefbenchError(f"torchrun ranks disagree on the {what}: rank 0 has {values[0][:12]}, rank"
                                 f"{'s' * (len(odd) > 1)} {', '.join(map(str, odd))} {values[odd[0]][:12]}",
                                 "launch every rank with the same config, data and checkpoints")
    return None


Stream = Callable[[list[ImageItem], Journal, "set[tuple[Any, Any]]", Any, int], dict[str, Any]]  # todo, journal, done, placement, images


def run_ranked(world: World, bench: Bench, items: list[ImageItem], proposals: Proposals, record: dict[str, Any], store: Store,
               open_run: Callable[[], Run], stream: Stream, announce: Callable[[str], None]) -> Run:
    """This rank's part of one benchmark; every rank returns the completed run."""
    world.join(cuda=any(m.on_gpu for m in bench.methods))
    try:
        problem = agreement(world.gather(fingerprint(bench.config.digest(), record)))
        if problem is not None:  # before any run folder is opened: nothing to merge
            raise problem
        run: Run | None = None
        message: Any = None
        if world.main:
            try:
                run = open_run()
                message = run.id
            except RefbenchError as exc:
                message = (exc.problem, exc.fix)
        message = world.broadcast(message)
        if isinstance(message, (tuple, list)):
            raise RefbenchError(*message)
        try:
            return _ranked(world, bench, items, proposals, store.root / message, run, stream, announce)
        finally:
            if run is not None:
                run.close()
    finally:
        world.leave()


def _ranked(world: World, bench: Bench, items: list[ImageItem], proposals: Proposals, run_dir: Path, run: Run | None,
            stream: Stream, announce: Callable[[str], None]) -> Run:
    config = bench.config
    blind = [r for r, sees in enumerate(world.gather((run_dir / RUN_FILE).is_file())) if not sees]
    if blind:
        raise RefbenchError(f"rank{'s' * (len(blind) > 1)} {', '.join(map(str, blind))} cannot see the run folder {run_dir}",
                            "put --results on a filesystem that every rank's machine mounts at the same path")
    repairs = merge.repair_all(run_dir) if run is not None else {}
    world.barrier()  # every journal repaired before any rank reads or appends
    done = merge.done_pairs(run_dir)
    world.barrier()  # every rank has read the same journals before any rank appends
    todo = world.shard(lifecycle.remaining(bench, items, done))  # what remains, so a rerun is balanced too
    place = placement(config.runner, bench.methods)
    plans = world.gather({"images": len(todo), **place.describe(len(todo))})
    session: dict[str, Any] = {}
    if run is not None:
        lifecycle.resumed(run, done, repairs, announce)
        session = lifecycle.begin(bench, run, proposals, kept=len(done), images=sum(p["images"] for p in plans),
                                  placement={"ranks": world.size, "per_rank": plans}, repairs=repairs)
    start = time.perf_counter()
    counts = stream(todo, Journal(merge.rank_journal(run_dir, world.rank)), done, place, len(todo))
    per_rank = world.gather(counts)  # every rank's journal synced
    reports = world.gather(lifecycle.reports(bench))  # each rank's grounders and proposer saw only its images
    if run is not None:
        scored = time.perf_counter()
        merged = merge.merge(run_dir, {(m.id, r.sent_id) for it in items for r in it.refs for m in bench.methods})
        wall, images = time.perf_counter() - start, sum(p["images"] for p in plans)
        lines = [(f"{who} (rank {rank})", line) for rank, lines in enumerate(reports) for who, line in lines]
        lifecycle.finish(bench, run, session, items, proposals, lines, announce,
                         wall_s=round(wall, 3), written=sum(c["written"] for c in per_rank),
                         views=sum(c["views"] for c in per_rank), images_per_s=round(images / wall, 2) if wall > 0 else None,
                         rank_wall_s=[c["wall_s"] for c in per_rank], merge_s=round(time.perf_counter() - scored, 3),
                         merge={k: v for k, v in merged.items() if k != "predictions"})
        merge.drop_rank_files(run_dir)  # only now that run.json says complete
    world.barrier()
    return run if run is not None else Run(run_dir, read_record(run_dir))
