"""Reader for the refer API's on-disk format (RefCOCO, RefCOCO+, RefCOCOg, SynthRef).

Layout::

    <root>/<dataset>/refs(<split_by>).p    pickled list of refs
    <root>/<dataset>/instances.json        COCO images, annotations (boxes), categories
    <images>/<file_name>                   the COCO image folder (train2014 for RefCOCO)

``instances.json`` is read with ``json`` as the refer API itself does; pycocotools'
``COCO`` class would only add an index built here in three lines, and prints to stdout.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import Box
from .errors import RefbenchError
from .interfaces import Annotation, ImageItem, Ref

DETECTIONS_FIX = "download MAttNet's detections for this data set (docs/getting-refcoco.md: Real data) or use proposer: {plugin: gt}"
REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


class RestrictedUnpickler(pickle.Unpickler):
    """Loads only plain containers and scalars.

    A refs file is downloaded from the web; an ordinary unpickler would run any code it
    names. Lists, dicts, tuples, strings and numbers need no global lookup, so refusing
    every ``find_class`` call refuses exactly the dangerous part.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}'")


def load_refs_pickle(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    try:
        refs = RestrictedUnpickler(io.BytesIO(data), encoding="utf-8", errors="replace").load()
    except pickle.UnpicklingError as exc:
        raise RefbenchError(f"{path}: unsafe or corrupt refs pickle ({exc})",
                            "a refs file holds only lists, dicts, strings and numbers; re-download it from a trusted source") from None
    except Exception as exc:  # truncated files raise EOFError, ValueError, ...
        raise RefbenchError(f"{path}: corrupt refs pickle ({type(exc).__name__}: {exc})", "re-download or regenerate it") from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise RefbenchError(f"{path}: not a refs file (expected a list of ref dicts)", "point dataset.root at the refer data folder")
    for i, ref in enumerate(refs):
        missing = [k for k in REF_KEYS if k not in ref]
        if missing:
            raise RefbenchError(f"{path}: ref #{i} lacks {', '.join(missing)}", "the file is not in the refer format")
    return refs


SPLITS = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")


def select_split(refs: list[dict[str, Any]], split: str, source: Path | str = "the refs file") -> list[dict[str, Any]]:
    """refer's ``getRefIds(split=...)`` semantics, kept exactly (testA also takes testAB...). A split
    that selects no ref is an error naming the splits the refs file has."""
    if split in ("testA", "testB", "testC"):
        chosen = [r for r in refs if split[-1] in r["split"]]
    elif split in ("testAB", "testBC", "testAC", "train", "val"):
        chosen = [r for r in refs if r["split"] == split]
    elif split == "test":
        chosen = [r for r in refs if "test" in r["split"]]
    else:
        chosen = []
    if not chosen:
        present = sorted({str(r["split"]) for r in refs})
        what = "unknown split" if split not in SPLITS else "no ref in split"
        raise RefbenchError(f"{what} {split!r} in {source}", f"its splits are: {', '.join(present) or 'none'}")
    return chosen


@dataclass(frozen=True)
class ReferFiles:
    refs: Path
    instances: Path
    images: Path


def locate(root: Path, dataset: str, split_by: str, images: Path) -> tuple[ReferFiles, list[RefbenchError]]:
    """Where the data set's files are, and every one of them that is missing."""
    folder = root / dataset
    files = ReferFiles(folder / f"refs({split_by}).p", folder / "instances.json", images)
    problems = []
    for path in (files.refs, files.instances):
        if not path.is_file():
            problems.append(RefbenchError(
                f"{dataset} data not found: {path} is missing",
                f"unpack the refer data set '{dataset}' under {root} (docs/getting-refcoco.md: Real data)"
                if not dataset.startswith("synthref") else f"generate it with `refbench synth {root}`"))
    if not images.is_dir():
        problems.append(RefbenchError(f"image folder not found: {images}",
                                      "set dataset.images to the folder holding the data set's images (docs/getting-refcoco.md: Real data)"))
    return files, problems


def load_instances(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {int(i["id"]): i for i in data["images"]}
        anns = {int(a["id"]): a for a in data["annotations"]}
        cats = {int(c["id"]): c["name"] for c in data.get("categories", [])}
    except (ValueError, KeyError, TypeError) as exc:
        raise RefbenchError(f"{path}: corrupt instances.json ({type(exc).__name__}: {exc})",
                            "re-download or regenerate it") from None
    return {"images": images, "anns": anns, "cats": cats}


def _box(bbox: Any, where: str) -> Box:
    try:
        x, y, w, h = bbox
        return Box(float(x), float(y), float(w), float(h))
    except (TypeError, ValueError):
        raise RefbenchError(f"{where}: bbox {bbox!r} is not [x, y, w, h]", "the annotations file is corrupt") from None


def load_items(files: ReferFiles, splits: list[str], text_field: str = "sent") -> list[ImageItem]:
    """Every image with a phrase in ``splits``, phrases grouped by image, sorted by image id.

    A ref matching several requested splits (``test`` and ``testA``) counts under the first.
    """
    refs = load_refs_pickle(files.refs)
    coco = load_instances(files.instances)
    try:
        return _items(files, refs, coco, splits, text_field)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RefbenchError(f"{files.refs} or {files.instances.name}: a ref, sentence, annotation or image entry is malformed "
                            f"({type(exc).__name__}: {exc})", "re-download or regenerate the data set") from None


def _items(files: ReferFiles, refs: list[dict[str, Any]], coco: dict[str, Any], splits: list[str],
           text_field: str) -> list[ImageItem]:
    chosen: dict[int, tuple[str, dict[str, Any]]] = {}
    problems = []
    for split in splits:
        try:
            for ref in select_split(refs, split, files.refs):
                chosen.setdefault(int(ref["ref_id"]), (split, ref))
        except RefbenchError as exc:
            problems.append(exc)
    if problems:
        raise RefbenchError.many(problems)
    by_image: dict[int, list[Ref]] = {}
    for split, ref in chosen.values():
        ann = coco["anns"].get(int(ref["ann_id"]))
        if ann is None:
            raise RefbenchError(f"{files.refs}: ref {ref['ref_id']} names annotation {ref['ann_id']}, absent from instances.json",
                                "the refs and instances files come from different data sets")
        box = _box(ann["bbox"], f"annotation {ann['id']}")
        for sent in ref["sentences"]:
            by_image.setdefault(int(ref["image_id"]), []).append(Ref(
                sent_id=int(sent["sent_id"]), ref_id=int(ref["ref_id"]), ann_id=int(ref["ann_id"]),
                text=_text(sent, text_field, ref, files.refs), box=box, split=split, phrase_type=str(sent.get("phrase_type", "")),
            ))
    anns_by_image: dict[int, list[Annotation]] = {i: [] for i in by_image}  # only the selected images' annotations
    for ann in coco["anns"].values():
        anns = anns_by_image.get(int(ann["image_id"]))
        if anns is not None:
            anns.append(Annotation(int(ann["id"]), _box(ann["bbox"], f"annotation {ann['id']}"),
                                   coco["cats"].get(int(ann.get("category_id", -1)), ""), _compact(ann.get("segmentation"))))
    items = []
    for image_id in sorted(by_image):
        info = coco["images"].get(image_id)
        if info is None:
            raise RefbenchError(f"{files.refs}: image {image_id} is not in instances.json",
                                "the refs and instances files come from different data sets")
        items.append(ImageItem(
            image_id=image_id, path=files.images / info["file_name"], width=int(info["width"]), height=int(info["height"]),
            refs=tuple(sorted(by_image[image_id], key=lambda r: r.sent_id)),
            annotations=tuple(sorted(anns_by_image.get(image_id, []), key=lambda a: a.id)),
        ))
    return items


def _compact(segmentation: Any) -> Any:
    """Polygons as float64 arrays (a 35-point polygon takes 672 bytes, against 2,344 as a list of
    Python floats); RLE, and anything malformed (checked when a mask is asked for), as read."""
    if isinstance(segmentation, list) and all(isinstance(p, list) and all(isinstance(v, (int, float)) for v in p) for p in segmentation):
        return tuple(np.asarray(p, dtype=np.float64) for p in segmentation)
    return segmentation


def _text(sent: dict[str, Any], field: str, ref: dict[str, Any], source: Path) -> str:
    """The sentence's ``field`` (``sent`` or ``raw``); never a silent fallback to the other or to ''."""
    text = sent.get(field)
    if isinstance(text, str) and text.strip():
        return text
    other = "raw" if field == "sent" else "sent"
    fix = (f"set dataset.text: {other} (this sentence has {other!r} text)" if isinstance(sent.get(other), str) and sent[other].strip()
           else "fix or regenerate the refs file")
    raise RefbenchError(f"{source}: ref {ref['ref_id']} sentence {sent.get('sent_id')} has no {field!r} text", fix)


def read_detection_list(path: Path, what: str = "detections") -> list[Any]:
    """The JSON list of a detections file (MAttNet's, possibly wrapped as ``{"dets": [...]}``, or a
    COCO results file)."""
    if not path.is_file():
        raise RefbenchError(f"{what} file not found: {path}", DETECTIONS_FIX)
    try:
        dets = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"{path}: corrupt {what} file ({exc})", "re-download or regenerate it") from None
    if isinstance(dets, dict) and "dets" in dets:  # some releases wrap the list
        dets = dets["dets"]
    if not isinstance(dets, list):
        raise RefbenchError(f"{path}: expected a JSON list of {what}", "use MAttNet's <dataset>_<split_by>_dets.json")
    return dets


def load_detections(path: Path, ids: dict[int, list[int | None]] | None = None) -> dict[int, list[Box]]:
    """Boxes per image id, in file order, from a MAttNet detection file (a JSON list of {det_id, box
    [x,y,w,h], image_id, category_id, category_name, score}) or a COCO results file ({image_id,
    category_id, bbox, score}). ``ids``, when given, receives each image's det_ids in the same order
    (None where an entry has none)."""
    out: dict[int, list[Box]] = {}
    for i, det in enumerate(read_detection_list(path)):
        try:
            x, y, w, h = det["box"] if "box" in det else det["bbox"]
            box = Box(float(x), float(y), float(w), float(h), float(det.get("score", 1.0)), str(det.get("category_name", "")))
            image_id = int(det["image_id"])
            det_id = int(det["det_id"]) if "det_id" in det else None
        except (KeyError, TypeError, ValueError):
            raise RefbenchError(f"{path}: detection #{i} is not {{box: [x, y, w, h], image_id, score}}: {str(det)[:80]}",
                                "fix or regenerate the detections file") from None
        out.setdefault(image_id, []).append(box)
        if ids is not None:
            ids.setdefault(image_id, []).append(det_id)
    return out
