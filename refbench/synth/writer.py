"""The SynthRef driver: validates a spec, draws every image's scene and writes the data set's files."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from .masks import write_masks
from .phrases import MAX_SENTENCES, ref_dict
from .scene import make_scene
from .spec import PHRASE_TYPES, SHAPES, SPLITS, VARIANTS, SynthSpec, SynthSummary

FORMAT_VERSION = 1  # in SYNTHREF.json and instances.json; a root of another version is not reused


def generate(root: str | Path, spec: SynthSpec = SynthSpec(),
             progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Write SynthRef under ``root`` (see :mod:`refbench.synth`) and return its counts.

    A ``root`` already holding a complete data set of the same spec is left as it is;
    one of another spec raises ``FileExistsError``. An interrupted run leaves no
    ``SYNTHREF.json`` and is simply redone. ``progress(done, total)`` is called after
    each image.
    """
    validate(spec)
    root = Path(root)
    marker = root / "SYNTHREF.json"
    spec_record = json.loads(json.dumps(asdict(spec)))
    if marker.exists():
        stored = json.loads(marker.read_text(encoding="utf-8"))
        if stored.get("format_version") == FORMAT_VERSION and stored.get("spec") == spec_record:
            write_masks(root)  # a data set written before detection masks existed gets them
            return _summary_from_record(root, stored["summary"])
        raise FileExistsError(f"{root} already holds a SynthRef data set made from another spec or generator version; "
                              "pick another folder or delete it")

    image_dir = root / "images"
    for folder in (image_dir, root / "dets", *(root / v for v in VARIANTS)):
        folder.mkdir(parents=True, exist_ok=True)

    counts = {s: spec.images.get(s, 0) for s in SPLITS}
    total = sum(counts.values())
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    refs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    sent_ids = {v: 0 for v in VARIANTS}  # last sentence id used per variant
    image_id = ann_id = 0
    for split_index, split in enumerate(SPLITS):
        for image_index in range(counts[split]):
            # One generator per image: a split's images do not depend on the other splits' sizes.
            rng = np.random.default_rng([spec.seed, split_index, image_index])
            scene = make_scene(rng, spec, split)
            image_id += 1
            file_name = f"synthref_{image_id:012d}.jpg"
            images.append({"id": image_id, "file_name": file_name, "width": spec.canvas, "height": spec.canvas})
            ann_ids = []
            for ann in scene.anns:
                ann_id += 1
                ann_ids.append(ann_id)
                annotations.append({"id": ann_id, "image_id": image_id, **ann})
            for variant in VARIANTS:
                for target, sentences in scene.phrases[variant]:
                    category = scene.anns[target]["category_id"]
                    refs[variant].append(ref_dict(len(refs[variant]) + 1, sent_ids[variant] + 1, image_id,
                                                  ann_ids[target], category, split, sentences))
                    sent_ids[variant] += len(sentences)
            for box, category, score in scene.dets:
                detections.append({"det_id": len(detections) + 1, "box": box, "image_id": image_id,
                                   "category_id": category, "category_name": SHAPES[category - 1], "score": score})
            buf = io.BytesIO()
            scene.image.save(buf, "JPEG", quality=spec.jpeg_quality)
            write_atomic(image_dir / file_name, buf.getvalue(), durable=False)
            if progress is not None:
                progress(image_id, total)

    instances = {
        "info": {"description": "SynthRef: synthetic referring expressions in the refer format",
                 "version": FORMAT_VERSION, "seed": spec.seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)],
    }
    instances_bytes = json.dumps(instances, separators=(",", ":")).encode()
    dets_bytes = json.dumps(detections, separators=(",", ":")).encode()
    for variant in VARIANTS:
        write_atomic(root / variant / "instances.json", instances_bytes)
        write_atomic(root / variant / "refs(unc).p", pickle.dumps(refs[variant], protocol=2))
        write_atomic(root / "dets" / f"{variant}_unc_dets.json", dets_bytes)
    write_masks(root)

    summary = SynthSummary(
        root=root,
        images=counts,
        refs={v: {s: sum(r["split"] == s for r in refs[v]) for s in SPLITS} for v in VARIANTS},
        sentences={v: {s: sum(len(r["sentences"]) for r in refs[v] if r["split"] == s) for s in SPLITS}
                   for v in VARIANTS},
        phrase_types={v: {t: sum(x["phrase_type"] == t for r in refs[v] for x in r["sentences"]) for t in PHRASE_TYPES}
                      for v in VARIANTS},
        detections=len(detections),
    )
    record = {"format_version": FORMAT_VERSION, "spec": spec_record,
              "summary": {k: v for k, v in asdict(summary).items() if k != "root"}}
    # Written last: its presence marks the data set complete.
    write_atomic(marker, (json.dumps(record, indent=2) + "\n").encode())
    return summary


def validate(spec: SynthSpec) -> None:
    """Raise ``ValueError`` naming the first field of ``spec`` out of its range."""
    def pair(name: str, lo_min: int, hi_max: int) -> None:
        lo, hi = getattr(spec, name)
        if not lo_min <= lo <= hi <= hi_max:
            raise ValueError(f"SynthSpec.{name} = {(lo, hi)}: need {lo_min} <= min <= max <= {hi_max}")

    if spec.seed < 0:
        raise ValueError(f"SynthSpec.seed = {spec.seed}: must be >= 0")
    unknown = set(spec.images) - set(SPLITS)
    if unknown or any(n < 0 for n in spec.images.values()):
        raise ValueError(f"SynthSpec.images = {spec.images}: keys must be among {SPLITS}, counts >= 0")
    if spec.canvas < 48:
        raise ValueError(f"SynthSpec.canvas = {spec.canvas}: must be >= 48 pixels")
    pair("objects", 3, 8)  # a look-alike pair plus one unique object; more than 8 rarely fit
    pair("sentences_per_ref", 1, MAX_SENTENCES)
    pair("false_positives", 0, 20)
    for name in ("miss_rate", "hard_jitter_rate"):
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise ValueError(f"SynthSpec.{name} = {getattr(spec, name)}: must be in [0, 1]")
    if not 1 <= spec.jpeg_quality <= 100:
        raise ValueError(f"SynthSpec.jpeg_quality = {spec.jpeg_quality}: must be in [1, 100]")


def _summary_from_record(root: Path, record: Mapping[str, Any]) -> SynthSummary:
    return SynthSummary(root=root, images=dict(record["images"]), refs=record["refs"], sentences=record["sentences"],
                        phrase_types=record["phrase_types"], detections=int(record["detections"]))
