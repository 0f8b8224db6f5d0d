"""SynthRef: a deterministic synthetic referring-expression data set in RefCOCO's on-disk format.

Scenes are a few flat-coloured shapes on a textured grey background. Each scene holds one or
two groups of look-alike objects (same colour and shape), so naming an object often takes
more than its colour and shape. Every phrase has one of four types, recorded per sentence
under ``phrase_type``:

* ``attribute``   -- the target's colour+shape is unique: "the red circle";
* ``location``    -- it is the only one of its kind in its half of the image: "left red circle";
* ``superlative`` -- its size class beats every look-alike: "the biggest red circle";
* ``relation``    -- it alone is near a unique other object: "red circle next to the blue square".

``synthref`` uses all four; ``synthref+`` (the RefCOCO+ analogue) only attribute and
superlative phrases. Both share the images, annotations and detections::

    <root>/images/synthref_<image_id:012d>.jpg
    <root>/synthref/instances.json, <root>/synthref/refs(unc).p
    <root>/synthref+/instances.json, <root>/synthref+/refs(unc).p
    <root>/dets/synthref_unc_dets.json, <root>/dets/synthref+_unc_dets.json   (MAttNet format)
    <root>/SYNTHREF.json                                                      (spec + summary)

Every image is drawn from ``np.random.default_rng([seed, split_index, image_index])``, so a
split's images do not depend on the other splits' sizes and equal specs give equal bytes.
Spatial facts are deliberately coarse (halves, "near" vs "far") so tiny models at 64x64
input can learn them.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .results import write_atomic

SPLITS = ("train", "val", "testA", "testB")
VARIANTS = ("synthref", "synthref+")
PHRASE_TYPES = ("attribute", "location", "superlative", "relation")

# No green: green is the colour models see as the highlight of the candidate box.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "blue": (40, 90, 225),
    "yellow": (240, 210, 40),
    "purple": (150, 55, 195),
    "white": (245, 245, 245),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")  # COCO category ids 1..4
SIZES: dict[str, float] = {"small": 0.065, "medium": 0.095, "large": 0.135}  # radius / canvas

_FORMAT_VERSION = 1
_SIZE_NAMES = tuple(SIZES)
_SIZE_WEIGHTS = (0.35, 0.40, 0.25)
# Bounding-box half-extents per unit radius; chosen so one size class looks equally big
# across shapes (the triangle is equilateral, centred on its box).
_EXTENT: dict[str, tuple[float, float]] = {
    "circle": (1.0, 1.0),
    "square": (0.9, 0.9),
    "triangle": (1.3, 1.3 * math.sqrt(3) / 2),
    "diamond": (1.15, 1.15),
}
_CIRCLE_POINTS = 32  # vertices of a circle's segmentation polygon

# Phrase rules, as fractions of the canvas. A fact is only stated when it holds with
# _SAFETY to spare, so a re-check with these thresholds (strict or not) always agrees.
_MID_MARGIN = 0.10  # location: centres at least this far from the middle line
_NEAR = 0.28  # relation: anchor within this distance of the target ...
_FAR = 0.45  # ... and at least this far from every look-alike of the target
_SAFETY = 0.01

# Scene composition. Scenes of 5+ objects get two look-alike groups, smaller ones one. The
# weights give synthref train about 37% attribute, 24% location, 20% superlative and 19%
# relation sentences: a relation layout yields one ref, the others two, and superlatives
# also arise by chance.
_P_TRIPLE = 0.3  # of a look-alike group of three rather than two
_MODES = ("location", "superlative", "relation")  # which phrase type a group is laid out for
_MODE_WEIGHTS = (0.35, 0.15, 0.50)
_GAP = 0.03  # minimum gap between object boxes
_BORDER = 2.0  # pixels kept free at the canvas edge
_PLACE_TRIES = 60
_SCENE_TRIES = 200

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "attribute": ("{c} {s}", "the {c} {s}", "a {c} {s}", "the only {c} {s}", "{c} {s} shape", "the {c} {s} shape"),
    "location": ("{side} {c} {s}", "the {side} {c} {s}", "{c} {s} {where}", "the {c} {s} {where}",
                 "{c} {s} in the {side} half"),
    "superlative": ("{w} {c} {s}", "the {w} {c} {s}", "{c} {s} that is the {w}"),
    "relation": ("{c} {s} next to the {ac} {ash}", "the {c} {s} next to the {ac} {ash}", "{c} {s} by the {ac} {ash}",
                 "{c} {s} near the {ac} {ash}", "the {c} {s} near the {ac} {ash}", "{c} {s} beside the {ac} {ash}"),
}
_WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_SUPERLATIVE_WORDS = {"big": ("biggest", "largest"), "small": ("smallest", "tiniest")}
# The fewest distinct sentences any (phrase type, target) offers: one location axis.
_MAX_SENTENCES = len(_TEMPLATES["location"])

_ALLOWED = {"synthref": frozenset(PHRASE_TYPES), "synthref+": frozenset(("attribute", "superlative"))}


@dataclass(frozen=True)
class SynthSpec:
    seed: int = 0
    images: dict[str, int] = field(default_factory=lambda: {"train": 3000, "val": 150, "testA": 150, "testB": 150})
    canvas: int = 128  # square images, pixels
    objects: tuple[int, int] = (4, 7)  # min, max objects per scene (inclusive)
    sentences_per_ref: tuple[int, int] = (1, 3)
    false_positives: tuple[int, int] = (1, 3)  # detector false positives per image
    miss_rate: float = 0.03  # fraction of objects the detector misses
    hard_jitter_rate: float = 0.08  # fraction of detections jittered to IoU in [0.25, 0.5) with the truth
    jpeg_quality: int = 90


@dataclass(frozen=True)
class SynthSummary:
    root: Path
    images: dict[str, int]  # per split
    refs: dict[str, dict[str, int]]  # variant -> split -> number of refs
    sentences: dict[str, dict[str, int]]  # variant -> split -> number of sentences
    phrase_types: dict[str, dict[str, int]]  # variant -> phrase type -> sentences
    detections: int


def generate(root: str | Path, spec: SynthSpec = SynthSpec(),
             progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Write SynthRef under ``root`` (see the module docstring) and return its counts.

    A ``root`` already holding a complete data set of the same spec is left as it is;
    one of another spec raises ``FileExistsError``. An interrupted run leaves no
    ``SYNTHREF.json`` and is simply redone.
    """
    _validate(spec)
    root = Path(root)
    marker = root / "SYNTHREF.json"
    spec_record = json.loads(json.dumps(asdict(spec)))
    if marker.exists():
        stored = json.loads(marker.read_text(encoding="utf-8"))
        if stored.get("format_version") == _FORMAT_VERSION and stored.get("spec") == spec_record:
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
            rng = np.random.default_rng([spec.seed, split_index, image_index])
            scene = _make_scene(rng, spec, split)
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
                    refs[variant].append(_ref_dict(len(refs[variant]) + 1, sent_ids[variant] + 1, image_id,
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
                 "version": _FORMAT_VERSION, "seed": spec.seed},
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
    record = {"format_version": _FORMAT_VERSION, "spec": spec_record,
              "summary": {k: v for k, v in asdict(summary).items() if k != "root"}}
    # Written last: its presence marks the data set complete.
    write_atomic(marker, (json.dumps(record, indent=2) + "\n").encode())
    return summary


# ---------------------------------------------------------------- scenes


@dataclass(slots=True, eq=False)  # compared by identity
class _Obj:
    """An object being composed and placed; ranges and distances are canvas fractions."""

    colour: str
    shape: str
    size: str
    ranges: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 1.0), (0.0, 1.0)])  # allowed x, y
    near: _Obj | None = None  # anchor this object must lie within the relation radius of
    far: _Obj | None = None  # anchor this object must lie beyond the exclusion radius of
    priority: int = 3  # placement order: anchors, their targets, constrained, free
    cx: float = 0.0
    cy: float = 0.0

    def half_extent(self, canvas: int) -> tuple[float, float]:
        r = SIZES[self.size] * canvas
        ex, ey = _EXTENT[self.shape]
        return ex * r, ey * r


