"""refbench: a pluggable benchmark harness for referring-expression comprehension."""

from .boxes import Box, IoUConvention, as_array, check_boxes, iou_matrix
from .config import BenchmarkConfig, ProtocolConfig, load_config
from .errors import RefbenchError
from .hookspecs import hookimpl
from .interfaces import (
    Annotation,
    Combinator,
    Component,
    Dataset,
    EmbeddingScorer,
    ImageItem,
    Options,
    Prompter,
    Proposer,
    Ref,
    Scorer,
    ScoreRequest,
)

__version__ = "0.1.0"

__all__ = [
    "Annotation", "BenchmarkConfig", "Box", "Combinator", "Component", "Dataset", "EmbeddingScorer", "ImageItem",
    "IoUConvention", "Options", "Prompter", "Proposer", "ProtocolConfig", "Ref", "RefbenchError", "ScoreRequest",
    "Scorer", "as_array", "check_boxes", "hookimpl", "iou_matrix", "load_config",
]
