"""SynthRef in the three download layouts of RefCOCO, written from its refer-layout files.

The same refs, sentences, boxes and images as ``<root>/<variant>/``, so every reader runs on
real code paths offline and a benchmark gives the same predictions through each::

    <root>/lmms-lab/<variant>/data/<split>-00000-of-00001.parquet   val, testA, testB (no train, as
                                                                     lmms-lab); images embedded
    <root>/jxu124/<variant>/data/<name>-00000-of-00001.parquet      train, validation, test (= testA,
                                                                     as in jxu124/refcoco), testB
    <root>/mdetr/finetune_<variant>_<split>.json                    train, val, testA, testB

Each file keeps its layout's traps: lmms-lab's boxes are float32 and its rows have no
sent_id, ref_id or image_id; jxu124's boxes are xyxy sums (float noise included); MDETR has
one entry per sentence with running ids. Fields whose content the layouts' sources do not
document are filled plainly: lmms-lab's ``question`` with lmms-eval's region prompt,
MDETR's token spans with the whole caption.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..refer import load_refs_pickle
from .spec import SPLITS, VARIANTS

LAYOUTS = ("lmms-lab", "jxu124", "mdetr")
LMMS_SPLITS = ("val", "testA", "testB")
JXU124_FILES = {"train": "train", "val": "validation", "testA": "test", "testB": "testB"}
QUESTION = "Provide a short description for this region."


def write_layouts(root: str | Path, layouts: Iterable[str] = LAYOUTS, variants: Iterable[str] = VARIANTS) -> list[Path]:
    """Write ``layouts`` of SynthRef's ``variants`` under ``root`` (already generated); returns the files.

    Files are replaced atomically, and equal inputs give equal bytes."""
    root = Path(root)
    layouts = list(layouts)
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown layout {', '.join(unknown)}; the layouts are {', '.join(LAYOUTS)}")
    instances = json.loads((root / "synthref" / "instances.json").read_text(encoding="utf-8"))
    images = {im["id"]: im for im in instances["images"]}
    anns = {a["id"]: a for a in instances["annotations"]}
    written: list[Path] = []
    for variant in variants:
        refs = load_refs_pickle(root / variant / "refs(unc).p")
        by_split = {s: [r for r in refs if r["split"] == s] for s in SPLITS}
        for layout in layouts:
            if layout == "lmms-lab":
                for split in LMMS_SPLITS:
                    if by_split[split]:
                        path = root / "lmms-lab" / variant / "data" / f"{split}-00000-of-00001.parquet"
                        _write_parquet(path, _lmms_table(root, by_split[split], images, anns))
                        written.append(path)
            elif layout == "jxu124":
                for split, name in JXU124_FILES.items():
                    if by_split[split]:
                        path = root / "jxu124" / variant / "data" / f"{name}-00000-of-00001.parquet"
                        _write_parquet(path, _jxu124_table(by_split[split], images, anns))
                        written.append(path)
            else:
                for split in SPLITS:
                    if by_split[split]:
                        path = root / "mdetr" / f"finetune_{variant}_{split}.json"
                        write_atomic(path, json.dumps(_mdetr(variant, by_split[split], instances, images, anns),
                                                      separators=(",", ":")), durable=False)
                        written.append(path)
    return written


def _write_parquet(path: Path, table: Any) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_atomic(path, buf.getvalue(), durable=False)


def _lmms_table(root: Path, refs: list[dict[str, Any]], images: dict[int, Any], anns: dict[int, Any]) -> Any:
    import pyarrow as pa

    schema = pa.schema([("question_id", pa.string()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("question", pa.string()), ("answer", pa.list_(pa.string())),
                        ("segmentation", pa.list_(pa.float32())), ("bbox", pa.list_(pa.float32())),
                        ("iscrowd", pa.int8()), ("file_name", pa.string())])
    rows = []
    for ref in refs:
        ann, image = anns[ref["ann_id"]], images[ref["image_id"]]
        data = (root / "images" / image["file_name"]).read_bytes()
        rows.append({"question_id": str(ref["ann_id"]), "image": {"bytes": data, "path": image["file_name"]},
                     "question": QUESTION, "answer": [s["raw"] for s in ref["sentences"]],
                     "segmentation": ann["segmentation"][0], "bbox": ann["bbox"], "iscrowd": ann["iscrowd"],
                     "file_name": ref["file_name"]})
    return pa.Table.from_pylist(rows, schema=schema)


def _jxu124_table(refs: list[dict[str, Any]], images: dict[int, Any], anns: dict[int, Any]) -> Any:
    import pyarrow as pa

    sentence = pa.struct([("raw", pa.string()), ("sent", pa.string()), ("sent_id", pa.int64()), ("tokens", pa.list_(pa.string()))])
    schema = pa.schema([("sent_ids", pa.list_(pa.int64())), ("file_name", pa.string()), ("ann_id", pa.int64()),
                        ("ref_id", pa.int64()), ("image_id", pa.int64()), ("split", pa.string()),
                        ("sentences", pa.list_(sentence)), ("category_id", pa.int64()), ("raw_anns", pa.string()),
                        ("raw_image_info", pa.string()), ("raw_sentences", pa.string()), ("image_path", pa.string()),
                        ("bbox", pa.list_(pa.float64())), ("captions", pa.list_(pa.string())),
                        ("global_image_id", pa.string())])
    rows = []
    for ref in refs:
        ann, image = anns[ref["ann_id"]], images[ref["image_id"]]
        x, y, w, h = ann["bbox"]
        sents = [{k: s[k] for k in ("raw", "sent", "sent_id", "tokens")} for s in ref["sentences"]]
        rows.append({"sent_ids": ref["sent_ids"], "file_name": ref["file_name"], "ann_id": ref["ann_id"], "ref_id": ref["ref_id"],
                     "image_id": ref["image_id"], "split": ref["split"], "sentences": sents,
                     "category_id": ref["category_id"], "raw_anns": json.dumps(ann), "raw_image_info": json.dumps(image),
                     "raw_sentences": json.dumps(sents), "image_path": f"images/{image['file_name']}",
                     "bbox": [x, y, x + w, y + h], "captions": [s["sent"] for s in sents],
                     "global_image_id": f"synthref.{ref['image_id']}"})
    return pa.Table.from_pylist(rows, schema=schema)


def _mdetr(variant: str, refs: list[dict[str, Any]], instances: dict[str, Any], images: dict[int, Any],
           anns: dict[int, Any]) -> dict[str, Any]:
    entries, objects = [], []
    for ref in refs:
        ann, image = anns[ref["ann_id"]], images[ref["image_id"]]
        for s in ref["sentences"]:
            entry_id = len(entries)
            entries.append({"file_name": image["file_name"], "height": image["height"], "width": image["width"],
                            "id": entry_id, "original_id": ref["image_id"], "caption": s["sent"], "dataset_name": variant,
                            "tokens_negative": []})
            objects.append({"area": ann["area"], "iscrowd": ann["iscrowd"], "image_id": entry_id,
                            "category_id": ref["category_id"], "id": entry_id, "bbox": ann["bbox"],
                            "original_id": ref["ann_id"], "tokens_positive": [[0, len(s["sent"])]]})
    return {"info": instances["info"], "licenses": [], "images": entries, "annotations": objects,
            "categories": instances["categories"]}
