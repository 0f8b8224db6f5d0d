"""The Qwen VLMs as grounders: a box per phrase, written as text, read in the family's declared format.

Each pair is one chat prompt through the processor's own chat template, answered by
:class:`live_models.vlm.VlmGrounder`'s generation loop.

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

from typing import Any

from pydantic import Field

from refbench import BoxFormat

from .answers import BBOX_2D, POINT_PAIR
from .hub import load_processor
from .vlm import VlmGrounder, VlmOptions


class Qwen2Vl(VlmGrounder):
    """Qwen2-VL: the phrase as an object reference; its <|box_start|> corners on a 0-1000 grid."""

    plugin = "qwen2_vl"
    model_types = ("qwen2_vl",)
    model_class = "Qwen2VLForConditionalGeneration"
    prompt = "<|object_ref_start|>{phrase}<|object_ref_end|>"
    pattern = POINT_PAIR
    box_format = BoxFormat(box_format="xyxy", scale="0-1000")


class Qwen25Options(VlmOptions):
    """Qwen2.5-VL's options: its processor's image size limits too."""

    min_pixels: int | None = Field(None, ge=1, description="the processor's min_pixels (None: the model's own)")
    max_pixels: int | None = Field(None, ge=1, description="the processor's max_pixels (None: the model's own)")


class Qwen25Vl(VlmGrounder):
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

        size = dict(load_processor(AutoImageProcessor, self.folder, self.options.model).size or {})
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
