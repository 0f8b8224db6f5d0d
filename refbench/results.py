"""The results store: one folder per run, append-only, written atomically.

``results/<run_id>/run.json``
    the run's record (schema :data:`SCHEMA_VERSION`): status, resolved config and its
    hash, git sha, package versions, seed, protocol conventions, data provenance,
    timings and, once complete, the metrics. Replaced atomically (temp file + rename).
``results/<run_id>/predictions.jsonl``
    the journal (:mod:`refbench.journal`): one JSON line per (method, phrase). After a
    crash, the run resumes from it.

A complete run is never written again, and a new run never reuses a folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .errors import RefbenchError
from .files import write_atomic
from .journal import Journal, JournalRepair
from .provenance import environment, git_revision, package_versions

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
JOURNAL = "predictions.jsonl"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(*, benchmark: str, dataset_key: str, config: dict[str, Any], config_sha256: str, config_path: Path | None,
               seed: int, protocol: dict[str, Any], components: list[dict[str, Any]], methods: dict[str, Any],
               data: dict[str, Any]) -> dict[str, Any]:
    """A new run's record (schema :data:`SCHEMA_VERSION`): what determines its results and where it ran."""
    packages = sorted({c["package"] for c in components if c["package"] != "?"})
    return {
        "schema": SCHEMA_VERSION, "status": "running", "benchmark": benchmark, "dataset_key": dataset_key,
        "created": now(), "config_path": str(config_path) if config_path else None, "config_sha256": config_sha256,
        "config": config, "seed": seed, "protocol": protocol, "components": components, "methods": methods, "data": data,
        "git": git_revision(Path(config_path).resolve().parent if config_path else Path.cwd()),
        "versions": package_versions(packages), "environment": environment(), "sessions": [],
    }


@dataclass
class Run:
    """An open run folder. Holding it holds an exclusive lock, so two processes never share one."""

    dir: Path
    record: dict[str, Any]
    _lock: Any = field(repr=False, default=None)
    journal: Journal = field(init=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.dir / JOURNAL)

    @property
    def id(self) -> str:
        return self.dir.name

    def save(self) -> None:
        write_atomic(self.dir / RUN_FILE, json.dumps(self.record, indent=1, sort_keys=False) + "\n")

    def start_session(self, kept: int, images: int, placement: dict[str, Any], repair: JournalRepair) -> dict[str, Any]:
        """Record that a process starts (or resumes) work on this run; returns the session's entry."""
        session = {"started": now(), "git": git_revision(Path.cwd()), "kept": kept, "images": images, "placement": placement}
        if repair:
            session["journal_repair"] = repair.as_dict()
        self.record["sessions"].append(session)
        self.save()
        return session

    def record_proposals(self, summary: dict[str, Any]) -> None:
        """What the runner did with invalid proposal boxes (see ``proposer.invalid``)."""
        self.record["proposals"] = summary
        self.save()

    def complete(self, session: dict[str, Any], expected: int, uncertainty: Any = None, **session_facts: Any) -> dict[str, Any]:
        """Close ``session`` with its facts, check the journal holds ``expected`` predictions, and mark
        the run complete with its metrics (with intervals made as ``uncertainty`` says). Returns the metrics."""
        from .metrics import summarize  # here, so that reading results (the leaderboard) does not import numpy

        self.journal.sync()  # every prediction on disk before the run is marked complete
        session.update({"finished": now(), **session_facts})
        metrics = summarize(self.journal.records(), uncertainty)
        counted = sum(m["n"] for m in metrics.values())
        if counted != expected:
            self.save()
            raise RefbenchError(f"run {self.id}: {counted} predictions for {expected} (method, phrase) pairs",
                                "the journal is inconsistent; start a fresh run with --new")
        sessions = self.record["sessions"]
        if uncertainty is not None:
            from .stats import describe

            self.record["uncertainty"] = describe(uncertainty)
        self.record.update({"status": "complete", "finished": now(), "metrics": metrics,
                            "timing": {"wall_s": round(sum(s.get("wall_s", 0) for s in sessions), 3),
                                       "proposals_s": round(sum(s.get("proposals_s", 0) for s in sessions), 3),
                                       "sessions": len(sessions)}})
        self.save()
        return metrics

    def close(self) -> None:
        self.journal.sync()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


_locks: "weakref.WeakSet[Any]" = weakref.WeakSet()  # run locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child (the runner's workers): close the inherited lock files. A flock belongs to
    the open file, so a worker outliving a killed main process would otherwise keep the run
    locked, and rerunning the command would start a new run instead of resuming."""
    for handle in list(_locks):
        handle.close()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def _try_lock(run_dir: Path) -> Any | None:
    handle = (run_dir / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    _locks.add(handle)
    return handle


def read_record(run_dir: Path) -> dict[str, Any]:
    """A run's record; :class:`RefbenchError` if missing or corrupt."""
    path = run_dir / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RefbenchError(f"{path} not found", "is this a refbench results folder?") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"{path} is corrupt ({exc})", "remove that run folder or restore it from version control") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA_VERSION:
        raise RefbenchError(f"{path} is not a refbench run record (schema {SCHEMA_VERSION})", "remove or upgrade that run folder")
    return record


class Store:
    """The folder of runs (``results/`` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def create(self, name: str, record: dict[str, Any]) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        base = f"{stamp}-{name}-{record['config_sha256'][:6]}"
        for n in range(1000):
            run_dir = self.root / (base if n == 0 else f"{base}-{n}")
            try:
                run_dir.mkdir()  # atomic: two processes never get the same folder
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise RefbenchError(f"cannot create a run folder under {self.root}", "clean up the results folder")
        run = Run(run_dir, {**record, "run_id": run_dir.name}, _try_lock(run_dir))
        run.save()
        return run

    def open(self, run_id: str) -> Run:
        run_dir = self.root / run_id
        if not run_dir.is_dir():
            raise RefbenchError(f"no run {run_id!r} under {self.root}", "`refbench leaderboard --format json` lists run ids")
        lock = _try_lock(run_dir)
        if lock is None:
            raise RefbenchError(f"run {run_id} is in use by another refbench process", "wait for it, or stop it first")
        record = read_record(run_dir)  # read under the lock: a finished run is never reopened
        if record.get("status") == "complete":
            lock.close()
            raise RefbenchError(f"run {run_id} is complete and is never rewritten", "start a new run instead")
        return Run(run_dir, record, lock)

    def unfinished(self, config_sha256: str) -> Iterator[Run]:
        """Interrupted runs of this exact config that no live process holds, newest first, each locked
        while the caller looks at it (``close()`` the ones it does not keep)."""
        for run_dir in reversed(self.run_dirs()):
            if not _matches(run_dir, config_sha256):
                continue
            lock = _try_lock(run_dir)
            if lock is None:
                continue
            if not _matches(run_dir, config_sha256):  # finished while we took the lock
                lock.close()
                continue
            yield Run(run_dir, read_record(run_dir), lock)


def _matches(run_dir: Path, config_sha256: str) -> bool:
    try:
        record = read_record(run_dir)
    except RefbenchError:
        return False
    return record.get("status") == "running" and record.get("config_sha256") == config_sha256
