"""``refbench show RUN``: a run's predictions, phrase by phrase, as an HTML page or a PNG grid.

The journal keeps only each phrase's chosen candidate and its logit, so the selected phrases'
images are scored again with the run's own components, rebuilt from ``run.json``'s config:
only the data set, the proposer and the method shown (with a combinator's members). Each card
says whether the re-scored choice equals the journal's; a difference is shown, not hidden.
Probabilities are the softmax of a phrase's logits over its image's candidates.

Importing this module is light (the CLI's parser adds the command from here); numpy, Pillow,
torch and the drawing code (:mod:`refbench.gallery`) load when the command runs.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import RefbenchError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .boxes import Box
    from .results import Store


def add_command(sub: Any, results_default: str) -> None:
    """``refbench show``'s arguments, on the CLI's subparsers."""
    p = sub.add_parser("show", help="a run's predictions as an HTML page or PNG grid: per phrase the image with the truth and "
                                    "chosen boxes, the top-k candidates with probabilities; accuracy per phrase type")
    p.add_argument("run", metavar="RUN", help="a run id or part of one (e.g. its hash)")
    p.add_argument("--out", required=True, metavar="PATH", help="a .html page (images inline) or a .png grid")
    p.add_argument("--method", help="the method shown (default: the run's first)")
    p.add_argument("--only", choices=["hits", "misses"], help="only phrases the method got right, or wrong")
    p.add_argument("--type", metavar="T", help="only phrases of this type (e.g. location)")
    p.add_argument("--n", type=int, default=24, help="phrases shown (a seeded sample when more match; default 24)")
    p.add_argument("--k", type=int, default=3, help="top candidates shown per phrase (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--results", default=results_default, help="results folder (default: ./results, or $REFBENCH_RESULTS)")
    p.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    from .results import Store

    out, cards = show(Store(Path(args.results)), args.run, Path(args.out), args.method, args.only, args.type, args.n, args.k, args.seed)
    print(f"wrote {out} ({len(cards)} phrases; {agreement(cards)})")
    return 0


@dataclass
class Card:
    """One shown phrase: its journal record, and what re-scoring its image found."""

    record: dict[str, Any]
    image: Image.Image | None = None  # annotated, display size
    probs: np.ndarray | None = None  # softmax over the image's candidates
    choice: int | None = None  # the re-scored choice
    thumbs: list[tuple[Image.Image, str, bool]] = field(default_factory=list)  # (view, caption, journal's choice)
    note: str = ""

    @property
    def agrees(self) -> bool | None:
        return None if self.probs is None else self.choice == self.record["chosen"]


def select(records: list[dict[str, Any]], only: str | None, phrase_type: str | None, n: int, seed: int) -> tuple[list[dict[str, Any]], int]:
    """The records that pass the filters, sorted by sent_id; a seeded sample of ``n`` of them when
    more match (shown in sent_id order). Returns them and how many matched."""
    hits = {"hits": True, "misses": False}.get(only or "")
    matching = sorted((r for r in records if (hits is None or r["hit"] == hits) and (phrase_type is None or r["phrase_type"] == phrase_type)),
                      key=lambda r: int(r["sent_id"]))
    if len(matching) <= n:
        return matching, len(matching)
    return sorted(random.Random(seed).sample(matching, n), key=lambda r: int(r["sent_id"])), len(matching)


def _config(record: dict[str, Any], methods: list[str] | None = None) -> Any:
    from pydantic import ValidationError

    from .config import BenchmarkConfig

    data = dict(record["config"])
    if methods is not None:
        data["methods"] = [m for m in data["methods"] if m["id"] in methods]
    try:
        return BenchmarkConfig.model_validate(data)
    except ValidationError as exc:
        raise RefbenchError(f"run {record['run_id']}'s config does not validate in this refbench ({exc.error_count()} problems)",
                            "show it with the refbench version that made it (run.json's versions)") from None


def _needed(config: Any, method: str) -> list[str]:
    """``method`` and, for a combinator, its members (recursively), in the config's order."""
    from .run import build_component

    specs = {m.id: m for m in config.methods}
    need, todo = set(), [method]
    while todo:
        mid = todo.pop()
        if mid in need or mid not in specs:
            continue
        need.add(mid)
        if specs[mid].combine is not None:
            todo += build_component("combinator", specs[mid].combine.as_dict(), f"{mid}.combine").members
    return [m.id for m in config.methods if m.id in need]


