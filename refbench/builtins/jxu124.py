"""The ``jxu124`` data set: jxu124/refcoco, refcocoplus, refcocog (Hugging Face parquet; no images).

Layout (``<root>`` is the downloaded ``data/`` folder, or the folder above it)::

    <root>/<name>-00000-of-0000N.parquet   one row per ref with refer's own fields: ref_id, ann_id,
                                           image_id, split, sent_ids, sentences [{raw, sent, sent_id,
                                           tokens}], file_name, category_id; raw_anns and
                                           raw_image_info (JSON: the COCO annotation and image
                                           entries), image_path, bbox (xyxy pixels)
    <images>/<raw_image_info.file_name>    COCO train2014

The files' names are not refer's splits (``validation``; in refcoco and refcocoplus the file
named ``test`` holds testA), so rows are selected by their own ``split`` column with refer's
semantics, whatever file holds them. Boxes are read as xyxy and converted to xywh; the
difference is rounded to 1e-6 px, which undoes the float noise of the stored sums
(``381.84000000000003 - 265.35`` -> ``116.49``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from ..boxes import Box
from ..errors import RefbenchError
from .lmms_lab import boxes_of, missing_columns
from .layouts import LayoutDataset, check_boxes, image_folder_problems
from .reconcile import Row, split_takes

COLUMNS = ("ref_id", "ann_id", "image_id", "split", "sentences", "bbox", "raw_image_info")


def parquet_files(root: Path) -> list[Path]:
    for folder in (root, root / "data"):
        found = sorted(folder.glob("*.parquet"))
        if found:
            return found
    return []


def xyxy_to_xywh(x1: float, y1: float, x2: float, y2: float) -> Box:
    """The explicit conversion: width and height rounded to 1e-6 px (float noise of stored sums)."""
    return Box(x1, y1, round(x2 - x1, 6), round(y2 - y1, 6))


class Jxu124Dataset(LayoutDataset):
    """RefCOCO-family data in jxu124's parquet layout (refer's ids, xyxy boxes) with a COCO image folder."""

    LAYOUT = "jxu124"
    BOX_FORMAT = "xyxy"
    TEXTS_ARE = None  # sentences carry both raw and sent
    CARRIES_IDS = True

    class Options(LayoutDataset.Options):
        images: Path = Field(description="image folder (COCO train2014 for RefCOCO)")

    @classmethod
    def check_files(cls, options: Any) -> list[RefbenchError]:
        problems = image_folder_problems(options.images)
        if not options.root.is_dir():
            return problems
        files = parquet_files(options.root)
        if not files:
            return problems + [RefbenchError(f"no .parquet files under {options.root} or {options.root / 'data'}",
                                             "set dataset.root to the downloaded jxu124 data set (docs/getting-refcoco.md)")]
        try:
            return problems + [p for f in files if (p := missing_columns(f, COLUMNS, "jxu124")) is not None]
        except ImportError:
            return problems + [RefbenchError("pyarrow is not installed", "pip install pyarrow")]

    def read_rows(self) -> list[Row]:
        import pyarrow.parquet as pq

        splits = self.options.splits
        rows, seen_splits = [], set()
        taken = {s: 0 for s in splits}
        for path in parquet_files(self.options.root):
            self.files.append(path)
            table = pq.read_table(path, columns=list(COLUMNS))
            cols = {c: table.column(c).to_pylist() for c in COLUMNS if c != "bbox"}
            boxes = boxes_of(table.column("bbox"), path.name).tolist()
            info_cache: dict[str, dict[str, Any]] = {}
            chosen = []
            for i, row_split in enumerate(cols["split"]):
                seen_splits.add(str(row_split))
                split = next((s for s in splits if split_takes(s, str(row_split))), None)
                if split is None:
                    continue
                taken[split] += 1
                raw = cols["raw_image_info"][i]
                where = f"{path.name} row {i} (ref_id {cols['ref_id'][i]}, ann_id {cols['ann_id'][i]})"
                try:
                    info = info_cache.get(raw) or info_cache.setdefault(raw, json.loads(raw))
                    chosen.append((i, split, where, info["file_name"], int(info["width"]), int(info["height"])))
                except (ValueError, KeyError, TypeError) as exc:
                    raise RefbenchError(f"{where}: raw_image_info is not a COCO image entry ({type(exc).__name__}: {exc})",
                                        "the file is damaged; re-download it") from None
            check_boxes([(where, boxes[i], w, h) for i, _, where, _, w, h in chosen], "xyxy", "jxu124")
            for i, split, where, file_name, w, h in chosen:
                sents = cols["sentences"][i] or []
                try:
                    texts = tuple(str(s[self.text]) for s in sents)
                    rows.append(Row(where=where, split=split, image_id=int(cols["image_id"][i]), image=self.options.images / file_name,
                                    width=w, height=h, ann_id=int(cols["ann_id"][i]), box=xyxy_to_xywh(*boxes[i]),
                                    texts=texts, sent_ids=tuple(int(s["sent_id"]) for s in sents),
                                    ref_id=int(cols["ref_id"][i]), texts_are=self.text))
                except (KeyError, TypeError, ValueError) as exc:
                    raise RefbenchError(f"{where}: a sentence or id is malformed ({type(exc).__name__}: {exc})",
                                        "the file is damaged; re-download it") from None
                if not texts or not all(t.strip() for t in texts):
                    raise RefbenchError(f"{where}: a sentence has no {self.text!r} text",
                                        f"set dataset.text: {'raw' if self.text == 'sent' else 'sent'}")
        empty = [s for s, n in taken.items() if n == 0]
        if empty:
            raise RefbenchError(f"no row in split {', '.join(map(repr, empty))} under {self.options.root}",
                                f"the rows' splits are: {', '.join(sorted(seen_splits)) or 'none'}")
        return rows
