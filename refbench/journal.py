"""The journal: one JSON line per (method, phrase), the record of what a run has predicted.

Lines are appended per batch of images, so a killed process loses nothing it wrote, and
fsynced at the first append a second or more after the last fsync, and at the end: a power
cut loses at most what was appended since the last fsync, which a resume computes again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import RefbenchError
from .files import atomic_path

REJECTED = "predictions.rejected"  # lines a repair took out of the journal, kept as they were
_LINE = json.JSONEncoder(separators=(",", ":")).encode  # one journal line (json.dumps would build an encoder per record)


@dataclass(frozen=True)
class JournalRepair:
    """What :meth:`Journal.repair` took out of a journal (line numbers count from 1)."""

    torn_bytes: int = 0  # a last line cut short by a crash
    corrupt_lines: tuple[int, ...] = ()  # not a JSON prediction record
    duplicate_lines: tuple[int, ...] = ()  # a (method, sent_id) already on an earlier line

    def __bool__(self) -> bool:
        return bool(self.torn_bytes or self.corrupt_lines or self.duplicate_lines)

    def describe(self) -> str:
        parts = []
        if self.torn_bytes:
            parts.append(f"a torn last line ({self.torn_bytes} bytes)")
        for what, lines in (("corrupt", self.corrupt_lines), ("duplicate", self.duplicate_lines)):
            if lines:
                shown = ", ".join(map(str, lines[:10])) + (", ..." if len(lines) > 10 else "")
                parts.append(f"{len(lines)} {what} line{'s' * (len(lines) > 1)} ({shown})")
        return " and ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"torn_bytes": self.torn_bytes, "corrupt_lines": list(self.corrupt_lines),
                "duplicate_lines": list(self.duplicate_lines)}


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A journal line's prediction record, or None if the line is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except ValueError:  # includes UnicodeDecodeError
        return None
    return record if isinstance(record, dict) and "method" in record and "sent_id" in record else None


@dataclass
class Journal:
    """An append-only JSONL file of prediction records."""

    path: Path
    sync_interval: float = 1.0  # seconds between fsyncs
    _synced: float = field(repr=False, default_factory=time.monotonic)
    _unsynced: bool = field(repr=False, default=False)

    def repair(self) -> tuple[JournalRepair, set[tuple[Any, Any]]]:
        """Make the journal hold only whole, valid, distinct prediction lines, so that it reads line by
        line as JSON and each (method, sent_id) appears once; returns what was taken out and the
        (method, sent_id) pairs the journal holds. A torn last line (a crash mid-write) is cut in
        place; corrupt or duplicate lines anywhere are taken out (the file is rewritten
        atomically) and kept as they were in ``predictions.rejected``. Streams: memory holds the
        pairs, not the file."""
        if not self.path.exists():
            return JournalRepair(), set()
        seen: set[tuple[Any, Any]] = set()
        corrupt, duplicate, torn = [], [], 0
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):  # only the last line can lack its newline
                    torn = len(line)
                    break
                record = parse_line(line)
                if record is None:
                    corrupt.append(number)
                elif (key := (record["method"], record["sent_id"])) in seen:
                    duplicate.append(number)
                else:
                    seen.add(key)
        repair = JournalRepair(torn, tuple(corrupt), tuple(duplicate))
        if corrupt or duplicate:
            self._rewrite(set(corrupt) | set(duplicate))
        elif torn:
            with self.path.open("rb+") as f:
                f.truncate(f.seek(0, os.SEEK_END) - torn)
                os.fsync(f.fileno())
        return repair, seen

    def _rewrite(self, drop: set[int]) -> None:
        """The journal without the lines numbered in ``drop`` (and without a torn last line), atomically;
        the dropped lines are appended to ``predictions.rejected`` first."""
        with self.path.open("rb") as src, (self.path.parent / REJECTED).open("ab") as rejected, atomic_path(self.path) as tmp:
            with tmp.open("wb") as out:
                for number, line in enumerate(src, start=1):
                    if not line.endswith(b"\n"):
                        break
                    (rejected if number in drop else out).write(line)

    def records(self) -> Iterator[dict[str, Any]]:
        """The journal's prediction records, in file order."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                record = parse_line(line)
                if record is None:
                    raise RefbenchError(f"{self.path}: line {number} is not a prediction record",
                                        "another process wrote to the journal; rerun the command to repair and resume")
                yield record

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append whole lines. Once this returns they survive the process being killed; they are
        fsynced (survive a power cut) when a second has passed since the last fsync, and by
        :meth:`sync`: not a disk flush per batch, which network file systems make slow."""
        if not records:
            return
        data = "".join(_LINE(r) + "\n" for r in records).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
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
            fd = os.open(self.path, os.O_WRONLY)
            try:
                self._fsync(fd)
            finally:
                os.close(fd)

    def _fsync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced, self._unsynced = time.monotonic(), False
