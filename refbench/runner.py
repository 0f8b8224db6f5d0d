"""The runner: one image at a time through proposer -> prompter -> scorer -> protocol.

All phrases about an image travel together, so each candidate view is rendered and
encoded once per image and method. Images are prepared (decoded, proposed, rendered,
preprocessed) in background worker processes while the main process encodes; views of
many images go through the encoder in one batch; each phrase's text is encoded once.
Predictions are journaled as they are produced, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .boxes import Box, as_array, check_boxes
from .config import BenchmarkConfig, RunnerConfig, worker_count
from .errors import RefbenchError
from .interfaces import Combinator, Dataset, EmbeddingScorer, ImageItem, Prompter, Proposer, Scorer, ScoreRequest
from .plugins import Registry, registry
from .protocol import conventions, judge_many, summarize
from . import transfer
from .results import Run, Store, environment, git_revision, package_versions


@dataclass
class Method:
    id: str
    scorer: Scorer | None = None
    prompter: Prompter | None = None
    combinator: Combinator | None = None

    @property
    def uses_views(self) -> bool:
        return self.scorer is not None and self.scorer.uses_views


@dataclass
class Bench:
    """A benchmark config turned into live components."""

    config: BenchmarkConfig
    dataset: Dataset
    proposer: Proposer
    methods: list[Method]
    components: list[dict[str, Any]] = field(default_factory=list)


def build(config: BenchmarkConfig, reg: Registry | None = None) -> Bench:
    """Instantiate every component, checking the methods fit together before any work."""
    reg = reg or registry()
    components: list[dict[str, Any]] = []

    def make(kind: Any, spec: Any, where: str) -> Any:
        info = reg.info(kind, spec.plugin)
        components.append({"where": where, "kind": kind, "name": info.name, "plugin": info.plugin,
                           "package": info.package, "version": info.version})
        return reg.build(kind, spec.as_dict(), where)

    for m in config.methods:  # unknown names are reported before anything slow is loaded
        for kind, spec in (("scorer", m.scorer), ("prompter", m.prompter), ("combinator", m.combine)):
            if spec is not None:
                reg.info(kind, spec.plugin)
    dataset = make("dataset", config.dataset, "dataset")  # missing data is reported before models load
    proposer = make("proposer", config.proposer, "proposer")
    methods: list[Method] = []
    for i, m in enumerate(config.methods):
        where = f"methods[{i}] ({m.id})"
        if m.combine is not None:
            comb = make("combinator", m.combine, where + ".combine")
            known = {x.id for x in methods}
            missing = [x for x in comb.members if x not in known]
            if missing:
                raise RefbenchError(f"{where}: combines {', '.join(missing)}, not defined above it",
                                    "list member methods before the method that combines them")
            methods.append(Method(m.id, combinator=comb))
            continue
        scorer = make("scorer", m.scorer, where + ".scorer")
        prompter = make("prompter", m.prompter, where + ".prompter") if m.prompter else None
        if scorer.uses_views and prompter is None:
            raise RefbenchError(f"{where}: scorer {m.scorer.plugin!r} looks at views and needs a prompter",
                                "add e.g. prompter: {plugin: green_shade}")
        methods.append(Method(m.id, scorer=scorer, prompter=prompter))
    return Bench(config, dataset, proposer, methods, components)


# ---------------------------------------------------------------- preparation (workers)


def load_image(item: ImageItem) -> Image.Image:
    try:
        with Image.open(item.path) as im:
            image = im.convert("RGB")
    except FileNotFoundError:
        raise RefbenchError(f"image {item.image_id} not found: {item.path}",
                            "check dataset.images points at the folder holding the data set's images") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise RefbenchError(f"image {item.image_id} is unreadable: {item.path} ({exc})", "the file is damaged; restore it") from None
    if image.size != (item.width, item.height):
        raise RefbenchError(f"image {item.path} is {image.width}x{image.height} but the annotations say {item.width}x{item.height}",
                            "the image folder does not match the annotations")
    return image


@dataclass
class Prepared:
    """One image ready for the models: its candidates and the per-image input of scorers
    that score one image at a time (embedding scorers' inputs travel batched in the :class:`Chunk`)."""

    item: ImageItem
    boxes: list[Box]
    views: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """Consecutive images of one worker's share (at most ``batch_size`` views, or one image's),
    the unit handed from the workers to the main process.

    Built in the worker that prepared the images: for each embedding method one batch of views
    and one of phrases (the scorer's ``concat`` / ``concat_texts``), so a chunk crosses to the
    main process as a few large tensors rather than two per image. Encoder batches are cut
    from the chunks by :class:`Scoring`.
    """

    images: list[Prepared]
    views: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, Any] = field(default_factory=dict)
    error: RefbenchError | None = None