@dataclass(slots=True)
class _Scene:
    anns: list[dict[str, Any]]  # annotation fields except id and image_id
    phrases: dict[str, list[tuple[int, list[tuple[str, str]]]]]  # variant -> (target, [(type, sentence)])
    dets: list[tuple[list[float], int, float]]  # (box, category id, score)
    image: Image.Image


def _make_scene(rng: np.random.Generator, spec: SynthSpec, split: str) -> _Scene:
    """Compose, place and check scenes until one gives phrases in both variants."""
    for _ in range(_SCENE_TRIES):
        groups, uniques = _compose(rng, spec, split)
        objs = [o for g in groups for o in g] + uniques
        if not _place(rng, objs, spec.canvas):
            continue
        objs = [objs[i] for i in rng.permutation(len(objs))]
        anns = [_annotation(o, spec.canvas) for o in objs]
        options = [phrase_options(anns, i, spec.canvas) for i in range(len(anns))]
        # Every look-alike group must be resolvable by some phrase, or referring is not needed.
        if not all(any(options[objs.index(o)] for o in g) for g in groups):
            continue
        targets = [i for i, o in enumerate(objs) if _split_accepts(split, o.shape)]
        if not all(any(_ALLOWED[v] & options[i].keys() for i in targets) for v in VARIANTS):
            continue
        phrases = {v: _phrases(rng, anns, options, targets, _ALLOWED[v], spec) for v in VARIANTS}
        image = _render(rng, objs, spec.canvas)
        dets = _detections(rng, anns, spec)
        return _Scene(anns, phrases, dets, image)
    raise RuntimeError(f"could not compose a SynthRef scene in {_SCENE_TRIES} tries; spec {spec} is too crowded")


