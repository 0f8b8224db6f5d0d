"""What the three download layouts of RefCOCO share: their rows as refs, ids matched to refer's.

Results are keyed by ``sent_id``, so every layout maps each sentence to refer's ``sent_id``
or says that it cannot. A layout reader turns its file rows into :class:`Row` (one referred
object with its sentences in refer's order, box already in xywh pixels) and hands them to
:func:`reconcile`:

* with refer's ``refs(<split_by>).p`` (``dataset.refs``), a row matches the ref of its
  ``ann_id`` when the image, the split and the sentences agree; its sentences then take
  that ref's ``sent_id``/``ref_id`` (and text). Rows without a match are excluded and
  counted, or kept (``unmatched: keep``) under synthesised ids and a data key of their own;
* without refs, a layout that carries refer's ids (jxu124) uses them; the others get
  synthesised ids, ``SYNTH_BASE + 100 * ann_id + k`` for the k-th sentence (stable across
  runs and files, and above every refer ``sent_id``), and a data key saying so.

An ``ann_id`` seen twice is kept once: a row that matches refer's ref before one that does
not, else the first in split order (refer counts a ref under the first requested split that
takes it).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from ..boxes import Box
from ..errors import RefbenchError
from ..interfaces import Annotation, ImageItem, Ref
from ..refer import load_refs_pickle

SYNTH_BASE = 10**14  # synthesised sent_ids start here: above refer's, below 2**53 for COCO's largest ann_id
MAX_SENTENCES = 100  # sentences per object a synthesised id can number


@dataclass(frozen=True, slots=True)
class Row:
    """One referred object as a layout stores it, converted to refer's terms."""

    where: str  # "val-00000-of-00001.parquet row 12 (question_id 345)": for messages
    split: str  # the split the layout files it under (refer's name)
    image_id: int
    image: Path  # the image file
    width: int
    height: int
    ann_id: int
    box: Box  # xywh pixels
    texts: tuple[str, ...]  # the layout's sentences, in refer's order
    sent_ids: tuple[int, ...] | None = None  # refer's ids, where the layout carries them
    ref_id: int | None = None
    texts_are: Literal["raw", "sent"] = "sent"  # which of refer's sentence fields ``texts`` hold


@dataclass
class Tally:
    """What reconciling did, recorded in results (``describe``) and printed when rows are left out."""

    rows: int = 0
    matched: int = 0  # rows whose sentences carry refer's sent_ids
    unmatched: int = 0  # rows with no ref in the refs file (or none given and no ids in the layout)
    kept_unmatched: int = 0
    synthesised: int = 0  # rows whose sentences got synthesised ids (kept unmatched, or no refs and no ids)
    duplicates: int = 0
    refer_missing: int = 0  # refs of the selected splits in the refs file that no row matched
    reasons: Counter = field(default_factory=Counter)
    unmatched_by_split: Counter = field(default_factory=Counter)

    def record(self) -> dict[str, Any]:
        return {"rows": self.rows, "matched": self.matched, "unmatched": self.unmatched,
                "unmatched_kept": self.kept_unmatched, "synthesised_ids": self.synthesised, "duplicates": self.duplicates,
                "refer_refs_missing": self.refer_missing,
                "unmatched_reasons": dict(sorted(self.reasons.items())),
                "unmatched_by_split": dict(sorted(self.unmatched_by_split.items()))}