Scored = list[tuple[Prepared, dict[str, np.ndarray | None]]]  # images with their logits per method


def prepare(item: ImageItem, proposer: Proposer, view_methods: Sequence[Method]) -> Prepared:
    boxes = proposer.propose(item)
    check_boxes(boxes, item.width, item.height, f"image {item.image_id} candidates")
    p = Prepared(item, boxes)
    if view_methods and boxes:
        image = load_image(item)
        for m in view_methods:
            assert m.scorer is not None
            p.views[m.id] = m.scorer.prepare(image, boxes, m.prompter)
            if isinstance(m.scorer, EmbeddingScorer):
                p.texts[m.id] = m.scorer.prepare_texts([r.text for r in item.refs])
    return p


def seal(images: list[Prepared], view_methods: Sequence[Method]) -> Chunk:
    """Join the images' inputs of every embedding method into one batch each."""
    chunk = Chunk(images)
    live = [p for p in images if p.boxes]
    for m in view_methods:
        if isinstance(m.scorer, EmbeddingScorer) and live:
            chunk.views[m.id] = m.scorer.concat([p.views.pop(m.id) for p in live])
            chunk.texts[m.id] = m.scorer.concat_texts([p.texts.pop(m.id) for p in live])
    return chunk


def build_chunks(items: Iterable[ImageItem], proposer: Proposer, view_methods: Sequence[Method], batch_size: int) -> Iterator[Chunk]:
    """Prepare images in order and group them so each chunk holds at most ``batch_size`` views (or one image)."""
    pending: list[Prepared] = []
    n = 0
    for item in items:
        try:
            p = prepare(item, proposer, view_methods)
        except RefbenchError as exc:  # travels to the main process as a value, message intact
            if pending:
                yield seal(pending, view_methods)
            yield Chunk([], error=exc)
            return
        if pending and n + len(p.boxes) > batch_size:
            yield seal(pending, view_methods)
            pending, n = [], 0
        pending.append(p)
        n += len(p.boxes)
    if pending:
        yield seal(pending, view_methods)


class _Chunks(torch.utils.data.IterableDataset):
    def __init__(self, items: list[ImageItem], proposer: Proposer, view_methods: list[Method], batch_size: int) -> None:
        self.items, self.proposer, self.view_methods, self.batch_size = items, proposer, view_methods, batch_size

    def __iter__(self) -> Iterator[Chunk]:
        info = torch.utils.data.get_worker_info()
        shard = self.items if info is None else self.items[info.id :: info.num_workers]
        return build_chunks(shard, self.proposer, self.view_methods, self.batch_size)


def _single(x: Any) -> Any:
    return x


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # one thread: OpenMP's pool does not survive a fork


def chunk_stream(items: list[ImageItem], proposer: Proposer, methods: list[Method], batch_size: int, workers: int) -> Iterable[Chunk]:
    """Chunks prepared in ``workers`` background processes (in this one when 0). Each worker
    prepares every ``workers``-th image and groups its own images into chunks; at most two
    chunks per worker wait in memory, so memory stays flat however large the data set."""
    view_methods = [m for m in methods if m.uses_views]
    source = _Chunks(items, proposer, view_methods, batch_size)
    pin = any(isinstance(m.scorer, EmbeddingScorer) and m.scorer.pin_memory for m in view_methods)
    if workers == 0 or not items:
        return iter(source)
    return torch.utils.data.DataLoader(source, batch_size=None, num_workers=min(workers, len(items)), collate_fn=_single,
                                       worker_init_fn=_worker_init, prefetch_factor=2, pin_memory=pin)