def _split_accepts(split: str, shape: str) -> bool:
    """RefCOCO's testA refers only to people, testB only to other things: circles play people."""
    if split == "testA":
        return shape == "circle"
    if split == "testB":
        return shape != "circle"
    return True


def _compose(rng: np.random.Generator, spec: SynthSpec, split: str) -> tuple[list[list[_Obj]], list[_Obj]]:
    """Pick the objects of a scene and the layout constraints that make its look-alikes referable.

    Returns the look-alike groups and the objects whose colour+shape is unique.
    """
    n = int(rng.integers(spec.objects[0], spec.objects[1] + 1))
    group_sizes = [3 if rng.random() < _P_TRIPLE else 2 for _ in range(2 if n >= 5 else 1)]
    while sum(group_sizes) > n - 1:  # keep one unique object: an attribute target or an anchor
        if 3 in group_sizes:
            group_sizes[group_sizes.index(3)] = 2
        else:
            group_sizes.pop()
    # testA asks about circles: make them plentiful there.
    p_circle_group, p_circle_unique = (0.85, 0.4) if split == "testA" else (0.0, 0.0)
    used: set[tuple[str, str]] = set()

    def pick_type(p_circle: float) -> tuple[str, str]:
        shapes = ("circle",) if rng.random() < p_circle else SHAPES
        free = [(c, s) for s in shapes for c in COLOURS if (c, s) not in used]
        if not free:  # every circle colour taken
            free = [(c, s) for s in SHAPES for c in COLOURS if (c, s) not in used]
        kind = free[int(rng.integers(len(free)))]
        used.add(kind)
        return kind

    groups = []
    for k in group_sizes:
        colour, shape = pick_type(p_circle_group)
        groups.append([_Obj(colour, shape, _random_size(rng)) for _ in range(k)])
    uniques = [_Obj(*pick_type(p_circle_unique), _random_size(rng)) for _ in range(n - sum(group_sizes))]

    free_anchors = list(uniques)
    low, high = (0.0, 0.5 - _MID_MARGIN - 2 * _SAFETY), (0.5 + _MID_MARGIN + 2 * _SAFETY, 1.0)
    middle = (0.5 - _MID_MARGIN + 2 * _SAFETY, 0.5 + _MID_MARGIN - 2 * _SAFETY)
    for group in groups:
        mode = _MODES[_weighted(rng, _MODE_WEIGHTS)]
        if mode == "relation" and not free_anchors:
            mode = "location"
        if mode == "superlative":
            for obj, rank in zip(group, rng.permutation(len(_SIZE_NAMES))):
                obj.size = _SIZE_NAMES[rank]
        elif mode == "location":
            axis = int(rng.integers(2))
            lone_low = bool(rng.random() < 0.5)
            for i, obj in enumerate(group):  # the first member alone in its half, the rest opposite
                obj.ranges[axis] = low if (i == 0) == lone_low else high
                obj.priority = 2
        else:
            anchor = free_anchors.pop(int(rng.integers(len(free_anchors))))
            target = group[0]
            # Two large objects cannot sit within the relation radius without overlapping. The
            # anchor goes to one end of an axis, the target's look-alikes to the other end and the
            # target mid-way; all three share one half along the other axis. With equal sizes in
            # the group, no superlative or location phrase fits the target: relation is needed.
            anchor.size, size = (_SIZE_NAMES[int(rng.integers(2))] for _ in range(2))
            axis = int(rng.integers(2))
            half = (0.0, 0.5) if rng.random() < 0.5 else (0.5, 1.0)
            anchor_end, far_end = ((0.15, 0.35), (0.6, 1.0)) if rng.random() < 0.5 else ((0.65, 0.85), (0.0, 0.4))
            anchor.ranges[axis], anchor.ranges[1 - axis] = half, anchor_end
            for obj in group:
                obj.size = size
                obj.ranges[axis], obj.ranges[1 - axis] = half, far_end
                obj.far, obj.priority = anchor, 2
            target.ranges[1 - axis] = middle
            anchor.priority, target.priority, target.near, target.far = 0, 1, anchor, None
    return groups, uniques