def rescore(record: dict[str, Any], method: str, shown: list[dict[str, Any]], k: int) -> list[Card]:
    """Cards of ``shown`` (records of ``method``), their images scored again by the run's components."""
    import numpy as np
    import torch

    from .run import build, load_image, propose_all

    full = _config(record)
    spec = next(m for m in full.methods if m.id == method)
    grounded = getattr(spec, "ground", None) is not None  # a box per phrase, no candidates to score
    config = full if grounded else _config(record, _needed(full, method))
    torch.manual_seed(config.seed)
    np.random.seed(config.seed % 2**32)
    bench = build(config) if not grounded else None
    dataset = bench.dataset if bench else _dataset(config)
    wanted = {int(r["image_id"]) for r in shown}
    items = {it.image_id: it for it in dataset if it.image_id in wanted}
    lost = [r["sent_id"] for r in shown if int(r["image_id"]) not in items
            or int(r["sent_id"]) not in {ref.sent_id for ref in items[int(r["image_id"])].refs}]
    if lost:
        raise RefbenchError(f"{len(lost)} shown phrases (e.g. sent_id {lost[0]}) are not in the data set the run's config reads now",
                            "point the config's paths at the data the run was made on")
    methods = {m.id: m for m in bench.methods} if bench else {}
    proposals = propose_all(list(items.values()), bench.proposer, config.proposer.invalid).boxes if bench else {}
    looker = _looker(methods, method)
    if grounded:
        from . import gallery

        return [Card(r, image=gallery.annotated(load_image(items[int(r["image_id"])]), truth(r, items[int(r["image_id"])]),
                                         r["box"] or None),
                     note="the method predicts a box per phrase: no candidates to score") for r in shown]
    cache: dict[int, tuple[Image.Image, list[Box], np.ndarray | None]] = {}
    cards = []
    with torch.inference_mode():
        for r in shown:
            item = items[int(r["image_id"])]
            if item.image_id not in cache:
                image, boxes = load_image(item), proposals.get(item.image_id, [])
                cache[item.image_id] = (image, boxes, _logits(methods, method, item, image, boxes) if boxes else None)
            image, boxes, logits = cache[item.image_id]
            cards.append(_card(r, item, image, boxes, logits, looker, k, config.protocol.iou_convention))
    return cards


def truth(r: dict[str, Any], item: Any) -> list[float]:
    """The record's truth box; journals written before records carried it take it from the data set."""
    if "truth" in r:
        return r["truth"]
    return list(next(ref.box.xywh for ref in item.refs if ref.sent_id == int(r["sent_id"])))


def _dataset(config: Any) -> Any:
    from .run import build_component

    return build_component("dataset", config.dataset.as_dict(), "dataset")


def _logits(methods: dict[str, Any], mid: str, item: Any, image: Image.Image, boxes: list[Box]) -> np.ndarray:
    """``[phrases of the image, candidates]`` logits of method ``mid``, as the runner computes them."""
    import numpy as np

    from .interfaces import ScoreRequest

    m = methods[mid]
    if m.combinator is not None:
        return np.asarray(m.combinator.combine_for(ScoreRequest(item, item.refs, boxes),
                                                   [_logits(methods, x, item, image, boxes) for x in m.combinator.members]))
    s = m.scorer
    views = s.prepare(image, boxes, m.prompter) if s.uses_views else None
    return np.asarray(s.score(ScoreRequest(item, item.refs, boxes, views)), dtype=np.float64)


def _looker(methods: dict[str, Any], mid: str) -> Any:
    """The method whose prompter renders the views shown: ``mid``, or a combinator's first member that looks at views."""
    m = methods.get(mid)
    if m is None:
        return None
    if m.combinator is not None:
        return next((x for x in (_looker(methods, y) for y in m.combinator.members) if x is not None), None)
    return m if m.uses_views else None


