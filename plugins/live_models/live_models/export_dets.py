"""A proposals cache written out in MAttNet's detections format, for the ``detections`` proposer.

    refbench export-dets CACHE OUT_dets.json [--masks OUT_masks.json]
    python -m live_models.export_dets CACHE OUT_dets.json [--masks OUT_masks.json]   (the same)

``CACHE`` is one key folder of :mod:`live_models.cache` (run.json records it as the proposer's
``cache``), or a folder above exactly one such folder. ``OUT_dets.json`` is a JSON list of ``{det_id,
box: [x, y, w, h], image_id, category_id, category_name, score}`` as in MAttNet's
``<dataset>_<split_by>_dets.json``; ``--masks`` writes the masks too, each entry with ``rle``, as in
MAttNet's ``*_masks.json``. Every cached box is written (the model's raw output, best first per
image): the ``detections`` proposer's ``min_score`` and ``max_per_image`` select what
``score_threshold`` and ``max_count`` did. det_ids count from 1 in image-id order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from refbench import RefbenchError, write_atomic

FIX = "point it at the cache folder a run recorded (run.json: data.proposer.cache)"


def key_folder(path: Path) -> Path:
    """The key folder ``path`` names: itself, or the only key folder below it."""
    if (path / "key.json").is_file():
        return path
    if not path.is_dir():
        raise RefbenchError(f"cache folder not found: {path}", FIX)
    found = sorted(p.parent for p in path.rglob("key.json"))
    if len(found) != 1:
        listed = ", ".join(str(p) for p in found[:5]) + (", ..." if len(found) > 5 else "")
        raise RefbenchError(f"{path} holds {len(found)} cached proposal sets" + (f" ({listed})" if found else ""),
                            "name one of them (each holds a key.json saying which model and options made it)")
    return found[0]


def export(cache: Path, out: Path, masks: Path | None = None) -> dict[str, int]:
    """Write the detections (and masks) of ``cache``; returns the images and detections written."""
    from .cache import read_entry  # numpy and pycocotools, only when exporting (the CLI adds this command at each start)

    folder = key_folder(cache)
    per_image: dict[int, tuple[dict[str, Any], list[Any]]] = {}
    for path in sorted(folder.glob("*-*.json")):
        try:
            data, boxes = read_entry(path)
        except (OSError, ValueError, KeyError, TypeError, RefbenchError) as exc:
            raise RefbenchError(f"{path}: unreadable cache entry ({str(exc).splitlines()[0][:120]})",
                                "delete it (the next run computes it again), then export again") from None
        image_id = int(data["image_id"])
        if image_id in per_image and per_image[image_id][0]["file"] != data["file"]:
            raise RefbenchError(f"{folder} holds two images with id {image_id}: {per_image[image_id][0]['file']} and {data['file']}",
                                "use one cache: folder per data set, or export from a folder that held one data set")
        per_image[image_id] = (data, boxes)  # the same file seen twice (changed since): the newer name order wins
    dets, mask_rows = [], []
    for image_id in sorted(per_image):
        data, boxes = per_image[image_id]
        for box, category in zip(boxes, data["category_ids"]):
            det = {"det_id": len(dets) + 1, "box": [box.x, box.y, box.w, box.h], "image_id": image_id,
                   "category_id": int(category), "category_name": box.label, "score": box.score}
            dets.append(det)
            if masks is not None:
                if box.mask is None:
                    raise RefbenchError(f"image {image_id}: cached boxes without masks", "export masks from a mask model's "
                                        "cache (maskrcnn_*, sam_masks), or leave out --masks")
                mask_rows.append({**det, "rle": {"size": box.mask["size"], "counts": box.mask["counts"].decode("ascii")}})
    write_atomic(out, json.dumps(dets))
    if masks is not None:
        write_atomic(masks, json.dumps(mask_rows))
    return {"images": len(per_image), "detections": len(dets)}


def arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The command's arguments, on ``p``."""
    p.add_argument("cache", type=Path, help="a proposals cache folder (run.json: data.proposer.cache)")
    p.add_argument("out", type=Path, help="the detections file to write (MAttNet's format)")
    p.add_argument("--masks", type=Path, help="also write the masks (MAttNet's *_masks.json format)")
    return p


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """``refbench export-dets``, through refbench's ``refbench_add_commands`` hook."""
    p = subparsers.add_parser("export-dets", help="write a torchvision_detector or sam_masks cache as MAttNet detections "
                                                  "(live_models plugin)")
    arguments(p).set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Export, and say what was written; a :class:`refbench.RefbenchError` for bad input."""
    counts = export(args.cache, args.out, args.masks)
    print(f"wrote {counts['detections']} detections of {counts['images']} images to {args.out}"
          + (f" (masks: {args.masks})" if args.masks else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m live_models.export_dets``: bad input is one line and exit status 2."""
    args = arguments(argparse.ArgumentParser(prog="python -m live_models.export_dets", description=__doc__.split("\n\n")[0])
                     ).parse_args(argv)
    try:
        return run(args)
    except RefbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
