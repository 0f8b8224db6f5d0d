"""Stage 6: scored images judged under the protocol and appended to the run's journal."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable

from ..boxes import as_array
from ..config import ProtocolConfig
from ..journal import Journal
from ..protocol import judge_grounded, judge_many
from .batch import Scored


def judge_images(scored: Scored, protocol: ProtocolConfig, done: set[tuple[str, int]],
                 grounders: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Prediction records of scored images (image by image, each method's in turn), without those in
    ``done``. Methods in ``grounders`` gave a box per phrase; the others, logits over the candidates."""
    if not scored:
        return []
    boxes = [as_array(p.boxes) for p, _ in scored]
    per_method = [judge_grounded([(p.item, *logits[method]) for p, logits in scored], protocol, method) if method in grounders
                  else judge_many([(p.item, p.item.refs, b, logits[method]) for (p, logits), b in zip(scored, boxes)], protocol, method)
                  for method in scored[0][1]]
    return [r for i in range(len(scored)) for records in per_method for r in records[i] if (r["method"], r["sent_id"]) not in done]


Counted = Callable[[int, int, int], None]  # images, views and records just written


class Recorder:
    """Judges scored images and appends their records to the journal; in a background thread when
    ``background``, so a model in this process keeps working while the last batch is judged and
    written. At most two batches wait; an error there stops the run at the next hand-over."""

    def __init__(self, journal: Journal, protocol: ProtocolConfig, done: set[tuple[str, int]], background: bool,
                 counted: Counted, grounders: frozenset[str] = frozenset()) -> None:
        self.journal, self.protocol, self.done, self.counted, self.grounders = journal, protocol, done, counted, grounders
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if background:
            self.queue: queue.Queue[Scored | None] = queue.Queue(maxsize=2)
            self.thread = threading.Thread(target=self._loop, name="refbench-recorder", daemon=True)
            self.thread.start()

    def put(self, scored: Scored) -> None:
        if self.thread is None:
            return self._record(scored)
        while True:
            self._check()
            try:
                return self.queue.put(scored, timeout=0.2)
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until everything handed over is written; re-raise an error from the thread."""
        if self.thread is not None:
            while self.thread.is_alive():
                try:
                    self.queue.put(None, timeout=0.2)
                    break
                except queue.Full:
                    self._check()
            self.thread.join()
        self._check()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while (scored := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._record(scored)
                except BaseException as exc:  # noqa: BLE001 -- handed to the main thread
                    self.error = exc

    def _record(self, scored: Scored) -> None:
        records = judge_images(scored, self.protocol, self.done, self.grounders)
        self.journal.append(records)
        self.counted(len(scored), sum(len(p.boxes) for p, _ in scored), len(records))
