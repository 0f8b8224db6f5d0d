"""An on-disk cache of per-image proposals: a model's boxes (and masks) computed once per image.

Layout: ``<folder>/<component>/<key>/`` holds ``key.json`` (what the key is made of: the model's
name, the sha256 of its weight files, the options that change its output, the library version) and
one ``<image_id>-<digest>.json`` per image, where the digest covers the image file's bytes (and, for
a component that refines another's boxes, those boxes). Any change of model, weights or such
options is another key folder; any change of an image is another entry. Entries are written
atomically (:func:`refbench.write_atomic`), so a killed run leaves whole entries only; an entry that
does not read back (truncated by a crash of the machine, edited by hand) is counted and recomputed.

The default folder is ``$REFBENCH_CACHE``, else ``$XDG_CACHE_HOME/refbench``, else
``~/.cache/refbench``: a user cache, shared by every run and benchmark on the machine (results
folders hold runs, which are published; proposals are reused across them).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refbench import Box, ImageItem, RefbenchError, mask_rle, sha256, write_atomic

FORMAT = 1  # the entry layout; a change makes old entries misses


def default_folder() -> Path:
    """Where proposals are cached unless a component's ``cache:`` names a folder."""
    if os.environ.get("REFBENCH_CACHE"):
        return Path(os.environ["REFBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "refbench"


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def weights_sha256(path: Path, folder: Path) -> str:
    """The sha256 of a weight file's bytes, remembered in ``folder/weights.json`` by path, size and
    modification time, so a 2 GB file is read once rather than at every start."""
    stat = path.stat()
    memo_path = folder / "weights.json"
    token = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    if isinstance(memo.get(token), str):
        return memo[token]
    value = sha256(path)
    memo[token] = value
    try:
        write_atomic(memo_path, json.dumps(memo, indent=1, sort_keys=True), durable=False)
    except OSError:  # a read-only cache still works; it only hashes again next time
        pass
    return value


@dataclass
class Cache:
    """One component's cached results under one key; counts what it found.

    ``key`` is everything that changes the output besides the image: see the module docstring."""

    folder: Path
    component: str
    key: dict[str, Any]
    reuse: bool = True  # False: compute every image again (and overwrite its entry)
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = self.folder / self.component / digest(self.key)[:16]

    def open(self) -> None:
        """Check, before any image, that the cache folder can be written: one line if not. The key
        folder and its ``key.json`` are written with the first entry."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            writable = os.access(self.folder, os.W_OK)
        except OSError as exc:
            writable, why = False, exc.strerror or str(exc)
        else:
            why = "not writable"
        if not writable:
            raise RefbenchError(f"cache folder {self.folder} cannot be written ({why})",
                                "set the component's cache: option to a writable folder, or REFBENCH_CACHE")

    def entry(self, item: ImageItem, extra: Any = None) -> Path:
        """The file of ``item``'s entry (``extra``: the input besides the image, e.g. boxes to refine)."""
        try:
            image = sha256(item.path)
        except OSError:
            raise RefbenchError(f"image {item.image_id} not found: {item.path}",
                                "check dataset.images points at the folder holding the data set's images") from None
        return self.dir / f"{item.image_id}-{digest([image, extra])[:16]}.json"

    def get(self, item: ImageItem, extra: Any = None) -> list[Box] | None:
        """The cached boxes of ``item``, or None (a miss, also counted for an unreadable entry)."""
        path = self.entry(item, extra)
        if not self.reuse or not path.is_file():
            self.misses += 1
            return None
        try:
            _, boxes = read_entry(path, item.height, item.width)
        except (OSError, ValueError, KeyError, TypeError, RefbenchError) as exc:
            self.corrupt += 1
            self.misses += 1
            if len(self.problems) < 3:
                self.problems.append(f"{path.name}: {str(exc).splitlines()[0][:120]}")
            return None
        self.hits += 1
        return boxes

    def put(self, item: ImageItem, boxes: list[Box], extra: Any = None, category_ids: list[int] | None = None) -> None:
        """Write ``item``'s entry atomically (no fsync: an entry lost to a power cut is computed again)."""
        if not (self.dir / "key.json").is_file():
            write_atomic(self.dir / "key.json", json.dumps({"component": self.component, **self.key}, indent=1, sort_keys=True))
        write_atomic(self.entry(item, extra), json.dumps(entry_json(item, boxes, category_ids)), durable=False)

    def report(self) -> str | None:
        """A line on reuse: hits, misses, entries that did not read back."""
        total = self.hits + self.misses
        if not total:
            return None
        line = f"{self.component} cache: {self.hits} of {total} images reused, {self.misses} computed ({self.dir})"
        if self.corrupt:
            line += f"; {self.corrupt} unreadable entr{'ies' if self.corrupt > 1 else 'y'} computed again ({'; '.join(self.problems)})"
        return line

    def describe(self) -> dict[str, Any]:
        """What run.json records: the key and where its entries are (never the counts, which change on a resume)."""
        return {"cache": str(self.dir), "key": self.key}


def entry_json(item: ImageItem, boxes: list[Box], category_ids: list[int] | None = None) -> dict[str, Any]:
    """The JSON of an image's entry: boxes (xywh), scores, labels, COCO category ids and compressed-RLE masks."""
    masks = [b.mask for b in boxes]
    return {"format": FORMAT, "image_id": item.image_id, "file": str(item.path), "width": item.width, "height": item.height,
            "boxes": [[b.x, b.y, b.w, b.h] for b in boxes], "scores": [b.score for b in boxes],
            "labels": [b.label for b in boxes],
            "category_ids": category_ids if category_ids is not None else [0] * len(boxes),
            "masks": None if all(m is None for m in masks) else [_counts(m) for m in masks]}


def read_entry(path: Path, height: int | None = None, width: int | None = None) -> tuple[dict[str, Any], list[Box]]:
    """An entry's JSON and its boxes, masks checked against the image size (when given); raises
    OSError, ValueError, KeyError, TypeError or RefbenchError on anything malformed."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"entry format {data.get('format')!r}, expected {FORMAT}")
    h, w = int(data["height"]), int(data["width"])
    if (height, width) != (None, None) and (h, w) != (height, width):
        raise ValueError(f"entry is for a {w}x{h} image, this one is {width}x{height}")
    n = len(data["boxes"])
    masks = data["masks"] if data["masks"] is not None else [None] * n
    if not all(len(data[k]) == n for k in ("scores", "labels", "category_ids")) or len(masks) != n:
        raise ValueError("entry lists of different lengths")
    out = []
    for i, ((x, y, bw, bh), score, label, m) in enumerate(zip(data["boxes"], data["scores"], data["labels"], masks)):
        rle = None if m is None else mask_rle({"size": [h, w], "counts": m}, h, w, f"mask {i}")
        out.append(Box(float(x), float(y), float(bw), float(bh), float(score), str(label), mask=rle))
    return data, out


def _counts(mask: Any) -> str | None:
    if mask is None:
        return None
    counts = mask["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)
