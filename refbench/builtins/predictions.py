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

from ..errors import RefbenchError
from ..files import sha256
from ..formats import DECODE_PROBLEMS, BoxFormat
from ..interfaces import Grounder, ImageItem
from ..items import Answer

FIRST_BOX = r"\[\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*,\s*(-?[\d.]+(?:e-?\d+)?)\s*\]"
PROBLEMS = ("missing", "unparsable", *DECODE_PROBLEMS)


class PredictionsGrounder(Grounder):
    """Boxes predicted by any model, read from a file keyed by sent_id (box format declared, never guessed)."""

    uses_image = False

    class Options(BoxFormat):
        path: Path = Field(description="JSONL or JSON file of answers keyed by sent_id")
        input: Literal["box", "text"] = Field(description="box: a list of 4 numbers; text: raw model output, parsed by pattern")
        field: str | None = Field(None, description="key of the answer (default: 'box' or 'text')")
        pattern: str = Field(FIRST_BOX, description="regex with 4 groups, the coordinates; the first match is used")

        @model_validator(mode="after")
        def _consistent(self) -> "PredictionsGrounder.Options":
            if (self.relative_to == "original") != (self.input_size is None):
                raise ValueError("input_size is needed exactly when relative_to is resized or letterboxed")
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
                                  "write the model's answers there (docs/grounders.md)")]
        return []

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        self.field = o.field or o.input
        self.pattern = re.compile(o.pattern)
        self.answers = _read(o.path)
        self.boxes: dict[int, Answer] = {}
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

    def _box(self, sent_id: int, item: ImageItem) -> Answer:
        """The answer for ``sent_id``: a box in xywh pixels of the original image, or why there is none
        (counted); a text answer keeps its text."""
        if sent_id not in self.answers:
            return self._miss("missing", None)
        answer = self.answers[sent_id].get(self.field) if isinstance(self.answers[sent_id], dict) else self.answers[sent_id]
        raw = answer if self.options.input == "text" and isinstance(answer, str) else None
        values = _numbers(answer, self.pattern) if self.options.input == "text" else _box_values(answer)
        if values is None:
            return self._miss("unparsable", raw)
        decoded = self.options.decode(values, item.width, item.height)
        return self._miss(decoded, raw) if isinstance(decoded, str) else Answer(decoded, raw)

    def _miss(self, why: str, raw: str | None) -> Answer:
        self.counts[why] += 1
        return Answer(None, raw, why)

    def ground(self, image: Any, item: ImageItem) -> list[Answer | None]:
        return [self.boxes.get(r.sent_id) for r in item.refs]

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"path": str(o.path), "sha256": sha256(o.path), "answers": len(self.answers),
                "declared": {"input": o.input, "box_format": o.box_format, "scale": o.scale, "relative_to": o.relative_to,
                             "input_size": o.input_size, "letterbox": o.letterbox if o.relative_to == "letterboxed" else None,
                             "pattern": o.pattern if o.input == "text" else None,
                             **({"order": o.order} if o.order != "xy" else {}),
                             **({"grid": o.grid, "grid_offset": o.grid_offset} if o.scale == "grid" else {})},
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
