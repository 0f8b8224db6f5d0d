"""VLM grounders: a generative vision-language model is asked for the phrase's box and writes it as text.

Each (image, phrase) pair becomes one prompt (the family's grounding query with the phrase in place
of ``{phrase}``, or the ``prompt`` option). A batch of pairs is one call of ``model.generate`` with
greedy decoding (``do_sample=False``) and at most ``max_new_tokens`` new tokens. Prompts are padded
on the left and carry their attention mask, so every prompt's last token sits at the end of the
batch and padding is masked out: an answer does not depend on which pairs share its batch.

The generated text (the tokens after the prompt, up to the end-of-sequence token) is kept as the
answer's raw text. The family's parser reads the four numbers of the box from it and the family's
declared :class:`refbench.BoxFormat` maps them to pixels of the original image; nothing is guessed
from the magnitudes. Text without a box is the problem ``unparsable``; a box the format refuses is
the format's problem (``outside_unit_range``, ``invalid_box``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from PIL import Image
from pydantic import Field, field_validator

from refbench import Answer, BoxFormat, ImageItem

from .base import ModelGrounder
from .hub import ModelOptions, load


class VlmOptions(ModelOptions):
    """Options every VLM grounder shares."""

    max_new_tokens: int = Field(64, ge=1, description="the most tokens an answer may take (greedy decoding)")
    prompt: str | None = Field(None, description="the query, {phrase} standing for the phrase (default: the family's grounding query)")

    @field_validator("prompt")
    @classmethod
    def _phrase(cls, v: str | None) -> str | None:
        if v is not None and "{phrase}" not in v:
            raise ValueError("prompt has no {phrase}: write where the phrase goes")
        return v


class VlmGrounder(ModelGrounder):
    """The shared part of the VLM grounders: load, prompt, generate, decode the text, parse, map."""

    Options = VlmOptions

    #: the model class's name in transformers
    model_class: ClassVar[str] = ""
    #: the family's grounding query; ``{phrase}`` stands for the phrase
    default_prompt: ClassVar[str] = "{phrase}"
    #: how the family writes a box
    box_format: ClassVar[BoxFormat]
    #: the regex whose 4 groups are the box's numbers in the answer text
    pattern: ClassVar[re.Pattern[str]]
    #: False where the box is written in special tokens, which decoding would otherwise drop
    skip_special_tokens: ClassVar[bool] = True

    @property
    def template(self) -> str:
        o = self.options
        assert isinstance(o, VlmOptions)
        return o.prompt if o.prompt is not None else self.default_prompt

    def build(self) -> None:
        import transformers
        from transformers import AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.folder)
        # generation continues at the end of each row, so decoder-only prompts are padded on the left
        self.processor.tokenizer.padding_side = "left"
        self.model = load(getattr(transformers, self.model_class), self.folder, self.options, self.device, self.dtype)  # type: ignore[arg-type]
        tokenizer = self.processor.tokenizer
        ends = self.model.generation_config.eos_token_id
        ends = [] if ends is None else [ends] if isinstance(ends, int) else list(ends)
        self.stop_ids = {*ends, *(t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None)}

    def encode(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> Any:
        """The processor's inputs for one batch of (image, prompt) pairs, padded on the left."""
        return self.processor(text=list(prompts), images=list(images), return_tensors="pt", padding=True)

    def input_size(self, inputs: Any, k: int, image: Image.Image) -> tuple[int, int] | None:
        """[width, height] of pair ``k``'s model input, for formats relative to a resized input."""
        return None

    def parse(self, text: str) -> list[float] | None:
        """The box's four numbers as written in ``text``, or None when it holds no box."""
        match = self.pattern.search(text)
        return None if match is None else [float(g) for g in match.groups()]

    def generate(self, inputs: Any) -> list[str]:
        """The generated text of each row: the new tokens, up to the first end-of-sequence token."""
        import torch

        inputs = inputs.to(self.device)
        for key, value in inputs.items():
            if torch.is_tensor(value) and value.is_floating_point():
                inputs[key] = value.to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.options.max_new_tokens)  # type: ignore[attr-defined]
        start = inputs["input_ids"].shape[1] if self.model.config.is_encoder_decoder is False else 0
        texts = []
        for row in out[:, start:].tolist():
            if self.model.config.is_encoder_decoder and row and row[0] == self.model.generation_config.decoder_start_token_id:
                row = row[1:]
            cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            texts.append(self.processor.tokenizer.decode(row[:cut], skip_special_tokens=self.skip_special_tokens))
        return texts

    def to_answer(self, text: str, image: Image.Image, size: tuple[int, int] | None) -> Answer:
        """``text`` parsed and mapped to the image through the declared format."""
        values = self.parse(text)
        if values is None:
            return Answer(None, raw=text, problem="unparsable")
        box = self.box_format.decode(values, *image.size, input_size=size)
        return Answer(None, raw=text, problem=box) if isinstance(box, str) else Answer(box, raw=text)

    def answer(self, images: Sequence[Image.Image], items: Sequence[ImageItem], phrases: Sequence[str]) -> list[Answer]:
        rgb = [im.convert("RGB") for im in images]
        inputs = self.encode(rgb, [self.template.format(phrase=p) for p in phrases])
        texts = self.generate(inputs)
        return [self.to_answer(t, im, self.input_size(inputs, k, im)) for k, (t, im) in enumerate(zip(texts, rgb))]

    def extra(self) -> dict[str, Any]:
        """Family-specific settings run.json records."""
        return {}

    def describe(self) -> dict[str, Any]:
        o = self.options
        assert isinstance(o, VlmOptions)
        declared = self.box_format.declared()
        if self.box_format.relative_to == "resized":
            declared["input_size"] = "per image, from the processor's resize"
        return {**super().describe(), "box_format": declared, "prompt": self.template,
                "max_new_tokens": o.max_new_tokens, "decoding": "greedy", "parser": self.pattern.pattern, **self.extra()}
