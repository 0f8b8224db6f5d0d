"""Scenes: which objects an image holds, the layout that makes its look-alikes referable, and
the accepted scene with its phrases, detections and picture."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .detections import simulate_detections
from .objects import Obj, annotation, place, render
from .phrases import ALLOWED, MID_MARGIN, SAFETY, choose_phrases, phrase_options
from .spec import COLOURS, SHAPES, SIZE_NAMES, VARIANTS, SynthSpec

# Scene composition. Scenes of 5+ objects get two look-alike groups, smaller ones one. The
# weights give synthref train about 37% attribute, 24% location, 20% superlative and 19%
# relation sentences: a relation layout yields one ref, the others two, and superlatives
# also arise by chance.
_SIZE_WEIGHTS = (0.35, 0.40, 0.25)  # of SIZE_NAMES, for objects no layout sizes
_P_TRIPLE = 0.3  # of a look-alike group of three rather than two
_MODES = ("location", "superlative", "relation")  # which phrase type a group is laid out for
_MODE_WEIGHTS = (0.35, 0.15, 0.50)
_SCENE_TRIES = 200


@dataclass(slots=True)
class Scene:
    anns: list[dict[str, Any]]  # annotation fields except id and image_id
    phrases: dict[str, list[tuple[int, list[tuple[str, str]]]]]  # variant -> (target, [(type, sentence)])
    dets: list[tuple[list[float], int, float]]  # (box, category id, score)
    image: Image.Image


def make_scene(rng: np.random.Generator, spec: SynthSpec, split: str) -> Scene:
    """Compose, place and check scenes until one gives phrases in both variants."""
    for _ in range(_SCENE_TRIES):
        groups, uniques = _compose(rng, spec, split)
        objs = [o for g in groups for o in g] + uniques
        if not place(rng, objs, spec.canvas):
            continue
        objs = [objs[i] for i in rng.permutation(len(objs))]
        anns = [annotation(o, spec.canvas) for o in objs]
        options = [phrase_options(anns, i, spec.canvas) for i in range(len(anns))]
        # Every look-alike group must be resolvable by some phrase, or referring is not needed.
        if not all(any(options[objs.index(o)] for o in g) for g in groups):
            continue
        targets = [i for i, o in enumerate(objs) if split_accepts(split, o.shape)]
        if not all(any(ALLOWED[v] & options[i].keys() for i in targets) for v in VARIANTS):
            continue
        phrases = {v: choose_phrases(rng, anns, options, targets, ALLOWED[v], spec) for v in VARIANTS}
        image = render(rng, objs, spec.canvas)
        dets = simulate_detections(rng, anns, spec)
        return Scene(anns, phrases, dets, image)
    raise RuntimeError(f"could not compose a SynthRef scene in {_SCENE_TRIES} tries; spec {spec} is too crowded")


def split_accepts(split: str, shape: str) -> bool:
    """RefCOCO's testA refers only to people, testB only to other things: circles play people."""
    if split == "testA":
        return shape == "circle"
    if split == "testB":
        return shape != "circle"
    return True


def _compose(rng: np.random.Generator, spec: SynthSpec, split: str) -> tuple[list[list[Obj]], list[Obj]]:
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
        groups.append([Obj(colour, shape, _random_size(rng)) for _ in range(k)])
    uniques = [Obj(*pick_type(p_circle_unique), _random_size(rng)) for _ in range(n - sum(group_sizes))]

    free_anchors = list(uniques)
    low, high = (0.0, 0.5 - MID_MARGIN - 2 * SAFETY), (0.5 + MID_MARGIN + 2 * SAFETY, 1.0)
    middle = (0.5 - MID_MARGIN + 2 * SAFETY, 0.5 + MID_MARGIN - 2 * SAFETY)
    for group in groups:
        mode = _MODES[_weighted(rng, _MODE_WEIGHTS)]
        if mode == "relation" and not free_anchors:
            mode = "location"
        if mode == "superlative":
            for obj, rank in zip(group, rng.permutation(len(SIZE_NAMES))):
                obj.size = SIZE_NAMES[rank]
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
            anchor.size, size = (SIZE_NAMES[int(rng.integers(2))] for _ in range(2))
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
    return SIZE_NAMES[_weighted(rng, _SIZE_WEIGHTS)]


def _weighted(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """Index drawn with probabilities ``weights`` (summing to 1); cheaper than ``rng.choice(p=...)``."""
    return min(bisect.bisect(list(itertools.accumulate(weights)), rng.random()), len(weights) - 1)
