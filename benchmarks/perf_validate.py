"""`refbench validate` on a RefCOCO-sized data set: wall time of the whole command, fresh processes.

Generates (numpy, seeded; once, then reused from --data) a data set the size of RefCOCO in
refer's exact on-disk layout:
  <root>/refcoco/refs(unc).p      pickled (protocol 2) list of ref dicts, RefCOCO's keys and
                                  key order: sent_ids, file_name, ann_id, ref_id, image_id,
                                  split, sentences [{tokens, raw, sent_id, sent}], category_id
  <root>/refcoco/instances.json   COCO: images [{id, file_name, width, height}], annotations
                                  [{id, image_id, bbox [x,y,w,h], category_id, area, iscrowd,
                                  segmentation (a polygon)}], categories (COCO's 80)
  <root>/images/<file_name>       one small valid JPEG of the image's size per COCO-like size,
                                  its bytes written to every path (validate does not decode)
  <root>/dets/refcoco_unc_dets.json   MAttNet format [{det_id, box, image_id, category_id,
                                      category_name, score}]
  <root>/validate.yaml            refer data set (splits [testA]), detections proposer, one
                                  random method
Defaults: 20,000 images (sizes like COCO's, ~640x480), ~10 annotations and ~10 detections an
image (all boxes inside the image), 2-3 refs an image (~50,000), 1-3 sentences a ref. Every
image has a testA ref (most refs are testA, the rest train/val/testB), so validating testA
selects all images. Generation takes well under 2 minutes.

Then times `refbench validate <root>/validate.yaml` (one untimed warm-up call, then the median
of --repeats fresh processes; target <= 10 s) and prints the counts and whether the target is
met. With --bad N, also writes a copy of the detections with N invalid boxes spread evenly over
the images (cycling: degenerate w=0, non-finite NaN/Infinity, far outside the image) and its
YAML, and times validate on that too: it should exit 2 and list the problems.

    python benchmarks/perf_validate.py
    python benchmarks/perf_validate.py --bad 12
    python benchmarks/perf_validate.py --images 2000 --repeats 5      # a smaller, quicker set
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REFBENCH = Path(sys.executable).parent / "refbench"
TARGET_S = 10.0
FORMAT = 1  # bump when the generated files change, so cached folders are remade
NAME = "refcoco"

# COCO's 80 categories (ids 1..90 with gaps), as in instances.json
COCO = {1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train", 8: "truck",
        9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter", 15: "bench",
        16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear",
        24: "zebra", 25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
        34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat",
        40: "baseball glove", 41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle",
        46: "wine glass", 47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
        54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut",
        61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
        72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone", 78: "microwave",
        79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase",
        87: "scissors", 88: "teddy bear", 89: "hair drier", 90: "toothbrush"}
# (width, height), weight: COCO's common image sizes
SIZES = [((640, 480), 0.40), ((480, 640), 0.12), ((640, 427), 0.18), ((427, 640), 0.06),
         ((640, 426), 0.10), ((500, 375), 0.06), ((640, 360), 0.05), ((612, 612), 0.03)]
WORDS = ("man woman guy girl boy kid person lady player left right middle center top bottom front back "
         "red blue white black green yellow brown dark light big small tall short far near closest "
         "shirt jacket hat chair table car bus dog cat horse umbrella plate cup bowl pizza cake "
         "the in on with of at next to behind holding wearing standing sitting").split()
SPLITS_OTHER = ("train", "val", "testB")


def jpeg(width: int, height: int) -> bytes:
    """A valid, small, flat grey JPEG of this size (its header agrees with instances.json)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 118).save(buf, "JPEG", quality=5)
    return buf.getvalue()


def _dump(path: Path, obj: object) -> int:
    data = json.dumps(obj, separators=(",", ":")).encode()
    path.write_bytes(data)
    return len(data)