def _card(r: dict[str, Any], item: Any, image: Image.Image, boxes: list[Box], logits: np.ndarray | None, looker: Any,
          k: int, convention: Any) -> Card:
    import numpy as np

    from . import gallery
    from .boxes import Box, as_array, iou_matrix

    card = Card(r, image=gallery.annotated(image, truth(r, item), r["box"] or None))
    if logits is None:
        card.note = "the image has no candidates"
        return card
    row = logits[[ref.sent_id for ref in item.refs].index(int(r["sent_id"]))]
    z = np.exp(row - row.max())
    card.probs, card.choice = z / z.sum(), int(np.argmax(row))
    top = [int(i) for i in np.argsort(-card.probs, kind="stable")[:k]]
    ious = iou_matrix(as_array([Box(*truth(r, item))]), as_array([boxes[i] for i in top]), convention)[0]
    views = looker.prompter.render(image, [boxes[i] for i in top]) if looker else [gallery.candidate(image, boxes[i].xywh) for i in top]
    card.thumbs = [(gallery.thumb(v), f"#{i} p={card.probs[i]:.2f}\nIoU {u:.2f}", i == r["chosen"]) for v, i, u in zip(views, top, ious)]
    card.note = f"views by {looker.id}'s prompter" if looker else "candidates drawn on the image (the method does not look at views)"
    return card


def chart_rows(record: dict[str, Any], method: str) -> list[tuple[str, int, float, list[float] | None]]:
    types = record["metrics"][method].get("phrase_types", {})
    return [(t, int(m["n"]), float(m["accuracy"]), m.get("ci95")) for t, m in sorted(types.items()) if t]


def show(store: Store, run: str, out: Path, method: str | None = None, only: Literal["hits", "misses"] | None = None,
         phrase_type: str | None = None, n: int = 24, k: int = 3, seed: int = 0) -> tuple[Path, list[Card]]:
    """Write the page (``.html``) or grid (``.png``) for ``run`` and return its path and cards."""
    from . import gallery
    from .compare import find_run
    from .files import write_atomic
    from .journal import Journal
    from .results import JOURNAL

    fmt = out.suffix.lower()
    if fmt not in (".html", ".htm", ".png"):
        raise RefbenchError(f"--out {out} is neither .html nor .png", "name the file e.g. show.html (a page) or show.png (a grid)")
    for name, value in (("--n", n), ("--k", k)):
        if value < 1:
            raise RefbenchError(f"{name} {value} is not positive", f"give {name} 1 or more")
    record = find_run(store, run)
    methods = list(record.get("metrics", {}))
    method = method or methods[0]
    if method not in methods:
        raise RefbenchError(f"run {record['run_id']} has no method {method!r}", f"its methods: {', '.join(methods)}")
    records = [r for r in Journal(store.root / record["run_id"] / JOURNAL).records() if r["method"] == method]
    types = sorted({r["phrase_type"] for r in records if r["phrase_type"]})
    if phrase_type is not None and phrase_type not in types:
        raise RefbenchError(f"run {record['run_id']} has no phrases of type {phrase_type!r}",
                            f"its types: {', '.join(types)}" if types else "its phrases carry no type: leave --type out")
    shown, matched = select(records, only, phrase_type, n, seed)
    if not shown:
        raise RefbenchError(f"no {only or 'phrases'} of {method}{f' of type {phrase_type}' if phrase_type else ''} in run {record['run_id']}",
                            "leave out --only or --type")
    cards = rescore(record, method, shown, k)
    filters = ", ".join(x for x in (only, phrase_type and f"type {phrase_type}") if x) or "none"
    header = [f"refbench show: {record['run_id']}",
              f"benchmark {record['benchmark']} · data {record['dataset_key']} · method {method} · {record['protocol']['rule']}",
              f"filters: {filters}; {len(cards)} of {matched} matching phrases (sent_id order, seeded sample, seed {seed})",
              agreement(cards)]
    rows = chart_rows(record, method)
    whiskers = "whiskers: 95% intervals" if all(r[3] for r in rows) else "no intervals recorded in this run"
    chart = gallery.chart(rows, f"{method}: accuracy % per phrase type ({whiskers})") if rows else None
    if fmt == ".png":
        write_atomic(out, gallery.png(gallery.grid(header, chart, [gallery.tile(c, k) for c in cards])))
    else:
        write_atomic(out, gallery.page(header, chart, rows, cards))
    return out, cards


def agreement(cards: list[Card]) -> str:
    """Whether the re-scored choices equal the journal's, naming the phrases where they differ."""
    checked = [c for c in cards if c.agrees is not None]
    if not checked:
        return "no choice among candidates to re-score"
    bad = [c.record["sent_id"] for c in checked if not c.agrees]
    text = f"re-scored choices equal the journal's for {len(checked) - len(bad)} of {len(checked)} phrases"
    return text + (f"; differ for sent_id {', '.join(map(str, bad))}" if bad else "")