def _random_size(rng: np.random.Generator) -> str:
    return _SIZE_NAMES[_weighted(rng, _SIZE_WEIGHTS)]


def _weighted(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """Index drawn with probabilities ``weights`` (summing to 1); cheaper than ``rng.choice(p=...)``."""
    return min(bisect.bisect(list(itertools.accumulate(weights)), rng.random()), len(weights) - 1)


def _place(rng: np.random.Generator, objs: list[_Obj], canvas: int) -> bool:
    """Rejection-sample centres meeting each object's constraints, boxes apart by _GAP.

    Each object gets _PLACE_TRIES candidate centres at once and takes the first that fits.
    """
    gap = _GAP * canvas
    near = (_NEAR - 2 * _SAFETY) * canvas
    far = (_FAR + 2 * _SAFETY) * canvas
    placed: list[tuple[float, float, float, float]] = []  # centre and half-extents
    # Big objects first within a priority: they are the hardest to fit late.
    for obj in sorted(objs, key=lambda o: (o.priority, -SIZES[o.size])):
        hx, hy = obj.half_extent(canvas)
        (x_min, x_max), (y_min, y_max) = obj.ranges
        x_lo, x_hi = max(hx + _BORDER, x_min * canvas), min(canvas - hx - _BORDER, x_max * canvas)
        y_lo, y_hi = max(hy + _BORDER, y_min * canvas), min(canvas - hy - _BORDER, y_max * canvas)
        if x_lo > x_hi or y_lo > y_hi:
            return False
        if obj.near is not None:  # sample the part of the allowed box around the anchor
            x_lo, x_hi = max(x_lo, obj.near.cx - near), min(x_hi, obj.near.cx + near)
            y_lo, y_hi = max(y_lo, obj.near.cy - near), min(y_hi, obj.near.cy + near)
            if x_lo > x_hi or y_lo > y_hi:
                return False
        u = rng.random((2, _PLACE_TRIES))
        cx, cy = x_lo + (x_hi - x_lo) * u[0], y_lo + (y_hi - y_lo) * u[1]
        ok = np.ones(_PLACE_TRIES, dtype=bool)
        if obj.near is not None:
            ok &= np.hypot(cx - obj.near.cx, cy - obj.near.cy) <= near
        if obj.far is not None:
            ok &= np.hypot(cx - obj.far.cx, cy - obj.far.cy) >= far
        for ox, oy, ohx, ohy in placed:
            ok &= (np.abs(cx - ox) >= hx + ohx + gap) | (np.abs(cy - oy) >= hy + ohy + gap)
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return False
        obj.cx, obj.cy = float(cx[hits[0]]), float(cy[hits[0]])
        placed.append((obj.cx, obj.cy, hx, hy))
    return True


def _polygon(obj: _Obj, canvas: int) -> list[tuple[float, float]]:
    hx, hy = obj.half_extent(canvas)
    cx, cy = obj.cx, obj.cy
    if obj.shape == "circle":
        return [(cx + hx * math.cos(a), cy + hy * math.sin(a))
                for a in np.linspace(0, 2 * math.pi, _CIRCLE_POINTS, endpoint=False)]
    if obj.shape == "square":
        return [(cx - hx, cy - hy), (cx + hx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)]
    if obj.shape == "triangle":
        return [(cx, cy - hy), (cx + hx, cy + hy), (cx - hx, cy + hy)]
    return [(cx, cy - hy), (cx + hx, cy), (cx, cy + hy), (cx - hx, cy)]  # diamond


def _annotation(obj: _Obj, canvas: int) -> dict[str, Any]:
    hx, hy = obj.half_extent(canvas)
    points = _polygon(obj, canvas)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(points))))
    return {
        "category_id": SHAPES.index(obj.shape) + 1,
        "bbox": [round(obj.cx - hx, 2), round(obj.cy - hy, 2), round(2 * hx, 2), round(2 * hy, 2)],
        "area": round(area, 2),
        "iscrowd": 0,
        "segmentation": [np.round(points, 2).ravel().tolist()],
        "colour": obj.colour,
        "size": obj.size,
    }


