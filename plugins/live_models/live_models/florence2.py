"""Florence-2 as a grounder: ``<CAPTION_TO_PHRASE_GROUNDING>`` and the phrase, answered with location
tokens.

Florence-2 is an encoder-decoder without a chat template. Its processor expands the task token into
its own prompt ("Locate the phrases in the caption: {phrase}") and adds the image tokens and the
sequence tokens itself, so the text handed to it is the task token and the phrase. Florence-2 has no
referring-expression task token among its task prompts (transformers ``processing_florence2.py``);
phrase grounding is the nearest, and ``prompt: "<OPEN_VOCABULARY_DETECTION>{phrase}"`` asks the other
task that answers a phrase with boxes. The answer is the phrase, then ``<loc_x1><loc_y1><loc_x2>
<loc_y2>`` per box: xyxy, x first, each coordinate quantized into 1,000 bins of the image (Florence-2
paper, arXiv:2311.06242, its task formulation's location tokens), read back at the bin's centre,
(bin + 0.5) / 1000 of the side (transformers' ``Florence2PostProcessor.dequantize``, which then
truncates to whole pixels; refbench keeps the fraction). The processor squeezes the image to its
square input, so the bins are fractions of the original image's width and height. The first box is
the answer.
"""

from __future__ import annotations

import re
from typing import Any

from refbench import BoxFormat, RefbenchError

from .hub import load_processor, resolve
from .vlm import VlmGrounder, VlmOptions

TASK = "<CAPTION_TO_PHRASE_GROUNDING>"


class Florence2(VlmGrounder):
    """Florence-2: phrase grounding; its first <loc_N> box, xyxy, centres of 1000 bins of the image."""

    plugin = "florence2"
    model_types = ("florence2",)
    model_class = "Florence2ForConditionalGeneration"
    chat = False
    padding_side = "right"  # BART's learned positions count from the first token
    prompt = TASK + "{phrase}"
    pattern = re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")
    box_format = BoxFormat(box_format="xyxy", scale="grid", grid=1000, grid_offset=0.5)

    @classmethod
    def check(cls, options: VlmOptions) -> list[RefbenchError]:  # type: ignore[override]
        """The family's checks, then the prompt against the processor's task tables (the processor
        alone is loaded, before any method's model)."""
        problems = super().check(options)
        if problems:
            return problems
        from transformers import AutoProcessor

        try:
            processor = load_processor(AutoProcessor, resolve(options.model, options.revision), options.model)
            expand(processor, options.prompt or cls.prompt)
        except RefbenchError as exc:
            return [exc]
        return []

    def text(self, phrase: str) -> str:
        """The task token and the phrase: the processor adds the image and sequence tokens."""
        return (self.options.prompt or self.prompt).replace("{phrase}", phrase)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        expanded = expand(self.processor, self.options.prompt or self.prompt)  # type: ignore[attr-defined]
        return {**super().describe(), "expanded_prompt": expanded}  # what the encoder reads


def expand(processor: Any, template: str) -> str:
    """The prompt Florence-2's encoder reads for ``template``, as ``processor`` expands its task token
    (``task_prompts_with_input``). A task token that takes no input (``<OD>``, ``<CAPTION>``, ...)
    leaves no place for the phrase, and is refused here rather than by the processor."""
    for token in processor.task_prompts_without_inputs:
        if token in template:
            raise RefbenchError(f"florence2: the prompt {template!r} holds {token}, a Florence-2 task that takes no phrase",
                                "use a task that answers a phrase with boxes: '<CAPTION_TO_PHRASE_GROUNDING>{phrase}' "
                                "(the default) or '<OPEN_VOCABULARY_DETECTION>{phrase}'")
    for token, task in processor.task_prompts_with_input.items():
        if token in template:
            return task.format(input=template.replace(token, "").strip())
    return template
