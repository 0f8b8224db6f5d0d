"""The Qwen VLMs as grounders: a box per phrase, written as text, read in the family's declared format.

A batch of (image, phrase) pairs becomes one chat prompt per pair through the processor's own chat
template, left-padded with its attention mask so every answer starts at the same position and does
not depend on its batch, and is answered greedily by ``generate``. The new tokens are decoded with
special tokens kept (Qwen2-VL writes its box between special tokens) and cut at the end-of-turn
token; the family's pattern reads four numbers from the text and the family's declared
:class:`refbench.BoxFormat` maps them to pixels of the original image. Text without a box is
``unparsable``; the text itself is kept with every answer.

- **Qwen2-VL** (``qwen2_vl``): the phrase between ``<|object_ref_start|>`` and ``<|object_ref_end|>``;
  the answer ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with corners on a 0-1000 grid of the image
  (Qwen2-VL technical report, arXiv:2409.12191, sec. 2.2: coordinates "normalized to [0, 1000)";
  the model card's grounding example). xyxy, x first, the whole image.
- **Qwen2.5-VL** (``qwen2_5_vl``): "Locate {phrase} in this image and output the bbox coordinates in
  JSON format." (the Qwen2.5-VL cookbook ``spatial_understanding.ipynb``); the answer
  ``{"bbox_2d": [x1, y1, x2, y2], ...}`` in absolute pixels of the input the processor resized the
  image to (Qwen2.5-VL technical report, arXiv:2502.13923, sec. 2.1: "absolute coordinates based on
  the actual size of the image"). That input is ``image_grid_thw``'s patch grid times the patch
  size (14), sides multiples of 28; ``min_pixels``/``max_pixels`` change it, so they are options
  and run.json records the values in force.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

from PIL import Image
from pydantic import Field

from refbench import Answer, BoxFormat, ImageItem

from .answers import BBOX_2D, POINT_PAIR
from .base import ModelGrounder
from .hub import ModelOptions, load


class QwenOptions(ModelOptions):
    """Options of the Qwen grounders."""

    max_new_tokens: int = Field(64, ge=1, description="the most tokens an answer may take")
    prompt: str | None = Field(None, description="the text after the image, {phrase} standing for the phrase (None: the family's)")


class QwenGrounder(ModelGrounder):
    """A Qwen VLM asked through its chat template; subclasses declare the prompt, pattern and format."""

    Options = QwenOptions

    #: the model class in transformers
    model_class: ClassVar[str] = ""
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
        """The chat prompt for ``phrase``: the image, then the family's (or the user's) prompt."""
        template = self.options.prompt or self.prompt  # type: ignore[attr-defined]
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


class Qwen2Vl(QwenGrounder):
    """Qwen2-VL: the phrase as an object reference; its <|box_start|> corners on a 0-1000 grid."""

    plugin = "qwen2_vl"
    model_types = ("qwen2_vl",)
    model_class = "Qwen2VLForConditionalGeneration"
    prompt = "<|object_ref_start|>{phrase}<|object_ref_end|>"
    pattern = POINT_PAIR
    box_format = BoxFormat(box_format="xyxy", scale="0-1000")


class Qwen25Options(QwenOptions):
    """Qwen2.5-VL's options: its processor's image size limits too."""

    min_pixels: int | None = Field(None, ge=1, description="the processor's min_pixels (None: the model's own)")
    max_pixels: int | None = Field(None, ge=1, description="the processor's max_pixels (None: the model's own)")


class Qwen25Vl(QwenGrounder):
    """Qwen2.5-VL: "Locate ... in JSON format"; its bbox_2d in pixels of the resized input."""

    plugin = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    model_class = "Qwen2_5_VLForConditionalGeneration"
    prompt = "Locate {phrase} in this image and output the bbox coordinates in JSON format."
    pattern = BBOX_2D
    box_format = BoxFormat(box_format="xyxy", scale="pixels", relative_to="resized", input_size=(1, 1))  # input_size: per image
    Options = Qwen25Options

    def processor_options(self) -> dict[str, Any]:
        """The limits as the image processor's ``size`` (``shortest_edge``/``longest_edge`` hold
        min_pixels/max_pixels; transformers 5 deprecates the old keyword arguments), the saved ones
        kept where an option is unset."""
        o = self.options
        if o.min_pixels is None and o.max_pixels is None:  # type: ignore[attr-defined]
            return {}
        from transformers import AutoImageProcessor

        size = dict(AutoImageProcessor.from_pretrained(self.folder).size or {})
        if o.min_pixels is not None:  # type: ignore[attr-defined]
            size["shortest_edge"] = o.min_pixels  # type: ignore[attr-defined]
        if o.max_pixels is not None:  # type: ignore[attr-defined]
            size["longest_edge"] = o.max_pixels  # type: ignore[attr-defined]
        return {"size": size}

    def input_size(self, inputs: Any, i: int) -> tuple[int, int]:
        _, rows, cols = inputs["image_grid_thw"][i].tolist()  # the resized input's patches, one image per pair
        patch = self.processor.image_processor.patch_size
        return cols * patch, rows * patch

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["box_format"]["input_size"] = "image_grid_thw's (columns, rows) x patch_size, per image"
        ip = self.processor.image_processor
        size = dict(getattr(ip, "size", None) or {})  # shortest_edge / longest_edge hold min_pixels / max_pixels
        out.update(min_pixels=getattr(ip, "min_pixels", None) or size.get("shortest_edge"),
                   max_pixels=getattr(ip, "max_pixels", None) or size.get("longest_edge"), patch_size=ip.patch_size)
        return out
