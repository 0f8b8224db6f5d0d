"""refbench's own components, registered through the same hooks as any plugin."""

from __future__ import annotations

from ..hookspecs import hookimpl
from .baselines import CenterScorer, LargestScorer, OracleScorer, RandomScorer
from .combinators import MeanLogits
from .datasets import ReferDataset
from .prompters import CropPrompter
from .proposers import DetectionsProposer, GroundTruthProposer


@hookimpl
def refbench_datasets():
    return {"refer": ReferDataset}


@hookimpl
def refbench_proposers():
    return {"detections": DetectionsProposer, "gt": GroundTruthProposer}


@hookimpl
def refbench_prompters():
    return {"crop": CropPrompter}


@hookimpl
def refbench_scorers():
    return {"random": RandomScorer, "largest": LargestScorer, "center": CenterScorer, "oracle": OracleScorer}


@hookimpl
def refbench_combinators():
    return {"mean_logits": MeanLogits}
