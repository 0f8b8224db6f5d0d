"""The results store: one folder per run, append-only, written atomically.

``results/<run_id>/run.json``
    the run's record (schema :data:`SCHEMA_VERSION`): status, resolved config and its
    hash, git sha, package versions, seed, protocol conventions, data provenance,
    timings and, once complete, the metrics. Replaced atomically (temp file + rename).
``results/<run_id>/predictions.jsonl``
    the journal: one JSON line per (method, phrase), appended per batch of images (a
    killed process loses nothing written) and fsynced at the first append a second or more
    after the last fsync, and at the end (a power cut loses at most what was appended since
    the last fsync, which a resume computes again).
    After a crash, the run is resumed from it; a torn last line is dropped.

A complete run is never written again, and a new run never reuses a folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from .errors import RefbenchError

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
JOURNAL = "predictions.jsonl"
_LINE = json.JSONEncoder(separators=(",", ":")).encode  # one journal line (json.dumps would build an encoder per record)


def write_atomic(path: Path, data: str | bytes, durable: bool = True) -> None:
    """Write so that readers see the old file or the new one, never a mix.

    ``durable`` also fsyncs the file and its folder (skipped for bulk, regenerable output).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes files private
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def git_revision(where: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(extra: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    names = ["refbench", "numpy", "pillow", "pydantic", "pluggy", "torch", "torchvision", "open_clip_torch", *extra]
    out = {"python": platform.python_version()}
    for name in dict.fromkeys(names):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def environment() -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "argv": sys.argv}


@dataclass
class Run:
    """An open run folder. Holding it holds an exclusive lock, so two processes never share one."""

    dir: Path
    record: dict[str, Any]
    _lock: Any = field(repr=False, default=None)
    sync_interval: float = 1.0  # seconds between the journal's fsyncs
    _synced: float = field(repr=False, default_factory=time.monotonic)
    _unsynced: bool = field(repr=False, default=False)

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL

    def save(self) -> None:
        write_atomic(self.dir / RUN_FILE, json.dumps(self.record, indent=1, sort_keys=False) + "\n")

    def repair_journal(self) -> int:
        """Cut a torn last line (a crash mid-write) so appends start on a fresh line. Returns bytes cut."""
        path = self.journal_path
        if not path.exists():
            return 0
        with path.open("rb+") as f:
            data_len = f.seek(0, os.SEEK_END)
            if data_len == 0:
                return 0
            # scan back from the end for the last newline
            pos, chunk = data_len, 1 << 16
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                block = f.read(pos - start)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                pos = start
            else:
                keep = 0
            if keep < data_len:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
            return data_len - keep

    def records(self) -> Iterator[dict[str, Any]]:
        """Journal lines, skipping any that do not parse (never expected after repair)."""
        if not self.journal_path.exists():
            return
        with self.journal_path.open("rb") as f:
            for line in f:
                try:
                    record = json.loads(line.decode("utf-8"))
                except ValueError:  # includes UnicodeDecodeError
                    continue
                if isinstance(record, dict) and "method" in record and "sent_id" in record:
                    yield record

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append whole lines. Once this returns they survive the process being killed; they are
        fsynced (survive a power cut) when a second has passed since the last fsync, and by
        :meth:`sync`: not a disk flush per batch, which network file systems make slow."""
        if not records:
            return
        data = "".join(_LINE(r) + "\n" for r in records).encode()
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # a short write (signal, full disk) continues where it stopped
                view = view[os.write(fd, view):]
            self._unsynced = True
            if time.monotonic() - self._synced >= self.sync_interval:
                self._fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """fsync what :meth:`append` wrote since its last fsync."""
        if self._unsynced:
            fd = os.open(self.journal_path, os.O_WRONLY)
            try:
                self._fsync(fd)
            finally:
                os.close(fd)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced, self._unsynced = time.monotonic(), False

    def close(self) -> None:
        self.sync()
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
