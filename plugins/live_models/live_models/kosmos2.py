"""Kosmos-2 as a grounder: ``<grounding><phrase> {phrase}</phrase>``, answered with two patch-index
tokens.

Kosmos-2 continues its prompt: after a grounded phrase it writes ``<object><patch_index_UL>
<patch_index_LR></object>``, the cells of a 32 x 32 grid over the image that hold the box's
upper-left and lower-right corners (Kosmos-2 paper, arXiv:2306.14824, "Grounded Input
Representations"; the grounded phrase in ``<phrase>`` after ``<grounding>``, as in transformers'
Kosmos-2 example and the paper's referring-expression evaluation). A cell index is row x 32 + column. The cells read back as the
reference decoder does (microsoft/unilm ``kosmos-2/demo/decode_string.py``, copied as transformers'
``patch_index_to_coordinate``): the corners are cell centres, unless both corners share a row or a
column, where the box spans the cells whole. The processor squeezes the image to its square input,
so the grid divides the original image's width and height.

Pairs share a batch only when their prompts are as many tokens long. Kosmos-2's positions count the
tokens before them, padding excluded, but while it generates, transformers numbers each new token
from the cache's length, padding included (``Kosmos2TextSinusoidalPositionalEmbedding`` with
``prepare_inputs_for_generation`` dropping ``position_ids``): a padded prompt's answer would move.
Prompts of one length need no padding.
"""

from __future__ import annotations

import re
from typing import Hashable, Sequence

from PIL import Image

from refbench import BoxFormat, ImageItem

from .vlm import VlmGrounder

SIDE = 32  # patch-index cells per side: 1024 tokens


class Kosmos2(VlmGrounder):
    """Kosmos-2: a grounded phrase; its two <patch_index_NNNN> cells of a 32 x 32 grid of the image."""

    plugin = "kosmos2"
    model_types = ("kosmos-2",)
    model_class = "Kosmos2ForConditionalGeneration"
    chat = False
    prompt = "<grounding><phrase> {phrase}</phrase>"
    pattern = re.compile(r"<patch_index_(\d{4})>\s*<patch_index_(\d{4})>")
    box_format = BoxFormat(box_format="xyxy", scale="grid", grid=SIDE)  # values in cells, from ``values``

    def text(self, phrase: str) -> str:
        """The grounding prompt as it is: the processor adds the image tokens and ``<s>``."""
        return (self.options.prompt or self.prompt).replace("{phrase}", phrase)  # type: ignore[attr-defined]

    def batch_key(self, image: Image.Image | None, item: ImageItem, phrase: str) -> Hashable:
        """The prompt's length in tokens: such prompts batch without padding. The text's tokens
        decide it, since the processor puts the same tokens before every prompt (``<s>``, then
        ``<image>``, its ``num_image_tokens`` image tokens and ``</image>``)."""
        return len(self.processor.tokenizer(self.text(phrase), add_special_tokens=False)["input_ids"])

    def values(self, groups: Sequence[str]) -> list[float]:
        """The corners, in cells: centres of the two cells, or their outer edges where they share a row or a column."""
        upper_left, lower_right = int(groups[0]), int(groups[1])
        (y1, x1), (y2, x2) = divmod(upper_left, SIDE), divmod(lower_right, SIDE)
        if x1 == x2 or y1 == y2:
            return [x1, y1, x2 + 1.0, y2 + 1.0]
        return [x1 + 0.5, y1 + 0.5, x2 + 0.5, y2 + 0.5]
