"""A distributed run's journals: one per rank in the run folder, merged into ``predictions.jsonl``.

Rank ``k`` appends to ``predictions.rank<k>.jsonl``. Before any rank reads or appends, rank 0
repairs every journal of the run; then each rank counts as done whatever any journal holds,
so a rerun after a death anywhere (the merge included), even with another world size or as
a single process, neither loses nor repeats a prediction. The merge writes each
(method, sent_id) once, atomically, and only when the set is exactly the benchmark's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from ..errors import RefbenchError
from ..files import atomic_path
from ..journal import Journal, JournalRepair, parse_line
from ..results import JOURNAL

RANK_GLOB = "predictions.rank*.jsonl"


def rank_journal(run_dir: Path, rank: int) -> Path:
    return run_dir / f"predictions.rank{rank}.jsonl"


def rank_files(run_dir: Path) -> list[Path]:
    """The per-rank journals in a run folder, by rank."""
    def rank(p: Path) -> int:
        digits = p.name[len("predictions.rank"):-len(".jsonl")]
        return int(digits) if digits.isdigit() else 1 << 30

    return sorted(run_dir.glob(RANK_GLOB), key=lambda p: (rank(p), p.name))


def journals(run_dir: Path) -> list[Path]:
    """Every journal of a run: the merged one first, then the ranks'."""
    merged = run_dir / JOURNAL
    return ([merged] if merged.exists() else []) + rank_files(run_dir)


def clear_strays(run_dir: Path) -> None:
    """Delete what a merge killed before its rename left behind (its temporary file)."""
    for stray in run_dir.glob(f".{JOURNAL}.*.tmp"):
        stray.unlink(missing_ok=True)


def repair_all(run_dir: Path) -> dict[str, JournalRepair]:
    """Rank 0, before any rank reads or appends: every journal of the run cut to whole, valid,
    distinct lines (see :meth:`Journal.repair`); what was taken out, by file name."""
    clear_strays(run_dir)
    repairs = {p.name: Journal(p).repair()[0] for p in journals(run_dir)}
    return {name: r for name, r in repairs.items() if r}


def done_pairs(run_dir: Path) -> set[tuple[Any, Any]]:
    """The (method, sent_id) pairs any journal of the run holds (read after :func:`repair_all`)."""
    done: set[tuple[Any, Any]] = set()
    for path in journals(run_dir):
        with path.open("rb") as f:
            for line in f:
                record = parse_line(line)
                if record is not None:
                    done.add((record["method"], record["sent_id"]))
    return done


def merge(run_dir: Path, expected: Iterable[tuple[Any, Any]] | None = None, repair: bool = False) -> dict[str, int]:
    """Every journal of the run into ``predictions.jsonl``, each (method, sent_id) once, replaced
    atomically. With ``expected``, the merged set must be exactly it, or nothing is replaced.
    ``repair`` repairs each journal first (when no :func:`repair_all` ran in this session)."""
    sources = journals(run_dir)
    if repair:
        clear_strays(run_dir)
        for path in sources:
            Journal(path).repair()
    seen: set[tuple[Any, Any]] = set()
    duplicates = 0
    with atomic_path(run_dir / JOURNAL) as tmp:
        with tmp.open("wb") as out:
            for path in sources:
                with path.open("rb") as f:
                    for number, line in enumerate(f, start=1):
                        record = parse_line(line)
                        if record is None or not line.endswith(b"\n"):
                            raise RefbenchError(f"{path}: line {number} is not a prediction record",
                                                "rerun the same command: the journals are repaired first")
                        key = (record["method"], record["sent_id"])
                        if key in seen:
                            duplicates += 1
                            continue
                        seen.add(key)
                        out.write(line)
        if expected is not None:
            want = set(expected)
            missing, extra = len(want - seen), len(seen - want)
            if missing or extra:
                raise RefbenchError(f"{run_dir.name}: merging {len(sources)} journals gives {missing} (method, phrase) "
                                    f"pairs missing and {extra} not in this benchmark",
                                    "the journals are inconsistent; start a fresh run with --new")
    return {"journals": len(sources), "predictions": len(seen), "duplicates_dropped": duplicates}


def drop_rank_files(run_dir: Path) -> None:
    """Delete the rank journals once ``predictions.jsonl`` holds them all."""
    for path in rank_files(run_dir):
        path.unlink(missing_ok=True)
