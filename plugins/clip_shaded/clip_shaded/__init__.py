"""refbench plugin: CLIP scoring green-shaded candidate boxes, and its fine-tuning recipe.

The package itself imports nothing heavy (refbench loads ``clip_shaded.plugin`` on every CLI
start); ``from clip_shaded import ClipScorer`` imports the model code on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"GreenShade": "prompter", "ClipScorer": "scorer", "load_checkpoint": "scorer", "save_checkpoint": "scorer"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clip_shaded' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
