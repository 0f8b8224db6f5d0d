"""refbench: a pluggable benchmark harness for referring-expression comprehension.

This module is refbench's public face: everything a plugin may use is importable from
``refbench`` itself and listed in ``__all__`` (docs/writing-a-plugin.md describes
each). Every other module is private and may change. Names are imported on first use, so
``import refbench`` (and the CLI's start) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    # interfaces and data
    "Component": "interfaces", "Options": "interfaces", "Dataset": "interfaces", "Proposer": "interfaces",
    "Prompter": "prompter", "Scorer": "interfaces", "EmbeddingScorer": "interfaces", "Combinator": "interfaces",
    "Grounder": "interfaces",
    "ImageItem": "items", "Ref": "items", "Annotation": "items", "Answer": "items", "ScoreRequest": "items",
    # declared coordinate formats
    "BoxFormat": "formats",
    # boxes and IoU
    "Box": "boxes", "IoUConvention": "boxes", "as_array": "boxes", "iou": "boxes", "iou_matrix": "boxes",
    "box_problem": "boxes", "check_boxes": "boxes",
    # masks
    "annotation_boxes": "masks", "box_rle": "masks", "decode_mask": "masks", "mask_rle": "masks", "with_mask": "masks",
    # what a prompter draws on, and helpers for its tensor path
    "Canvas": "canvas", "Lookup": "canvas", "tensor_args": "tensors", "rect_masks": "tensors",
    # errors and hooks
    "RefbenchError": "errors", "hookimpl": "hookspecs",
    # files
    "atomic_path": "files", "write_atomic": "files", "sha256": "files",
    # configs
    "BenchmarkConfig": "config", "ComponentSpec": "config", "ProposerSpec": "config", "ProtocolConfig": "config", "RunnerConfig": "config", "Workers": "config",
    "load_config": "config", "load_yaml": "config", "config_digest": "config",
    # running
    "Method": "run", "build_component": "run", "evaluate": "run", "join_tensors": "run", "load_image": "run",
    "worker_count": "run", "World": "run",
    # provenance
    "package_versions": "provenance",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'refbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .canvas import Canvas, Lookup
    from .boxes import Box, IoUConvention, as_array, box_problem, check_boxes, iou, iou_matrix
    from .config import (BenchmarkConfig, ComponentSpec, ProposerSpec, ProtocolConfig, RunnerConfig, Workers, config_digest,
                         load_config, load_yaml)
    from .errors import RefbenchError
    from .files import atomic_path, sha256, write_atomic
    from .hookspecs import hookimpl
    from .masks import annotation_boxes, box_rle, decode_mask, mask_rle, with_mask
    from .tensors import rect_masks, tensor_args
    from .interfaces import Combinator, Component, Dataset, EmbeddingScorer, Grounder, Options, Proposer, Scorer
    from .prompter import Prompter
    from .formats import BoxFormat
    from .items import Annotation, Answer, ImageItem, Ref, ScoreRequest
    from .provenance import package_versions
    from .run import Method, World, build_component, evaluate, join_tensors, load_image, worker_count