# ---------------------------------------------------------------- scoring (main process)


class Scoring:
    """Turns the stream of chunks into logits, encoding views in batches of exactly ``batch_size``.

    Chunks end at image boundaries, so their sizes vary; the encoders do not see that: views
    wait (on the model's device) until a full batch is there, and an image is scored once all
    its views are encoded. Fixed shapes keep the allocator reusing the same blocks, so memory
    stays flat (varying batch shapes grew RSS by 80% in 60 calls), and they match how the raw
    encoder is measured. Phrases are encoded per chunk (each distinct phrase once per run and process).
    """

    def __init__(self, methods: list[Method], batch_size: int) -> None:
        self.methods, self.batch_size = methods, batch_size
        self.embedding = [m for m in methods if isinstance(m.scorer, EmbeddingScorer)]
        self.queue: list[Prepared] = []  # images whose logits are not out yet, in order
        self.views: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # not yet encoded
        self.unencoded = 0  # views waiting in self.views (the same count for every method)
        self.features: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # encoded, not yet scored
        self.encoded = 0  # views with features in self.features
        self.texts: dict[str, list[Any]] = {m.id: [] for m in self.embedding}  # phrase features of queued images

    def feed(self, chunk: Chunk) -> Scored:
        """Take a chunk; return the images now complete, each with its logits per method."""
        live = [p for p in chunk.images if p.boxes]
        if live:
            for m in self.embedding:
                s = m.scorer
                assert isinstance(s, EmbeddingScorer)
                self.views[m.id].append(s.to_device(chunk.views[m.id]))
                self.texts[m.id].append(s.encode_texts(chunk.texts[m.id]))
            self.unencoded += sum(len(p.boxes) for p in live)  # counted without embedding methods too: images then complete per batch
        self.queue.extend(chunk.images)
        while self.unencoded >= self.batch_size:
            self._encode(self.batch_size)
        return self._complete()

    def finish(self) -> Scored:
        if self.unencoded:
            self._encode(self.unencoded)
        return self._complete()

    def _encode(self, n: int) -> None:
        """Encode the first ``n`` waiting views of every embedding method as one batch."""
        for m in self.embedding:
            s = m.scorer
            assert isinstance(s, EmbeddingScorer)
            self.features[m.id].append(s.encode_views(_take(self.views[m.id], n, s.concat)))
        self.unencoded -= n
        self.encoded += n

    def _complete(self) -> Scored:
        """Score the leading images whose views are all encoded (one logits product per method)."""
        ready, views, texts = 0, 0, 0
        for p in self.queue:
            if views + len(p.boxes) > self.encoded:
                break
            ready, views, texts = ready + 1, views + len(p.boxes), texts + (len(p.item.refs) if p.boxes else 0)
        if not ready:
            return []
        images, self.queue = self.queue[:ready], self.queue[ready:]
        logits: dict[str, list[np.ndarray | None]] = {}
        for m in self.methods:
            out: list[np.ndarray | None] = [None] * ready
            if m.id in self.features:
                if views:
                    s = m.scorer
                    assert isinstance(s, EmbeddingScorer)
                    every = s.logits(_take(self.texts[m.id], texts, torch.cat), _take(self.features[m.id], views, torch.cat))
                    v = t = 0  # each image takes its block
                    for i, p in enumerate(images):
                        if p.boxes:
                            nv, nt = len(p.boxes), len(p.item.refs)
                            out[i] = every[t : t + nt, v : v + nv]
                            v, t = v + nv, t + nt
            elif m.combinator is not None:
                for i, p in enumerate(images):
                    if p.boxes:
                        out[i] = m.combinator.combine([logits[x][i] for x in m.combinator.members])
            elif m.scorer is not None:
                for i, p in enumerate(images):
                    if p.boxes:
                        out[i] = m.scorer.score(ScoreRequest(p.item, p.item.refs, p.boxes, p.views.get(m.id)))
            logits[m.id] = out
        self.encoded -= views
        return [(p, {k: v[i] for k, v in logits.items()}) for i, p in enumerate(images)]


