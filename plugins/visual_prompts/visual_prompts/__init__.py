"""refbench plugin: visual prompts from the zero-shot referring-expression literature.

Each prompter draws one candidate box on its own copy of the image and names the text
template of the method it comes from (see ``prompters.py``; mask prompts in ``masks.py``). The package imports nothing
on its own; ``from visual_prompts import Blur`` loads the prompters.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {**{name: "prompters" for name in ("Blur", "CptShade", "GrayscaleOutside", "RedCircle")},
            **{name: "masks" for name in ("BlurReverseMask", "GrayscaleReverseMask", "MaskShade")}}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'visual_prompts' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