def _render(rng: np.random.Generator, objs: list[_Obj], canvas: int) -> Image.Image:
    """Tinted grey with low-frequency texture and fine noise; shapes drawn at 2x and averaged down."""
    coarse = rng.uniform(105, 150) + rng.normal(0, 10, 3) + rng.normal(0, 10, (4, 4, 3))  # tint + texture
    # Green marks the candidate box for the models: never let the background lean green.
    coarse[..., 1] = np.minimum(coarse[..., 1], coarse[..., [0, 2]].max(axis=-1))
    texture = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8)).resize((canvas, canvas), Image.BICUBIC)
    # Uniform noise in [-8, 7] from raw bytes: several times cheaper than rng.integers.
    noise = np.frombuffer(rng.bytes(canvas * canvas * 3), np.uint8).reshape(canvas, canvas, 3) & 15
    noise = noise.astype(np.int16) - 8
    background = np.clip(np.asarray(texture, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background).resize((2 * canvas, 2 * canvas), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    for obj in objs:
        fill = tuple(min(max(v + int(d), 0), 255) for v, d in zip(COLOURS[obj.colour], rng.integers(-8, 9, 3)))
        if obj.shape == "circle":
            hx, hy = obj.half_extent(canvas)
            draw.ellipse([2 * (obj.cx - hx), 2 * (obj.cy - hy), 2 * (obj.cx + hx), 2 * (obj.cy + hy)], fill=fill)
        else:
            draw.polygon([(2 * x, 2 * y) for x, y in _polygon(obj, canvas)], fill=fill)
    return image.reduce(2)


# ---------------------------------------------------------------- phrases


def phrase_options(anns: Sequence[Mapping[str, Any]], i: int, canvas: int) -> dict[str, list[Any]]:
    """The phrase types that single out ``anns[i]`` among ``anns``, with their free parameters.

    Works on annotation dicts (``category_id``, ``colour``, ``size``, ``bbox``), so a data
    set can be re-checked from its ``instances.json``. Returns a subset of
    ``{"attribute": [None], "location": ["left"|"right"|"top"|"bottom", ...],
    "superlative": ["big"|"small"], "relation": [anchor indices]}``; empty if none applies.
    """
    def kind(a: Mapping[str, Any]) -> tuple[str, int]:
        return a["colour"], a["category_id"]

    def centre(a: Mapping[str, Any]) -> tuple[float, float]:
        x, y, w, h = a["bbox"]
        return x + w / 2, y + h / 2

    target = anns[i]
    same = [a for j, a in enumerate(anns) if j != i and kind(a) == kind(target)]
    if not same:
        return {"attribute": [None]}
    options: dict[str, list[Any]] = {}

    mid, margin = canvas / 2, (_MID_MARGIN + _SAFETY) * canvas
    sides = []
    for axis, (low_word, high_word) in enumerate((("left", "right"), ("top", "bottom"))):
        t = centre(target)[axis] - mid
        others = [centre(a)[axis] - mid for a in same]
        if abs(t) >= margin and all(abs(o) >= margin and o * t < 0 for o in others):
            sides.append(low_word if t < 0 else high_word)
    if sides:
        options["location"] = sides

    rank = _SIZE_NAMES.index(target["size"])
    other_ranks = [_SIZE_NAMES.index(a["size"]) for a in same]
    if all(rank > r for r in other_ranks):
        options["superlative"] = ["big"]
    elif all(rank < r for r in other_ranks):
        options["superlative"] = ["small"]

    kinds = [kind(a) for a in anns]
    near, far = (_NEAR - _SAFETY) * canvas, (_FAR + _SAFETY) * canvas
    anchors = [j for j, a in enumerate(anns)
               if kinds.count(kind(a)) == 1 and math.dist(centre(a), centre(target)) <= near
               and all(math.dist(centre(a), centre(o)) >= far for o in same)]
    if anchors:
        options["relation"] = anchors
    return options


def _phrases(rng: np.random.Generator, anns: list[dict[str, Any]], options: list[dict[str, list[Any]]],
             targets: list[int], allowed: frozenset[str], spec: SynthSpec) -> list[tuple[int, list[tuple[str, str]]]]:
    """One ref per describable target: a phrase type drawn uniformly among the valid ones."""
    out = []
    for i in targets:
        valid = [t for t in PHRASE_TYPES if t in options[i] and t in allowed]
        if not valid:
            continue
        phrase_type = valid[int(rng.integers(len(valid)))]
        candidates = _sentences(anns, i, phrase_type, options[i][phrase_type])
        k = min(int(rng.integers(spec.sentences_per_ref[0], spec.sentences_per_ref[1] + 1)), len(candidates))
        out.append((i, [(phrase_type, candidates[j]) for j in sorted(rng.permutation(len(candidates))[:k])]))
    return out


def _sentences(anns: list[dict[str, Any]], i: int, phrase_type: str, params: list[Any]) -> list[str]:
    """Every distinct sentence of ``phrase_type`` about ``anns[i]``, in a fixed order."""
    c, s = anns[i]["colour"], SHAPES[anns[i]["category_id"] - 1]
    templates = _TEMPLATES[phrase_type]
    if phrase_type == "attribute":
        return [t.format(c=c, s=s) for t in templates]
    if phrase_type == "location":
        return [t.format(c=c, s=s, side=side, where=_WHERE[side]) for side in params for t in templates]
    if phrase_type == "superlative":
        return [t.format(c=c, s=s, w=w) for w in _SUPERLATIVE_WORDS[params[0]] for t in templates]
    return [t.format(c=c, s=s, ac=anns[j]["colour"], ash=SHAPES[anns[j]["category_id"] - 1])
            for j in params for t in templates]


def _ref_dict(ref_id: int, first_sent_id: int, image_id: int, ann_id: int, category_id: int, split: str,
              sentences: list[tuple[str, str]]) -> dict[str, Any]:
    """A ref in RefCOCO's layout (its keys, in its order) plus each sentence's ``phrase_type``."""
    sents = [{"tokens": text.split(), "raw": text, "sent_id": first_sent_id + k, "sent": text,
              "phrase_type": phrase_type} for k, (phrase_type, text) in enumerate(sentences)]
    return {"sent_ids": [x["sent_id"] for x in sents], "file_name": f"synthref_{image_id:012d}_{ann_id}.jpg",
            "ann_id": ann_id, "ref_id": ref_id, "image_id": image_id, "split": split,
            "sentences": sents, "category_id": category_id}


# ---------------------------------------------------------------- detections


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Continuous IoU of xywh boxes (refer's pixel-inclusive variant differs only for sub-pixel overlaps)."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _clip_box(x: float, y: float, w: float, h: float, canvas: int) -> list[float] | None:
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(canvas)), min(y + h, float(canvas))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _detections(rng: np.random.Generator, anns: list[dict[str, Any]],
                spec: SynthSpec) -> list[tuple[list[float], int, float]]:
    """A simulated detector: jittered true boxes (a few badly), some misses, some false positives.

    Scores of true detections run higher than those of false ones, with overlap, so that
    ranking by score helps but does not solve the task.
    """
    truths = [a["bbox"] for a in anns]
    dets: list[tuple[list[float], int, float]] = []
    for ann in anns:
        if rng.random() < spec.miss_rate:
            continue
        hard = _jitter(rng, ann["bbox"], truths, spec.canvas) if rng.random() < spec.hard_jitter_rate else None
        if hard is not None:
            dets.append((hard, ann["category_id"], _score(rng.beta(3, 3))))
        else:  # an ordinary detection (also when a hard jitter found no valid box)
            dets.append((_nudge(rng, ann["bbox"], spec.canvas), ann["category_id"], _score(rng.beta(6, 2))))
    for _ in range(int(rng.integers(spec.false_positives[0], spec.false_positives[1] + 1))):
        box = _false_positive(rng, truths, spec.canvas)
        if box is not None:
            dets.append((box, int(rng.integers(len(SHAPES))) + 1, _score(rng.beta(2, 4))))
    return dets


def _score(value: float) -> float:
    return min(max(round(float(value), 4), 0.0001), 1.0)


def _nudge(rng: np.random.Generator, truth: list[float], canvas: int) -> list[float]:
    """A slightly shifted and rescaled copy of ``truth``, IoU > 0.7 with it."""
    for _ in range(_PLACE_TRIES):
        log_sw, log_sh, dx, dy = (rng.standard_normal(4) * (0.06, 0.06, 0.04, 0.04)).tolist()
        box = _transform(truth, math.exp(log_sw), math.exp(log_sh), dx, dy, canvas)
        if box is not None and _iou(box, truth) > 0.7 + _SAFETY:
            return box
    return list(truth)


def _jitter(rng: np.random.Generator, truth: list[float], truths: list[list[float]], canvas: int) -> list[float] | None:
    """A box with IoU in [0.25, 0.5) with ``truth`` and < 0.5 with every other object; None if none found."""
    for _ in range(2 * _PLACE_TRIES):
        log_sw, log_sh, dx, dy = rng.uniform((-0.5, -0.5, -0.9, -0.9), (0.5, 0.5, 0.9, 0.9)).tolist()
        box = _transform(truth, math.exp(log_sw), math.exp(log_sh), dx, dy, canvas)
        if (box is not None and 0.25 + _SAFETY <= _iou(box, truth) < 0.5 - _SAFETY
                and all(_iou(box, t) < 0.5 - _SAFETY for t in truths if t is not truth)):
            return box
    return None


def _transform(box: list[float], sw: float, sh: float, dx: float, dy: float, canvas: int) -> list[float] | None:
    """``box`` scaled by (sw, sh) about its centre, shifted by (dx, dy) of its size, clipped."""
    x, y, w, h = box
    return _clip_box(x + dx * w + (1 - sw) * w / 2, y + dy * h + (1 - sh) * h / 2, w * sw, h * sh, canvas)


def _false_positive(rng: np.random.Generator, truths: list[list[float]], canvas: int) -> list[float] | None:
    """A box on the background or half over an object, IoU < 0.4 with every object; None if none found."""
    for _ in range(_PLACE_TRIES):
        u = rng.random(6).tolist()
        if u[0] < 0.5:
            w, h = (0.08 + 0.22 * u[1]) * canvas, (0.08 + 0.22 * u[2]) * canvas
            box = _clip_box(u[3] * (canvas - w), u[4] * (canvas - h), w, h, canvas)
        else:  # shifted 40-70% of the object's size along one axis, up to 30% along the other
            truth = truths[int(u[1] * len(truths))]
            along = (0.4 + 0.3 * u[2]) * (1 if u[3] < 0.5 else -1)
            across = 0.6 * u[4] - 0.3
            dx, dy = (along, across) if u[5] < 0.5 else (across, along)
            box = _transform(truth, 1.0, 1.0, dx, dy, canvas)
        if box is not None and all(_iou(box, t) < 0.4 - _SAFETY for t in truths):
            return box
    return None


# ---------------------------------------------------------------- files


def _validate(spec: SynthSpec) -> None:
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
    pair("sentences_per_ref", 1, _MAX_SENTENCES)
    pair("false_positives", 0, 20)
    for name in ("miss_rate", "hard_jitter_rate"):
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise ValueError(f"SynthSpec.{name} = {getattr(spec, name)}: must be in [0, 1]")
    if not 1 <= spec.jpeg_quality <= 100:
        raise ValueError(f"SynthSpec.jpeg_quality = {spec.jpeg_quality}: must be in [1, 100]")


def _summary_from_record(root: Path, record: Mapping[str, Any]) -> SynthSummary:
    return SynthSummary(root=root, images=dict(record["images"]), refs=record["refs"], sentences=record["sentences"],
                        phrase_types=record["phrase_types"], detections=int(record["detections"]))