def _boxes(rng: np.random.Generator, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """[N, 4] xywh boxes inside their images (W, H per box), 2 decimals, rounded inwards."""
    bw = np.floor(w * rng.uniform(0.04, 0.7, len(w)) * 100) / 100
    bh = np.floor(h * rng.uniform(0.04, 0.7, len(h)) * 100) / 100
    x = np.floor((w - bw) * rng.random(len(w)) * 100) / 100
    y = np.floor((h - bh) * rng.random(len(h)) * 100) / 100
    return np.stack([x, y, np.maximum(bw, 1.0), np.maximum(bh, 1.0)], axis=1)


def generate(root: Path, images: int, seed: int) -> dict:
    """Write the data set under ``root`` (see the module docstring); return its counts."""
    spec = {"format": FORMAT, "images": images, "seed": seed}
    marker = root / "PERF_VALIDATE.json"
    if marker.exists():
        stored = json.loads(marker.read_text())
        if stored.get("spec") == spec:
            return stored["counts"]
        shutil.rmtree(root)  # ours (it has our marker), from another spec
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    (root / NAME).mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "dets").mkdir(exist_ok=True)
    cat_ids = np.array(list(COCO))

    # images: sparse COCO-like ids, sizes drawn from SIZES
    image_ids = np.sort(rng.choice(np.arange(1, 581_930), images, replace=False))
    size_idx = rng.choice(len(SIZES), images, p=[p for _, p in SIZES])
    wh = np.array([s for s, _ in SIZES], dtype=np.float64)[size_idx]
    file_names = [f"COCO_train2014_{i:012d}.jpg" for i in image_ids.tolist()]
    image_list = [{"license": 1, "file_name": f, "coco_url": "", "height": int(h), "width": int(w), "date_captured": "",
                   "flickr_url": "", "id": int(i)} for f, (w, h), i in zip(file_names, wh.tolist(), image_ids.tolist())]

    # annotations: 5-15 an image, boxes inside, a polygon (8-24 points) on the inscribed ellipse
    n_ann = rng.integers(5, 16, images)
    ann_img = np.repeat(np.arange(images), n_ann)
    ann_box = _boxes(rng, wh[ann_img, 0], wh[ann_img, 1])
    ann_cat = rng.choice(cat_ids, len(ann_img))
    ann_ids = np.sort(rng.choice(np.arange(1, 2_300_000), len(ann_img), replace=False))
    k = rng.integers(8, 25, len(ann_img))
    owner = np.repeat(np.arange(len(ann_img)), k)
    step = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
    theta = 2 * np.pi * (step + rng.uniform(-0.3, 0.3, len(step))) / k[owner]
    r = rng.uniform(0.75, 1.0, len(step))
    bx, by, bw, bh = (ann_box[owner, i] for i in range(4))
    px = np.round(bx + bw / 2 * (1 + r * np.cos(theta)), 2)
    py = np.round(by + bh / 2 * (1 + r * np.sin(theta)), 2)
    flat = np.stack([px, py], axis=1).ravel().tolist()
    starts = (2 * (np.cumsum(k) - k)).tolist()
    area = np.round(np.pi * ann_box[:, 2] * ann_box[:, 3] / 4 * 0.9, 2).tolist()
    annotations = [{"segmentation": [flat[s:s + 2 * n]], "area": a, "iscrowd": 0, "image_id": int(image_ids[i]),
                    "bbox": b, "category_id": int(c), "id": int(aid)}
                   for s, n, a, i, b, c, aid in zip(starts, k.tolist(), area, ann_img.tolist(), ann_box.tolist(),
                                                    ann_cat.tolist(), ann_ids.tolist())]
    categories = [{"supercategory": "thing", "id": i, "name": n} for i, n in COCO.items()]
    instances_bytes = _dump(root / NAME / "instances.json", {"info": {"description": "perf_validate: RefCOCO-sized, random"},
                                                             "images": image_list, "licenses": [],
                                                             "annotations": annotations, "categories": categories})

    # refs: 2-3 an image (never more than its annotations), each on its own annotation;
    # the first of every image in testA, the rest testA with p=0.85, else train/val/testB
    n_ref = np.minimum(rng.integers(2, 4, images), n_ann)
    first_ann = np.cumsum(n_ann) - n_ann
    ref_img = np.repeat(np.arange(images), n_ref)
    ref_rank = np.arange(len(ref_img)) - np.repeat(np.cumsum(n_ref) - n_ref, n_ref)
    ref_ann = first_ann[ref_img] + ref_rank
    other = rng.random(len(ref_img)) >= 0.85
    split = np.where((ref_rank > 0) & other, rng.integers(0, 3, len(ref_img)), -1)
    n_sent = rng.integers(1, 4, len(ref_img))
    sent_len = rng.integers(1, 9, n_sent.sum())
    words = rng.integers(0, len(WORDS), sent_len.sum()).tolist()
    texts, pos = [], 0
    for n in sent_len.tolist():
        texts.append(" ".join(WORDS[w] for w in words[pos:pos + n]))
        pos += n
    refs, sent_id = [], 0
    for ref_id, (img, ann, sp, ns) in enumerate(zip(ref_img.tolist(), ref_ann.tolist(), split.tolist(), n_sent.tolist())):
        sents = []
        for text in texts[sent_id:sent_id + ns]:
            sents.append({"tokens": text.split(), "raw": text.upper() if sent_id % 7 == 0 else text, "sent_id": sent_id,
                          "sent": text})
            sent_id += 1
        aid = int(ann_ids[ann])
        refs.append({"sent_ids": [s["sent_id"] for s in sents],
                     "file_name": f"COCO_train2014_{int(image_ids[img]):012d}_{aid}.jpg", "ann_id": aid,
                     "ref_id": ref_id, "image_id": int(image_ids[img]), "split": "testA" if sp < 0 else SPLITS_OTHER[sp],
                     "sentences": sents, "category_id": int(ann_cat[ann])})
    refs_bytes = pickle.dumps(refs, protocol=2)
    (root / NAME / "refs(unc).p").write_bytes(refs_bytes)

    # detections: 5-15 an image, inside the image, MAttNet's fields
    n_det = rng.integers(5, 16, images)
    det_img = np.repeat(np.arange(images), n_det)
    det_box = _boxes(rng, wh[det_img, 0], wh[det_img, 1])
    det_cat = rng.choice(cat_ids, len(det_img))
    score = np.round(rng.uniform(0.3, 1.0, len(det_img)), 4)
    dets = [{"det_id": j + 1, "box": b, "image_id": int(image_ids[i]), "category_id": int(c), "category_name": COCO[c],
             "score": s} for j, (b, i, c, s) in enumerate(zip(det_box.tolist(), det_img.tolist(), det_cat.tolist(),
                                                             score.tolist()))]
    dets_bytes = _dump(root / "dets" / f"{NAME}_unc_dets.json", dets)

    # image files: the bytes of one JPEG per size
    blobs = {i: jpeg(*s) for i, (s, _) in enumerate(SIZES)}
    folder = str(root / "images")
    for name, s in zip(file_names, size_idx.tolist()):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(blobs[s])

    counts = {"images": images, "annotations": len(annotations), "boxes": len(dets), "refs": len(refs),
              "testA_refs": int((split < 0).sum()), "sentences": sent_id,
              "bytes": {"instances.json": instances_bytes, "refs(unc).p": len(refs_bytes), "dets": dets_bytes,
                        "images": sum(len(blobs[s]) for s in size_idx.tolist())},
              "generated_in_s": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps({"spec": spec, "counts": counts}, indent=2) + "\n")  # last: the folder is complete
    return counts


