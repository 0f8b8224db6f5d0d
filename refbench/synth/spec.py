"""SynthRef's vocabulary (splits, variants, phrase types, colours, shapes, sizes) and its
spec and summary records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
SIZE_NAMES = tuple(SIZES)  # smallest first: superlatives compare these ranks


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
