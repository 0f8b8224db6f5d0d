"""The ``predictions`` grounder: any external model's answers, read from a file.

The file holds one answer per phrase, keyed by ``sent_id``: JSON lines (``{"sent_id": 12, "box":
[...]}`` or ``{"sent_id": 12, "text": "... [x1, y1, x2, y2] ..."}``), or one JSON document (a
list of such objects, or an object mapping sent_id to a box or a text). How to read a box is
declared, never guessed: ``box_format`` (xywh or xyxy), ``scale`` (pixels, normalised to [0, 1],
or a 0-1000 grid) and the frame it refers to (``relative_to``: the original image, or an input
resized or letterboxed to ``input_size``). Answers that are missing, that cannot be parsed, that
fall outside the image (beyond refbench's 1-pixel tolerance), or normalised values outside
[0, 1], are counted, reported and scored as misses; sent_ids the benchmark lacks are an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import Field, model_validator

from ..boxes import Box, box_problem
from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import Grounder, ImageItem, Options

FIRST_BOX = r"\[\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*\]"
PROBLEMS = ("missing", "unparsable", "outside_unit_range", "invalid_box")


class PredictionsGrounder(Grounder):
    """Boxes predicted by any model, read from a file keyed by sent_id (box format declared, never guessed)."""

    uses_image = False

    class Options(Options):
        path: Path = Field(description="JSONL or JSON file of answers keyed by sent_id")
        input: Literal["box", "text"] = Field(description="box: a list of 4 numbers; text: raw model output, parsed by pattern")
        box_format: Literal["xywh", "xyxy"]
        scale: Literal["pixels", "normalised", "0-1000"]
        relative_to: Literal["original", "resized", "letterboxed"] = Field(
            "original", description="the frame of the coordinates: the original image, or an input of input_size")
        input_size: tuple[int, int] | None = Field(None, description="[width, height] of the resized or letterboxed input")
        letterbox: Literal["centre", "top_left"] = Field("centre", description="where a letterboxed image sits in its input")
        field: str | None = Field(None, description="key of the answer (default: 'box' or 'text')")
        pattern: str = Field(FIRST_BOX, description="regex with 4 groups, the coordinates; the first match is used")

        @model_validator(mode="after")
        def _consistent(self) -> "PredictionsGrounder.Options":
            if (self.relative_to == "original") != (self.input_size is None):
                raise ValueError("input_size is needed exactly when relative_to is resized or letterboxed")
            if self.input_size is not None and min(self.input_size) <= 0:
                raise ValueError("input_size must be positive")
            try:
                groups = re.compile(self.pattern).groups
            except re.error as exc:
                raise ValueError(f"pattern is not a regex: {exc}") from None
            if groups != 4:
                raise ValueError(f"pattern has {groups} groups; it needs 4, the coordinates")
            return self

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, cls.Options)
        if not options.path.is_file():
            return [RefbenchError(f"predictions file not found: {options.path}",
                                  "write the model's answers there (README: Any model's predictions)")]
        return []

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        self.field = o.field or o.input
        self.pattern = re.compile(o.pattern)
        self.answers = _read(o.path)
        self.boxes: dict[int, Box | None] = {}
        self.counts = dict.fromkeys(PROBLEMS, 0)

    def expect(self, items: Sequence[ImageItem], known: set[int] | None = None) -> list[RefbenchError]:
        wanted = {r.sent_id for item in items for r in item.refs}
        extra = sorted(set(self.answers) - wanted - (known or set()))  # answers beyond a limit or an exclusion are fine
        if extra:
            return [RefbenchError(f"{self.options.path}: {len(extra)} sent_id(s) not in the benchmark, e.g. {extra[:3]}",
                                  "these predictions are for other splits or another data set; select those splits or filter the file")]
        self.counts = dict.fromkeys(PROBLEMS, 0)
        for item in items:
            for ref in item.refs:
                self.boxes[ref.sent_id] = self._box(ref.sent_id, item)
        return []

    def _box(self, sent_id: int, item: ImageItem) -> Box | None:
        """The answer for ``sent_id`` as xywh pixels of the original image, or None (counted)."""
        if sent_id not in self.answers:
            return self._miss("missing")
        answer = self.answers[sent_id].get(self.field) if isinstance(self.answers[sent_id], dict) else self.answers[sent_id]
        values = _numbers(answer, self.pattern) if self.options.input == "text" else _box_values(answer)
        if values is None:
            return self._miss("unparsable")
        o = self.options
        if o.scale == "normalised" and not all(0.0 <= v <= 1.0 for v in values):
            return self._miss("outside_unit_range")
        x, y, a, b = values
        w, h = (a - x, b - y) if o.box_format == "xyxy" else (a, b)
        frame_w, frame_h = o.input_size if o.input_size else (item.width, item.height)
        factor = {"pixels": (1.0, 1.0), "normalised": (frame_w, frame_h), "0-1000": (frame_w / 1000, frame_h / 1000)}[o.scale]
        x, w, y, h = x * factor[0], w * factor[0], y * factor[1], h * factor[1]
        if o.relative_to == "resized":
            sx, sy = item.width / frame_w, item.height / frame_h
            x, w, y, h = x * sx, w * sx, y * sy, h * sy
        elif o.relative_to == "letterboxed":
            s = min(frame_w / item.width, frame_h / item.height)
            dx, dy = ((frame_w - item.width * s) / 2, (frame_h - item.height * s) / 2) if o.letterbox == "centre" else (0.0, 0.0)
            x, y, w, h = (x - dx) / s, (y - dy) / s, w / s, h / s
        box = Box(x, y, w, h)
        if box_problem(box, item.width, item.height) is not None:
            return self._miss("invalid_box")
        return box

    def _miss(self, why: str) -> None:
        self.counts[why] += 1
        return None

    def ground(self, image: Any, item: ImageItem) -> list[Box | None]:
        return [self.boxes.get(r.sent_id) for r in item.refs]

    def report(self) -> str | None:
        bad = {k.replace("_", " "): v for k, v in self.counts.items() if v}
        if not bad:
            return None
        return "predictions scored as misses: " + ", ".join(f"{v} {k}" for k, v in bad.items())

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"path": str(o.path), "sha256": sha256(o.path), "answers": len(self.answers),
                "declared": {"input": o.input, "box_format": o.box_format, "scale": o.scale, "relative_to": o.relative_to,
                             "input_size": o.input_size, "letterbox": o.letterbox if o.relative_to == "letterboxed" else None,
                             "pattern": o.pattern if o.input == "text" else None},
                "scored_as_misses": dict(self.counts)}


def _read(path: Path) -> dict[int, Any]:
    """``sent_id -> answer`` from JSON lines or one JSON document; a bad line is named by its number."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise RefbenchError(f"{path}: line {number} is not JSON ({exc})", "fix that line; one JSON object per line") from None
    if isinstance(document, dict) and "sent_id" not in document:
        rows = [{"sent_id": k, "_value": v} for k, v in document.items()]
    elif document is not None:
        rows = document if isinstance(document, list) else [document]
    out: dict[int, Any] = {}
    for i, row in enumerate(rows):
        try:
            sent_id = int(row["sent_id"])
        except (KeyError, TypeError, ValueError):
            raise RefbenchError(f"{path}: answer #{i + 1} has no integer sent_id: {str(row)[:80]}",
                                "key every answer by the benchmark's sent_id") from None
        if sent_id in out:
            raise RefbenchError(f"{path}: sent_id {sent_id} is answered twice", "keep one answer per phrase")
        out[sent_id] = row.get("_value", row)
    return out


def _box_values(value: Any) -> list[float] | None:
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return values if len(values) == 4 else None


def _numbers(text: Any, pattern: re.Pattern[str]) -> list[float] | None:
    if not isinstance(text, str):
        return None
    match = pattern.search(text)
    if match is None:
        return None
    try:
        return [float(g) for g in match.groups()]
    except (TypeError, ValueError):
        return None