def config_text(root: Path, dets: Path) -> str:
    return f"""# written by benchmarks/perf_validate.py
name: perf_validate
dataset: {{plugin: refer, root: {root}, dataset: {NAME}, split_by: unc, splits: [testA], images: {root}/images}}
proposer: {{plugin: detections, path: {dets}}}
methods:
  - {{id: random, scorer: {{plugin: random}}}}
"""


def bad_detections(root: Path, n: int) -> tuple[Path, list[str]]:
    """A copy of the detections with ``n`` invalid boxes spread evenly over the list (sorted by image)."""
    path = root / "dets" / f"{NAME}_unc_dets.bad{n}.json"
    dets = json.loads((root / "dets" / f"{NAME}_unc_dets.json").read_text())
    sizes = {i["id"]: (i["width"], i["height"]) for i in json.loads((root / NAME / "instances.json").read_text())["images"]}
    where = np.unique(np.linspace(0, len(dets) - 1, n).round().astype(int))
    notes = []
    for j, idx in enumerate(where.tolist()):
        d = dets[idx]
        x, y, w, h = d["box"]
        width, height = sizes[d["image_id"]]
        kind = j % 3
        if kind == 0:
            d["box"] = [x, y, 0.0, h]
            what = "w=0"
        elif kind == 1:
            d["box"] = [float("nan"), y, w, h] if j % 2 else [x, y, float("inf"), h]
            what = "NaN x" if j % 2 else "w=Infinity"
        else:
            d["box"] = [width + 1000.0, height + 1000.0, w, h]
            what = "far outside"
        notes.append(f"det_id {d['det_id']} (image {d['image_id']}): {what}")
    path.write_text(json.dumps(dets, separators=(",", ":")))  # NaN/Infinity as Python's json writes and reads them
    return path, notes