def _take(parts: list[Any], n: int, join: Callable[[list[Any]], Any]) -> Any:
    """The first ``n`` rows of ``parts`` joined (sliceable batches: tensors, lists), removed from ``parts``."""
    taken, rows = 0, []
    while taken < n:
        part = parts[0]
        k = min(len(part), n - taken)
        rows.append(part[:k])
        taken += k
        if k == len(part):
            parts.pop(0)
        else:
            parts[0] = part[k:]
    return rows[0] if len(rows) == 1 else join(rows)


def judge_images(scored: Scored, config: BenchmarkConfig,
                 done: set[tuple[str, int]]) -> list[dict[str, Any]]:
    """Prediction records of scored images (image by image, each method's in turn), without those in ``done``."""
    if not scored:
        return []
    boxes = [as_array(p.boxes) for p, _ in scored]
    per_method = [judge_many([(p.item, p.item.refs, b, logits[method]) for (p, logits), b in zip(scored, boxes)], config.protocol, method)
                  for method in scored[0][1]]
    return [r for i in range(len(scored)) for records in per_method for r in records[i] if (r["method"], r["sent_id"]) not in done]


class Placement(NamedTuple):
    """Where a run's work happens (``runner.workers`` and ``runner.scoring`` resolved)."""

    workers: int  # background processes; 0: everything in the main process
    scoring_in_workers: bool  # each worker prepares and scores its share; else workers prepare, the main process scores


def placement(runner: RunnerConfig, methods: Sequence[Method]) -> Placement:
    """Scoring in workers runs whole pipelines side by side, one per worker on one thread: on a
    2-core CPU, two single-threaded pipelines outpace one two-threaded model fed in between its
    calls (each keeps a core busy while the other decodes). One thread, because a forked
    process cannot use OpenMP's thread pool (it hangs); so ``auto`` picks it only up to 8 CPUs,
    one worker each. Models on a GPU always run in the main process (CUDA does not survive a
    fork either)."""
    cpus = os.cpu_count() or 1
    gpu = [m.id for m in methods if m.scorer is not None and m.scorer.on_gpu]
    if runner.scoring == "workers" and gpu:
        raise RefbenchError(f"runner.scoring is workers, but method {gpu[0]!r} runs on a GPU",
                            "use runner.scoring: main or auto (GPU models are scored in the main process)")
    # auto: CPU models only (CUDA in use counts as a GPU model, declared or not), and at most
    # 8 CPUs, where one single-threaded pipeline per CPU uses them all
    auto = not gpu and not torch.cuda.is_initialized() and 1 < cpus <= 8
    if not (runner.scoring == "workers" or (runner.scoring == "auto" and auto)):
        return Placement(worker_count(runner.workers), False)
    n = min(cpus, 8) if runner.workers == "auto" else int(runner.workers)  # a model copy each: at most 8 unless asked
    return Placement(n, n > 0)


def _score_chunks(chunks: Iterable[Chunk], methods: list[Method], batch_size: int) -> Iterator[Scored]:
    scoring = Scoring(methods, batch_size)
    for chunk in chunks:
        if chunk.error is not None:
            raise chunk.error
        scored = scoring.feed(chunk)
        if scored:
            yield scored
    scored = scoring.finish()
    if scored:
        yield scored


class _Shards(torch.utils.data.IterableDataset):
    """Scoring in workers: each worker scores the chunks it builds (its share of the images, see
    :class:`_Chunks`) with its own copy of the models and sends back images with their logits
    (or the error that stopped it, as a value)."""

    def __init__(self, chunks: _Chunks, methods: list[Method], batch_size: int) -> None:
        self.chunks, self.methods, self.batch_size = chunks, methods, batch_size

    def __iter__(self) -> Iterator[Scored | RefbenchError]:
        if torch.utils.data.get_worker_info() is not None:
            transfer.share(False)  # a scoring worker keeps its batches: no shared memory
        try:
            with torch.inference_mode():
                for scored in _score_chunks(iter(self.chunks), self.methods, self.batch_size):
                    for p, _ in scored:
                        p.views.clear()  # per-image scorers' inputs are spent: not sent back
                    yield scored
        except RefbenchError as exc:
            yield exc


