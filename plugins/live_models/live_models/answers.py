"""What travels to and from an OpenAI-compatible endpoint: the image as a lossless data URL, and the box
read from the model's answer text."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
# The generic parser's patterns, most specific first: Qwen2.5-VL's JSON, Qwen2-VL's point pair, a list.
BBOX_2D = re.compile(r'"bbox_2d"\s*:\s*\[\s*' + r"\s*,\s*".join([NUMBER] * 4) + r"\s*\]")
POINT_PAIR = re.compile(r"\(\s*" + NUMBER + r"\s*,\s*" + NUMBER + r"\s*\)\s*,?\s*\(\s*" + NUMBER + r"\s*,\s*" + NUMBER + r"\s*\)")
BRACKETS = re.compile(r"\[\s*" + r"\s*,\s*".join([NUMBER] * 4) + r"\s*\]")
GENERIC = (BBOX_2D, POINT_PAIR, BRACKETS)


def parse_box(text: str, pattern: re.Pattern[str] | None = None) -> list[float] | None:
    """The four numbers of the box in a model's answer (``pattern``'s 4 groups, or the first match of
    the generic patterns, most specific first), or None when the text holds no box."""
    for p in (pattern,) if pattern is not None else GENERIC:
        match = p.search(text)
        if match is not None:
            return [float(g) for g in match.groups()]
    return None


def data_url(image: Any) -> str:
    """``image`` (a PIL image) as a ``data:image/png;base64,...`` URL: lossless, so the server decodes
    the very pixels refbench decoded."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
