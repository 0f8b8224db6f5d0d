"""The runner, one stage per module: build components, propose, prepare (workers), batch views
for the encoder, place the work, judge and journal, and the session that runs them.

All phrases about an image travel together, so each candidate view is rendered and encoded once
per image and method; views of many images go through the encoder in one batch; each phrase's
text is encoded once. Predictions are journaled as they are produced, so a killed run resumes
where it stopped. Names are imported on first use: building and checking a config
(``refbench validate``) needs no torch unless a component does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Bench": "components", "Method": "components", "build": "components", "build_component": "components",
    "build_parts": "components",
    "Proposals": "proposals", "propose_all": "proposals",
    "Placement": "place", "placement": "place", "worker_count": "place",
    "load_image": "prepare", "evaluate": "session", "run_benchmark": "session", "join_tensors": "transfer",
    "World": "world",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'refbench.run' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


if TYPE_CHECKING:
    from .components import Bench, Method, build, build_component, build_parts
    from .place import Placement, placement, worker_count
    from .prepare import load_image
    from .proposals import Proposals, propose_all
    from .session import evaluate, run_benchmark
    from .transfer import join_tensors
    from .world import World