class ReferIndex:
    """refer's refs, looked up by ``ann_id``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_ann: dict[int, dict[str, Any]] = {}
        for ref in load_refs_pickle(path):
            self.by_ann.setdefault(int(ref["ann_id"]), ref)


def split_takes(split: str, ref_split: str) -> bool:
    """Whether selecting ``split`` takes a ref filed under ``ref_split`` (refer's ``getRefIds``)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return split == ref_split


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _match(row: Row, ref: dict[str, Any] | None) -> str | None:
    """Why ``row`` is not ``ref`` (None: it is)."""
    if ref is None:
        return "ann_id not in refs"
    if int(ref["image_id"]) != row.image_id:
        return "other image"
    if not split_takes(row.split, str(ref["split"])):
        return "other split"
    sents = ref["sentences"]
    if row.sent_ids is not None and tuple(int(s["sent_id"]) for s in sents) != row.sent_ids:
        return "other sent_ids"
    if len(sents) != len(row.texts) or any(_norm(t) != _norm(s.get(row.texts_are, "")) for t, s in zip(row.texts, sents)):
        return "sentences differ"
    return None


def synth_sent_id(ann_id: int, k: int, where: str) -> int:
    if k >= MAX_SENTENCES:
        raise RefbenchError(f"{where}: {k + 1} sentences; synthesised sent_ids number at most {MAX_SENTENCES} per object",
                            "give refer's refs file (dataset.refs) so the sentences take refer's ids")
    return SYNTH_BASE + 100 * ann_id + k


def reconcile(rows: Sequence[Row], index: ReferIndex | None, text: Literal["sent", "raw"], keep_unmatched: bool,
              source: str, splits: Sequence[str] = ()) -> tuple[list[ImageItem], Tally]:
    """The rows as ImageItems (sorted by image id, phrases by sent_id) and what matching did.

    Each image's annotations are the referred objects of the loaded rows: the layouts store no
    other boxes."""
    tally = Tally(rows=len(rows))
    seen: set[int] = set()
    matched: set[int] = set()
    by_image: dict[int, list[Ref]] = {}
    images: dict[int, Row] = {}
    objects: dict[int, dict[int, Box]] = {}
    judged = []
    for row in rows:
        ref = index.by_ann.get(row.ann_id) if index is not None else None
        judged.append((row, ref, _match(row, ref) if index is not None else None))
    # Matching rows first: a row that is refer's ref keeps its ann_id against one that is not.
    for row, ref, why in [j for j in judged if j[2] is None] + [j for j in judged if j[2] is not None]:
        if why is not None:
            tally.unmatched += 1
            tally.reasons[why] += 1
            tally.unmatched_by_split[row.split] += 1
            if not keep_unmatched:
                continue
        if row.ann_id in seen:  # the object is loaded already (from a matching row, or an earlier split)
            tally.duplicates += 1
            continue
        seen.add(row.ann_id)
        if why is None and (index is not None or row.sent_ids is not None):
            tally.matched += 1
            matched.add(row.ann_id)
            if ref is not None:
                ids = [int(s["sent_id"]) for s in ref["sentences"]]
                ref_id = int(ref["ref_id"])
                texts = [_text(s, text, ref, index.path if index else source) for s in ref["sentences"]]
                types = [str(s.get("phrase_type", "")) for s in ref["sentences"]]  # SynthRef's; real refs have none
            else:  # the layout's own refer ids (jxu124 without a refs file)
                ids, ref_id, texts = list(row.sent_ids or ()), int(row.ref_id if row.ref_id is not None else row.ann_id), list(row.texts)
                types = [""] * len(texts)
        else:
            tally.kept_unmatched += why is not None
            tally.synthesised += 1
            ids = [synth_sent_id(row.ann_id, k, row.where) for k in range(len(row.texts))]
            ref_id, texts, types = row.ann_id, list(row.texts), [""] * len(row.texts)
        images.setdefault(row.image_id, row)
        objects.setdefault(row.image_id, {})[row.ann_id] = row.box
        refs = by_image.setdefault(row.image_id, [])
        for sent_id, phrase, phrase_type in zip(ids, texts, types):
            refs.append(Ref(sent_id=sent_id, ref_id=ref_id, ann_id=row.ann_id, text=phrase, box=row.box, split=row.split,
                            phrase_type=phrase_type))
    if index is not None:
        tally.refer_missing = sum(1 for ann_id, ref in index.by_ann.items() if ann_id not in matched
                                  and any(split_takes(s, str(ref["split"])) for s in splits))
    items = []
    for image_id in sorted(by_image):
        row = images[image_id]
        items.append(ImageItem(image_id=image_id, path=row.image, width=row.width, height=row.height,
                               refs=tuple(sorted(by_image[image_id], key=lambda r: r.sent_id)),
                               annotations=tuple(Annotation(a, b) for a, b in sorted(objects[image_id].items()))))
    return items, tally


def _text(sent: dict[str, Any], field_name: str, ref: dict[str, Any], source: Path | str) -> str:
    value = sent.get(field_name)
    if isinstance(value, str) and value.strip():
        return value
    raise RefbenchError(f"{source}: ref {ref['ref_id']} sentence {sent.get('sent_id')} has no {field_name!r} text",
                        "set dataset.text to the other field, or fix the refs file")


def announce(layout: str, tally: Tally, refs: Path | None, keep: bool) -> None:
    """One line on stderr when rows have no match in the refs file (a run's progress bar prints it above itself)."""
    if refs is None or not (tally.unmatched or tally.refer_missing):
        return
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(tally.reasons.items()))
    splits = ", ".join(f"{s} {n}" for s, n in sorted(tally.unmatched_by_split.items()))
    fate = ("kept under synthesised sent_ids (the data key says so)" if keep
            else "excluded (dataset.unmatched: keep runs them under a data key of their own)")
    missing = f"; {tally.refer_missing} refs of {refs.name} in these splits have no row" if tally.refer_missing else ""
    if tally.unmatched:
        print(f"{layout}: {tally.unmatched} of {tally.rows} rows have no match in {refs.name} ({reasons}; by split: {splits}): "
              f"{fate}{missing}", file=sys.stderr)
    else:
        print(f"{layout}: every row matches {refs.name}{missing}", file=sys.stderr)