def score_stream(items: list[ImageItem], proposer: Proposer, methods: list[Method], config: BenchmarkConfig,
                 place: Placement | None = None) -> Iterator[Scored]:
    """Images with their logits, as soon as they are scored; preparation overlaps scoring.
    ``place``: where the work runs (default: :func:`placement` of the config)."""
    place = place or placement(config.runner, methods)
    batch = config.runner.batch_size
    if place.scoring_in_workers and items:
        shards = _Shards(_Chunks(items, proposer, [m for m in methods if m.uses_views], batch), methods, batch)
        for scored in torch.utils.data.DataLoader(shards, batch_size=None, num_workers=min(place.workers, len(items)),
                                                  collate_fn=_single, worker_init_fn=_worker_init, prefetch_factor=2):
            if isinstance(scored, RefbenchError):
                raise scored
            yield scored
        return
    with torch.inference_mode():
        yield from _score_chunks(chunk_stream(items, proposer, methods, batch, place.workers), methods, batch)


def predict(items: list[ImageItem], proposer: Proposer, methods: list[Method], config: BenchmarkConfig,
            done: set[tuple[str, int]] | None = None) -> Iterator[tuple[list[Prepared], list[dict[str, Any]]]]:
    """Stream ``(images now scored, their prediction records)``."""
    for scored in score_stream(items, proposer, methods, config):
        yield [p for p, _ in scored], judge_images(scored, config, done or set())


class _Recorder:
    """Judges scored images and appends their records to the journal, in a background thread
    when ``background`` (the model then keeps working while the last batch is judged and
    written: on a GPU, judging in line would leave it idle). At most two batches wait; an
    error there stops the run at the next hand-over."""

    def __init__(self, run: Run, config: BenchmarkConfig, done: set[tuple[str, int]], background: bool,
                 counted: Callable[[int, int, int], None]) -> None:
        self.run, self.config, self.done, self.counted = run, config, done, counted
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
        records = judge_images(scored, self.config, self.done)
        self.run.append(records)
        self.counted(len(scored), sum(len(p.boxes) for p, _ in scored), len(records))


def evaluate(items: list[ImageItem], proposer: Proposer, methods: list[Method], config: BenchmarkConfig) -> dict[str, Any]:
    """Metrics without a results folder (used for validation during training)."""
    return summarize(r for _, records in predict(items, proposer, methods, config) for r in records)


# ---------------------------------------------------------------- the run


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_record(bench: Bench, config_path: Path | None) -> dict[str, Any]:
    c = bench.config
    packages = sorted({x["package"] for x in bench.components if x["package"] != "?"})
    return {
        "schema": 1, "status": "running", "benchmark": c.name, "dataset_key": bench.dataset.key(),
        "created": _now(), "config_path": str(config_path) if config_path else None,
        "config_sha256": c.digest(), "config": c.model_dump(mode="json"), "seed": c.seed,
        "protocol": conventions(c.protocol), "components": bench.components,
        "methods": {m.id: (m.scorer or m.combinator).describe() for m in bench.methods},  # type: ignore[union-attr]
        "data": {"dataset": bench.dataset.describe(), "proposer": bench.proposer.describe()},
        "git": git_revision(Path(config_path).resolve().parent if config_path else Path.cwd()),
        "versions": package_versions(packages), "environment": environment(), "sessions": [],
    }


ProgressFn = Callable[[int, int, int], None]  # images done, images total, phrases written