def validate(cfg: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    out = subprocess.run([str(REFBENCH), "validate", str(cfg)], cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - start, out.returncode, (out.stdout + out.stderr).strip()


def head(text: str, lines: int) -> str:
    rows = text.splitlines()
    more = f"\n    ... ({len(rows) - lines} more lines)" if len(rows) > lines else ""
    return "\n".join("    " + r for r in rows[:lines]) + more


def timed_validate(label: str, cfg: Path, repeats: int, expect_rc: int, lines: int) -> bool:
    _, rc, text = validate(cfg)  # warm-up: the file cache, .pyc files
    walls, codes = [], []
    for _ in range(repeats):
        wall, rc, text = validate(cfg)
        walls.append(wall)
        codes.append(rc)
    med = statistics.median(walls)
    ok = med <= TARGET_S
    print(f"{label}: median {med:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}, n={repeats}); "
          f"target <= {TARGET_S:g} s: {'meets' if ok else 'MISSES'}; exit codes {codes} (expected {expect_rc})", flush=True)
    print(f"  output (first {lines} lines):\n{head(text, lines)}", flush=True)
    return ok and all(c == expect_rc for c in codes)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "perf")
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, choices=range(1, 21), metavar="1..20")
    p.add_argument("--bad", type=int, default=0, metavar="N", help="also validate a copy of the detections with N invalid boxes")
    p.add_argument("--lines", type=int, default=12, help="lines of validate's output to print")
    args = p.parse_args()
    if not REFBENCH.exists():
        print(f"no refbench executable next to {sys.executable}: run this with the venv's python", file=sys.stderr)
        return 2
    root = (args.data / f"validate{args.images}_s{args.seed}").resolve()
    cached = (root / "PERF_VALIDATE.json").exists()
    counts = generate(root, args.images, args.seed)
    mib = {k: f"{v / 2**20:.1f}" for k, v in counts["bytes"].items()}
    print(f"data set {root} ({'cached; ' if cached else ''}generated in {counts['generated_in_s']:.1f} s): "
          f"{counts['images']:,} images, {counts['boxes']:,} detection boxes, {counts['annotations']:,} annotations, "
          f"{counts['refs']:,} refs ({counts['testA_refs']:,} testA), {counts['sentences']:,} sentences; MiB: "
          + ", ".join(f"{k} {v}" for k, v in mib.items()), flush=True)
    cfg = root / "validate.yaml"
    cfg.write_text(config_text(root, root / "dets" / f"{NAME}_unc_dets.json"))
    ok = timed_validate(f"refbench validate {cfg.name}", cfg, args.repeats, 0, args.lines)
    if args.bad:
        dets, notes = bad_detections(root, args.bad)
        bad_cfg = root / f"validate_bad{args.bad}.yaml"
        bad_cfg.write_text(config_text(root, dets))
        print(f"{len(notes)} invalid boxes written to {dets.name}: " + "; ".join(notes[:6]) + (" ..." if len(notes) > 6 else ""))
        ok &= timed_validate(f"refbench validate {bad_cfg.name}", bad_cfg, args.repeats, 2, args.lines)
    print("all as expected" if ok else "NOT as expected (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
