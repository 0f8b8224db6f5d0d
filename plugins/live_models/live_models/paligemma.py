"""PaliGemma as a grounder: ``detect {phrase}``, answered with four location tokens.

PaliGemma is not a chat model: its text is the processor's image tokens, then the prompt (the
processor adds the beginning-of-sequence token and the newline that ends the prefix). The mix and
RefCOCO checkpoints detect with ``detect {thing}`` and answer ``<locYYYY><locXXXX><locYYYY><locXXXX>
{thing}``: y_min, x_min, y_max, x_max, each "normalized image coordinates binned to 1024 tokens"
(<loc0000> to <loc1023>; PaliGemma paper, arXiv:2407.07726, sec. 3.2.2, and big_vision's PaliGemma
README), read back as bin / 1024 of the image's side (big_vision's PaliGemma demo divides each by
1024). The processor squeezes the image to its square input without keeping the aspect ratio, so
the bins are fractions of the original image's width and height.
"""

from __future__ import annotations

import re

from refbench import BoxFormat

from .vlm import VlmGrounder


class PaliGemma(VlmGrounder):
    """PaliGemma: "detect {phrase}"; its four <locNNNN> tokens, y first, 1024 bins of the image."""

    plugin = "paligemma"
    model_types = ("paligemma",)
    model_class = "PaliGemmaForConditionalGeneration"
    chat = False
    prompt = "detect {phrase}"
    pattern = re.compile(r"<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>\s*<loc(\d{4})>")
    box_format = BoxFormat(box_format="xyxy", scale="grid", grid=1024, order="yx")