def run_benchmark(config: BenchmarkConfig, store: Store, config_path: Path | None = None, resume: str | None = None,
                  fresh: bool = False, progress: ProgressFn | None = None, announce: Callable[[str], None] = lambda s: None) -> Run:
    """Run (or resume) a benchmark and return the completed run.

    ``resume``: a run id to continue; otherwise the newest interrupted run of the same
    config is continued unless ``fresh``.
    """
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    bench = build(config)
    record = new_record(bench, config_path)
    run = None
    if resume is not None:
        run = store.open(resume)
        if run.record.get("config_sha256") != config.digest():
            run.close()
            raise RefbenchError(f"run {resume} was made with a different config", "resume it with the config it was started with")
        changed = _changed_inputs(run.record, record)
        if changed:
            run.close()
            raise RefbenchError(f"the {changed} changed since run {resume} started", "start a fresh run with --new")
    elif not fresh:
        for candidate in store.unfinished(config.digest()):
            changed = _changed_inputs(candidate.record, record)
            if not changed:
                run = candidate
                break
            announce(f"not resuming run {candidate.id}: its {changed} changed since it started")
            candidate.close()
    run = run or store.create(config.name, record)
    try:
        return _execute(bench, run, progress, announce)
    finally:
        run.close()


def _changed_inputs(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Which recorded inputs (data files, weights) differ between a run's record and now."""
    def weights(rec: dict[str, Any]) -> dict[str, Any]:
        return {m: {k: v for k, v in d.items() if k != "device"} for m, d in rec.get("methods", {}).items()}

    if old.get("data") != new["data"]:
        return "data or proposals"
    if weights(old) != weights(new):
        return "model weights"
    return None


def _execute(bench: Bench, run: Run, progress: ProgressFn | None, announce: Callable[[str], None]) -> Run:
    config = bench.config
    cut = run.repair_journal()
    done = {(r["method"], r["sent_id"]) for r in run.records()}
    if done or cut:
        announce(f"resuming run {run.id}: {len(done)} predictions kept" + (f", a torn last line ({cut} bytes) dropped" if cut else ""))
    method_ids = [m.id for m in bench.methods]
    items = list(bench.dataset)[: config.runner.limit]
    todo = [it for it in items if any((m, r.sent_id) not in done for r in it.refs for m in method_ids)]
    place = placement(config.runner, bench.methods)
    session = {"started": _now(), "git": git_revision(Path.cwd()), "kept": len(done), "images": len(todo),
               "placement": {"workers": min(place.workers, len(todo)), "scoring": "workers" if place.scoring_in_workers else "main",
                             "threads": 1 if place.scoring_in_workers else torch.get_num_threads()}}
    run.record["sessions"].append(session)
    run.save()

    start = time.perf_counter()
    counts = {"images": len(items) - len(todo), "views": 0, "written": 0}

    def counted(images: int, views: int, written: int) -> None:
        counts["images"] += images
        counts["views"] += views
        counts["written"] += written
        if progress:
            progress(counts["images"], len(items), counts["written"])

    counted(0, 0, 0)
    recorder = _Recorder(run, config, done, background=place.workers > 0 and not place.scoring_in_workers, counted=counted)
    try:
        for scored in score_stream(todo, bench.proposer, bench.methods, config, place):
            recorder.put(scored)
    finally:
        recorder.close()
    run.sync()  # every prediction on disk before the run is marked complete
    written, n_views = counts["written"], counts["views"]
    wall = time.perf_counter() - start
    session.update({"finished": _now(), "wall_s": round(wall, 3), "written": written, "views": n_views,
                    "images_per_s": round(len(todo) / wall, 2) if wall > 0 else None})
    metrics = summarize(run.records())
    expected = len(method_ids) * sum(len(i.refs) for i in items)
    counted = sum(m["n"] for m in metrics.values())
    if counted != expected:
        raise RefbenchError(f"run {run.id}: {counted} predictions for {expected} (method, phrase) pairs",
                            "the journal is inconsistent; start a fresh run with --new")
    run.record.update({"status": "complete", "finished": _now(), "metrics": metrics,
                       "timing": {"wall_s": round(sum(s.get("wall_s", 0) for s in run.record["sessions"]), 3),
                                  "sessions": len(run.record["sessions"])}})
    run.save()
    return run
