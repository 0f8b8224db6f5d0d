"""Cleaned splits: phrases left out of a benchmark by a list of sent_ids or a Ref-L4 review.

Ref-L4 (arXiv 2406.16866; ``refcocos_annotation_reviewed/refcoco{,+,g}_{split}_reviewed.json``
in the Hugging Face data set JierunChen/Ref-L4) reviewed RefCOCO's val and test expressions.
Its files are MDETR-style: one ``images[]`` entry per sentence (``id``, ``original_id`` the COCO
image id, ``caption`` refer's sentence) and one annotation per entry (``image_id`` the entry,
``original_id`` the ann_id, ``bbox``, ``caption_quality``: 0 marks an erroneous expression).
They carry no sent_id, so entries are matched to refer's sentences by image, ann_id and text
(lower case, punctuation and spacing ignored), the k-th equal text of a ref to its k-th
sentence. Entries that match nothing are counted and reported, never dropped silently.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import ImageItem


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@dataclass
class Exclusion:
    """What the exclusion files asked for and what they matched."""

    files: list[dict[str, Any]] = field(default_factory=list)  # path, sha256, kind, entries, unmatched
    sent_ids: set[int] = field(default_factory=set)  # to leave out, all present in the data
    unmatched: int = 0  # sent_ids absent from the data, or review entries that match no sentence

    @property
    def tag(self) -> str:
        """The data-key suffix, with a hash of the files: cleaned and uncleaned runs, and runs cleaned by
        different reviews (e.g. testA's alone against testA's and testB's), are never ranked together."""
        digest = sha256_of([f["sha256"] for f in self.files])[:6]
        if self.files and all(f["kind"] == "ref-l4" for f in self.files):
            return f"l4clean-{digest}"
        return f"excl-{digest}"

    def warning(self) -> str | None:
        if not self.unmatched:
            return None
        where = ", ".join(f"{Path(f['path']).name}: {f['unmatched']}" for f in self.files if f["unmatched"])
        return f"exclude: {self.unmatched} entries match no phrase of the selected splits ({where}); none of them is excluded"


def sha256_of(parts: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("".join(parts).encode()).hexdigest()


def load(paths: Sequence[Path], items: Sequence[ImageItem]) -> Exclusion:
    """Read every exclusion file against the selected items."""
    out = Exclusion()
    present = {r.sent_id for it in items for r in it.refs}
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RefbenchError(f"exclusion file not found: {path}", "fix dataset.exclude") from None
        except ValueError:
            data = None  # not JSON: one sent_id per line
        if isinstance(data, dict) and "images" in data and "annotations" in data:
            kind, wanted, unmatched, entries = "ref-l4", *_review(data, items, path)
        else:
            kind, ids = "sent_ids", _sent_ids(data, path)
            wanted = {i for i in ids if i in present}
            unmatched, entries = len(ids) - len(wanted), len(ids)
        out.sent_ids |= wanted
        out.unmatched += unmatched
        out.files.append({"path": str(path), "sha256": sha256(path), "kind": kind, "entries": entries,
                          "excluded": len(wanted), "unmatched": unmatched})
    return out


def _sent_ids(data: Any, path: Path) -> list[int]:
    if data is None:
        data = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip() and not x.startswith("#")]
    elif isinstance(data, int) and not isinstance(data, bool):
        data = [data]  # a file of one sent_id reads as one JSON number
    if not isinstance(data, list):
        data = None  # an object that is not a Ref-L4 review: refused below
    try:
        return [int(x) for x in data]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise RefbenchError(f"{path}: not a list of sent_ids nor a Ref-L4 reviewed file",
                            "give one sent_id per line, a JSON list of sent_ids, or refcoco*_reviewed.json") from None


def _review(data: dict[str, Any], items: Sequence[ImageItem], path: Path) -> tuple[set[int], int, int]:
    """sent_ids of the entries with caption_quality 0, entries that match no sentence, and entries."""
    sentences: dict[tuple[int, int, str], list[int]] = {}
    for item in items:
        for ref in sorted(item.refs, key=lambda r: r.sent_id):  # a ref's sentences in order
            sentences.setdefault((item.image_id, ref.ann_id, _words(ref.text)), []).append(ref.sent_id)
    try:
        quality = {int(a["image_id"]): (int(a["original_id"]), a.get("caption_quality")) for a in data["annotations"]}
        entries = [(int(e["id"]), int(e["original_id"]), str(e["caption"])) for e in data["images"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RefbenchError(f"{path}: a Ref-L4 entry lacks {exc}", "this is not a Ref-L4 reviewed file") from None
    seen: Counter[tuple[int, int, str]] = Counter()
    wanted, unmatched = set(), 0
    for entry_id, image_id, caption in entries:
        ann_id, score = quality.get(entry_id, (None, None))
        key = (image_id, ann_id, _words(caption))
        candidates = sentences.get(key, []) if ann_id is not None else []
        if seen[key] >= len(candidates):
            unmatched += 1
            continue
        sent_id = candidates[seen[key]]
        seen[key] += 1
        if score is not None and int(score) == 0:
            wanted.add(sent_id)
    return wanted, unmatched, len(entries)


def apply(items: list[ImageItem], exclusion: Exclusion) -> tuple[list[ImageItem], dict[str, int]]:
    """Items without the excluded phrases (images left without any dropped), and the count per split."""
    from dataclasses import replace

    per_split: Counter[str] = Counter()
    out = []
    for item in items:
        keep = tuple(r for r in item.refs if r.sent_id not in exclusion.sent_ids)
        per_split.update(r.split for r in item.refs if r.sent_id in exclusion.sent_ids)
        if keep:
            out.append(item if len(keep) == len(item.refs) else replace(item, refs=keep))
    return out, dict(sorted(per_split.items()))
