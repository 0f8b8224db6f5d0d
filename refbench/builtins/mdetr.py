"""The ``mdetr`` data set: MDETR's finetune_<dataset>_<split>.json (also read by mmdetection's grounding configs).

Layout::

    <root>/finetune_refcoco_testA.json   COCO-style JSON, one images[] entry per sentence: id (a running
                                         number), original_id (the COCO image id), caption (refer's
                                         sent), file_name, height, width, dataset_name,
                                         tokens_negative; exactly one annotation per entry: image_id
                                         (the entry's id), bbox (xywh pixels), original_id (the
                                         ann_id), category_id, tokens_positive
    <images>/<file_name>                 COCO train2014

MDETR's converter writes one entry per sentence of each ref, the ref's sentences in refer's
order, so the entries of one ``ann_id`` are one ref's sentences. There is no sent_id or ref_id:
refer's refs file supplies them (``reconcile``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field

from ..boxes import Box
from ..errors import RefbenchError
from .layouts import LayoutDataset, check_boxes, image_folder_problems
from .reconcile import Row


def split_file(root: Path, dataset: str, split: str) -> Path:
    return root / f"finetune_{dataset}_{split}.json"


class MdetrDataset(LayoutDataset):
    """RefCOCO-family data in MDETR's COCO-style JSON (one entry per sentence) with a COCO image folder."""

    LAYOUT = "mdetr"
    BOX_FORMAT = "xywh"
    TEXTS_ARE = "sent"

    class Options(LayoutDataset.Options):
        images: Path = Field(description="image folder (COCO train2014 for RefCOCO)")

    @classmethod
    def check_files(cls, options: Any) -> list[RefbenchError]:
        problems = image_folder_problems(options.images)
        if options.root.is_dir():
            for split in options.splits:
                path = split_file(options.root, options.dataset, split)
                if not path.is_file():
                    present = sorted(p.stem.removeprefix(f"finetune_{options.dataset}_")
                                     for p in options.root.glob(f"finetune_{options.dataset}_*.json"))
                    problems.append(RefbenchError(f"MDETR file not found: {path}",
                                                  f"its splits here are: {', '.join(present) or 'none'} (docs/getting-refcoco.md)"))
        return problems

    def read_rows(self) -> list[Row]:
        rows = []
        for split in self.options.splits:
            path = split_file(self.options.root, self.options.dataset, split)
            self.files.append(path)
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                entries, anns = data["images"], data["annotations"]
            except (ValueError, KeyError, TypeError) as exc:
                raise RefbenchError(f"{path}: not MDETR's COCO-style JSON ({type(exc).__name__}: {exc})",
                                    "re-download it") from None
            by_entry: dict[Any, list[dict[str, Any]]] = {}
            for ann in anns:
                by_entry.setdefault(ann.get("image_id"), []).append(ann)
            groups: dict[int, dict[str, Any]] = {}  # ann_id -> the ref's entries, in file order
            for i, entry in enumerate(entries):
                where = f"{path.name} images[{i}] (id {entry.get('id')}, original_id {entry.get('original_id')})"
                found = by_entry.get(entry.get("id"), [])
                if len(found) != 1:
                    raise RefbenchError(f"{where}: {len(found)} annotations; MDETR's layout has exactly one per entry",
                                        "the file is not in MDETR's layout")
                try:
                    ann = found[0]
                    ann_id = int(ann["original_id"])
                    group = groups.setdefault(ann_id, {"where": where, "entry": entry, "ann": ann, "texts": []})
                    if int(entry["original_id"]) != int(group["entry"]["original_id"]):
                        raise RefbenchError(f"{where}: ann_id {ann_id} also appears on image {group['entry']['original_id']}",
                                            "the file is damaged; re-download it")
                    group["texts"].append(str(entry["caption"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise RefbenchError(f"{where}: lacks caption, original_id or its annotation's original_id "
                                        f"({type(exc).__name__}: {exc})", "the file is not in MDETR's layout") from None
            check_boxes([(g["where"], g["ann"]["bbox"], int(g["entry"]["width"]), int(g["entry"]["height"]))
                         for g in groups.values()], "xywh", "mdetr")
            for ann_id, g in groups.items():
                entry, (x, y, w, h) = g["entry"], g["ann"]["bbox"]
                rows.append(Row(where=g["where"], split=split, image_id=int(entry["original_id"]),
                                image=self.options.images / entry["file_name"], width=int(entry["width"]),
                                height=int(entry["height"]), ann_id=ann_id, box=Box(float(x), float(y), float(w), float(h)),
                                texts=tuple(g["texts"]), texts_are="sent"))
        return rows
