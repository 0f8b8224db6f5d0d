"""InternVL as a grounder: its referring prompt, answered with ``[[x1, y1, x2, y2]]`` on a 0-1000 grid.

The ``*-hf`` checkpoints (``InternVLForConditionalGeneration``; the original ones need remote code)
take the pair as one chat prompt through the processor's chat template, the image first. InternVL's
RefCOCO evaluation (OpenGVLab/InternVL ``internvl_chat/eval/refcoco/evaluate_grounding.py``) asks
"Please provide the bounding box coordinate of the region this sentence describes: <ref>{}</ref>"
and reads the first ``[[x1, y1, x2, y2]]`` of the answer (``<ref>phrase</ref><box>[[...]]</box>``) as
xyxy, x first, on a 0-1000 grid of the original image: the processor's tiles and thumbnail are all
cut from the image, so the grid divides the image itself. That evaluation divides by 1000 only when
the four values sum to at least 4, a guess refbench does not make: the format is declared 0-1000.
"""

from __future__ import annotations

from refbench import BoxFormat

from .answers import BRACKETS
from .vlm import VlmGrounder


class InternVl(VlmGrounder):
    """InternVL: "Please provide the bounding box coordinate ..."; its [[x1, y1, x2, y2]] on a 0-1000 grid."""

    plugin = "internvl"
    model_types = ("internvl",)
    model_class = "InternVLForConditionalGeneration"
    prompt = "Please provide the bounding box coordinate of the region this sentence describes: <ref>{phrase}</ref>"
    pattern = BRACKETS
    box_format = BoxFormat(box_format="xyxy", scale="0-1000")
