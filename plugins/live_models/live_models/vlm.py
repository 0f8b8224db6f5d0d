"""VLMs as grounders: the shared generation loop. A box per phrase, written as text, is read in the
family's declared format.

A batch of (image, phrase) pairs becomes one prompt per pair (through the processor's chat template,
or the family's plain prefix), left-padded with its attention mask so every answer starts at the same
position and does not depend on its batch, and is answered greedily by ``generate``. The new tokens
are decoded with special tokens kept (Qwen2-VL and PaliGemma write their boxes in special tokens) and
cut at the end-of-sequence token; the family's pattern reads four numbers from the text and the
family's declared :class:`refbench.BoxFormat` maps them to pixels of the original image. Text
without a box is ``unparsable``; the text itself is kept with every answer. The families are in
:mod:`live_models.qwen` and :mod:`live_models.paligemma`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from PIL import Image
from pydantic import Field

from refbench import Answer, BoxFormat, ImageItem

from .base import ModelGrounder
from .hub import ModelOptions, load


class VlmOptions(ModelOptions):
    """Options of the VLM grounders."""

    max_new_tokens: int = Field(64, ge=1, description="the most tokens an answer may take")
    prompt: str | None = Field(None, description="the text after the image, {phrase} standing for the phrase (None: the family's)")


class VlmGrounder(ModelGrounder):
    """A VLM asked for a box in text; subclasses declare the prompt, pattern and format."""

    Options = VlmOptions

    #: the model class in transformers
    model_class: ClassVar[str] = ""
    #: True: the prompt goes through the processor's chat template after the image; False: the
    #: processor's image token, then the prompt as it is (PaliGemma's prefix)
    chat: ClassVar[bool] = True
    #: the family's prompt ({phrase} stands for the phrase)
    prompt: ClassVar[str] = "{phrase}"
    #: the regex whose four groups are the box's numbers in the answer
    pattern: ClassVar[re.Pattern[str]]
    #: how those numbers map to the image
    box_format: ClassVar[BoxFormat]

    def build(self) -> None:
        import transformers
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.folder, **self.processor_options())
        self.processor.tokenizer.padding_side = "left"  # every answer then starts right after its prompt
        self.model = load(getattr(transformers, self.model_class), self.folder, self.options, self.device, self.dtype)  # type: ignore[arg-type]
        self.end = self.processor.tokenizer.convert_tokens_to_ids(self.processor.tokenizer.eos_token)

    def processor_options(self) -> dict[str, Any]:
        """Keyword arguments of ``AutoProcessor.from_pretrained`` (e.g. the image size limits)."""
        return {}

    def text(self, phrase: str) -> str:
        """The model's text for ``phrase``: the image, then the family's (or the user's) prompt."""
        template = self.options.prompt or self.prompt  # type: ignore[attr-defined]
        if not self.chat:
            return self.processor.image_token + template.replace("{phrase}", phrase)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": template.replace("{phrase}", phrase)}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def input_size(self, inputs: Any, i: int) -> tuple[int, int] | None:
        """``[width, height]`` of pair ``i``'s model input, for formats relative to it."""
        return None

    def answer(self, images: Sequence[Image.Image], items: Sequence[ImageItem], phrases: Sequence[str]) -> list[Answer]:
        import torch

        inputs = self.processor(images=[im.convert("RGB") for im in images], text=[self.text(p) for p in phrases],
                                padding=True, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False)  # type: ignore[attr-defined]
        pad = self.processor.tokenizer.pad_token
        answers = []
        for i, (image, tokens) in enumerate(zip(images, out[:, inputs["input_ids"].shape[1]:].tolist())):
            if self.end in tokens:
                tokens = tokens[: tokens.index(self.end)]
            raw = self.processor.tokenizer.decode(tokens, skip_special_tokens=False)
            raw = raw.replace(pad, "") if pad else raw
            found = self.pattern.search(raw)
            if found is None:
                answers.append(Answer(None, raw=raw, problem="unparsable"))
                continue
            box = self.box_format.decode([float(g) for g in found.groups()], *image.size, input_size=self.input_size(inputs, i))
            answers.append(Answer(None, raw=raw, problem=box) if isinstance(box, str) else Answer(box, raw=raw))
        return answers

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {**super().describe(), "prompt": o.prompt or self.prompt, "pattern": self.pattern.pattern,  # type: ignore[attr-defined]
                "box_format": self.box_format.declared(), "max_new_tokens": o.max_new_tokens, "decoding": "greedy"}  # type: ignore[attr-defined]
