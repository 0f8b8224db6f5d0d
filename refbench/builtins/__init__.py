"""refbench's own components, registered through the same hooks as any plugin.

Each is named as ``"module:Class"``, so listing them imports nothing but this module.
"""

from __future__ import annotations

from ..hookspecs import hookimpl

_HERE = __name__


@hookimpl
def refbench_datasets():
    return {"refer": f"{_HERE}.datasets:ReferDataset", "lmms_lab": f"{_HERE}.lmms_lab:LmmsLabDataset",
            "jxu124": f"{_HERE}.jxu124:Jxu124Dataset", "mdetr": f"{_HERE}.mdetr:MdetrDataset"}


@hookimpl
def refbench_proposers():
    return {"detections": f"{_HERE}.proposers:DetectionsProposer", "gt": f"{_HERE}.proposers:GroundTruthProposer"}


@hookimpl
def refbench_prompters():
    return {"crop": f"{_HERE}.prompters:CropPrompter"}


@hookimpl
def refbench_scorers():
    return {"random": f"{_HERE}.baselines:RandomScorer", "largest": f"{_HERE}.baselines:LargestScorer",
            "center": f"{_HERE}.baselines:CenterScorer", "oracle": f"{_HERE}.baselines:OracleScorer"}


@hookimpl
def refbench_combinators():
    return {"mean_logits": f"{_HERE}.combinators:MeanLogits", "sum_logits": f"{_HERE}.combinators:SumLogits"}


@hookimpl
def refbench_grounders():
    return {"predictions": f"{_HERE}.predictions:PredictionsGrounder"}
