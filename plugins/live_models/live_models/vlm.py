"""VLMs as grounders: the shared generation loop. A box per phrase, written as text, is read in the
family's declared format.

A batch of (image, phrase) pairs becomes one prompt per pair (through the processor's chat template,
or the family's plain prefix), left-padded with its attention mask so every answer starts at the same
position and does not depend on its batch, and is answered greedily by ``generate``. The new tokens
are decoded with special tokens kept (Qwen2-VL, PaliGemma, Florence-2 and Kosmos-2 write their boxes
in special tokens) and cut at the end-of-sequence token; the family's pattern reads the box's numbers
from the text and the family's declared :class:`refbench.BoxFormat` maps them to pixels of the
original image. Text without a box is ``unparsable``; the text itself is kept with every answer.

An encoder-decoder (Florence-2) is padded on the right instead: its encoder's learned positions
count from the first token, so left padding would move them; its attention mask keeps the padding
out, and ``generate`` returns the decoder's tokens alone, after its start token. The families are in
:mod:`live_models.qwen`, :mod:`live_models.paligemma`, :mod:`live_models.florence2`,
:mod:`live_models.kosmos2` and :mod:`live_models.internvl`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from PIL import Image
from pydantic import Field, field_validator

from refbench import Answer, BoxFormat, ImageItem

from .base import ModelGrounder
from .hub import ModelOptions, load, load_processor


class VlmOptions(ModelOptions):
    """Options of the VLM grounders."""

    max_new_tokens: int = Field(64, ge=1, description="the most tokens an answer may take")
    num_beams: int = Field(1, ge=1, description="beams of the search (1: greedy, whatever the model's generation config says)")
    prompt: str | None = Field(None, description="the text after the image, {phrase} standing for the phrase (None: the family's)")

    @field_validator("prompt")
    @classmethod
    def _holds_the_phrase(cls, prompt: str | None) -> str | None:
        if prompt is not None and "{phrase}" not in prompt:
            raise ValueError("the prompt must hold {phrase}, where each phrase goes (e.g. 'find {phrase}')")
        return prompt


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
    #: the side the processor pads a batch's prompts on (left: every answer starts right after its
    #: prompt; right: an encoder-decoder's positions stay those of its unbatched prompt)
    padding_side: ClassVar[str] = "left"
    #: the regex whose groups are the box's numbers in the answer (four, unless ``values`` maps them)
    pattern: ClassVar[re.Pattern[str]]
    #: how those numbers map to the image
    box_format: ClassVar[BoxFormat]

    def build(self) -> None:
        import transformers
        from transformers import AutoProcessor

        self.processor = load_processor(AutoProcessor, self.folder, self.options.model, **self.processor_options())
        self.processor.tokenizer.padding_side = self.padding_side
        self.model = load(getattr(transformers, self.model_class), self.folder, self.options.model, self.device, self.dtype,
                          self.options.attn_implementation)  # type: ignore[attr-defined]
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

    def values(self, groups: Sequence[str]) -> list[float]:
        """The four numbers ``box_format`` reads, from the pattern's groups (as they are, by default)."""
        return [float(g) for g in groups]

    def input_size(self, inputs: Any, i: int) -> tuple[int, int] | None:
        """``[width, height]`` of pair ``i``'s model input, for formats relative to it."""
        return None

    def answer(self, images: Sequence[Image.Image], items: Sequence[ImageItem], phrases: Sequence[str]) -> list[Answer]:
        import torch

        # padding_side is passed as well as set (in build): InternVL's processor reads only the argument, Kosmos-2's only the attribute
        inputs = self.processor(images=[im.convert("RGB") for im in images], text=[self.text(p) for p in phrases],
                                padding=True, padding_side=self.padding_side, return_tensors="pt").to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False,  # type: ignore[attr-defined]
                                      num_beams=self.options.num_beams)  # type: ignore[attr-defined]
        # a decoder-only model returns its prompt, then the answer; an encoder-decoder its start token, then the answer
        new = out[:, 1:] if self.model.config.is_encoder_decoder else out[:, inputs["input_ids"].shape[1]:]
        pad = self.processor.tokenizer.pad_token
        answers = []
        for i, (image, tokens) in enumerate(zip(images, new.tolist())):
            if self.end in tokens:
                tokens = tokens[: tokens.index(self.end)]
            raw = self.processor.tokenizer.decode(tokens, skip_special_tokens=False)
            raw = raw.replace(pad, "") if pad else raw
            found = self.pattern.search(raw)
            if found is None:
                answers.append(Answer(None, raw=raw, problem="unparsable"))
                continue
            box = self.box_format.decode(self.values(found.groups()), *image.size, input_size=self.input_size(inputs, i))
            answers.append(Answer(None, raw=raw, problem=box) if isinstance(box, str) else Answer(box, raw=raw))
        return answers

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {**super().describe(), "prompt": o.prompt or self.prompt, "pattern": self.pattern.pattern,  # type: ignore[attr-defined]
                "box_format": self.box_format.declared(), "max_new_tokens": o.max_new_tokens,  # type: ignore[attr-defined]
                "decoding": "greedy" if o.num_beams == 1 else f"beam search, {o.num_beams} beams",  # type: ignore[attr-defined]
                # the model's own generation settings (e.g. no_repeat_ngram_size), which generate applies too
                "generation_config": {k: v for k, v in self.model.generation_config.to_diff_dict().items() if k != "transformers_version"}}
