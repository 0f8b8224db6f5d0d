"""``sam_masks``: SAM masks for any proposer's boxes, so mask prompters run from any detector.

It wraps another proposer (``boxes: {plugin: NAME, ...}``, built through refbench's registry as any
block of a benchmark) and gives each of its boxes a mask from transformers' SamModel prompted with
that box. Per image: SamProcessor resizes the image and maps the boxes (``input_boxes``, ``[x1, y1,
x2, y2]`` pixels of the original image) to the model's input; the image is encoded once
(``get_image_embeddings``); the boxes go through the prompt encoder and mask decoder ``batch_size``
at a time; ``post_process_masks`` takes the low-resolution masks back to the original size and
thresholds them at ``mask_threshold`` (0.0 on the logits, the processor's default and
segment_anything's). With ``multimask_output: false`` (FGVP's setting) SAM gives one mask per box;
with ``true`` the best of its three by ``iou_scores``. Masks are cached on disk, keyed by the SAM
weights, these options and each image's boxes (:mod:`live_models.cache`).

Sources: transformers ``models/sam/processing_sam.py`` (``input_boxes``, ``post_process_masks``) and
``modeling_sam.py`` (``multimask_output``, ``iou_scores``); FGVP (``multimask_output=False``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from refbench import (Box, ComponentSpec, ImageItem, Options, Proposer, RefbenchError, box_problem, build_component, load_image,
                      with_mask)

from .cache import Cache, default_folder, digest, weights_sha256
from .hub import Precision, check_family, device_and_dtype, load, load_processor, resolve


class SamOptions(Options):
    """Options of ``sam_masks``."""

    boxes: ComponentSpec = Field(description="the proposer whose boxes get masks, e.g. {plugin: torchvision_detector}")
    model: str = Field(description="a SAM folder written by save_pretrained, or a Hugging Face id (facebook/sam-vit-huge) in the cache")
    revision: str | None = Field(None, description="the Hub revision of a model id")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    precision: Precision = Field("auto", description="auto: bf16 on a GPU that has it, else fp32")
    batch_size: int = Field(64, ge=1, description="boxes per pass of the mask decoder (the image is encoded once)")
    multimask_output: bool = Field(False, description="false: SAM's single mask per box (FGVP); true: the best of three by iou_scores")
    mask_threshold: float = Field(0.0, description="a pixel is in the mask where SAM's logit exceeds this")
    outside: Literal["error", "clip"] = Field("error", description="a box reaching outside the image (beyond refbench's 1-px "
                                                                   "tolerance): stop with an error, or clip it to the image")
    cache: Path | None = Field(None, description="cache folder (None: $REFBENCH_CACHE, else ~/.cache/refbench)")
    reuse: bool = Field(True, description="read cached images; false computes every image again and rewrites its entry")


class SamMasks(Proposer):
    """Another proposer's boxes, each with a SAM mask from a box prompt (cached on disk)."""

    Options = SamOptions

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, SamOptions)
        problems = []
        try:
            check_family(resolve(options.model, options.revision), options.model, ("sam",), "sam_masks")
        except RefbenchError as exc:
            problems.append(exc)
        try:
            device_and_dtype(options.device, options.precision)
        except RefbenchError as exc:
            problems.append(exc)
        return problems

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        assert isinstance(o, SamOptions)
        self.inner: Proposer = build_component("proposer", o.boxes.as_dict(), "boxes")  # its errors read "proposer: boxes: ..."
        self.folder = resolve(o.model, o.revision)
        check_family(self.folder, o.model, ("sam",), "sam_masks")
        self.device, self.dtype = device_and_dtype(o.device, o.precision)
        root = o.cache or default_folder()
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"))
        key = {"model": o.model, "files_sha256": {p.name: weights_sha256(p, root) for p in files},
               "multimask_output": o.multimask_output, "mask_threshold": o.mask_threshold,  # each entry's digest holds its boxes
               "device": self.device.type, "precision": str(self.dtype).removeprefix("torch.")}
        self.cache = Cache(root, "sam_masks", key, o.reuse)
        self.cache.open()
        self.model: Any = None  # loaded on the first image not in the cache

    def load(self) -> None:
        """SamModel and SamProcessor from the resolved folder."""
        from transformers import SamModel, SamProcessor

        self.model = load(SamModel, self.folder, self.options.model, self.device, self.dtype)
        self.processor = load_processor(SamProcessor, self.folder, self.options.model)

    def prompts(self, item: ImageItem, boxes: list[Box]) -> list[Box]:
        """The boxes SAM is prompted with: as given, or clipped to the image (``outside: clip``)."""
        out = []
        for i, b in enumerate(boxes):
            problem = box_problem(b, item.width, item.height)
            if problem is not None and self.options.outside == "clip" and "outside" in problem:
                x1, y1 = max(b.x, 0.0), max(b.y, 0.0)
                x2, y2 = min(b.x + b.w, float(item.width)), min(b.y + b.h, float(item.height))
                b = replace(b, x=x1, y=y1, w=x2 - x1, h=y2 - y1)
                problem = box_problem(b, item.width, item.height)
            if problem is not None:
                fix = ("set sam_masks' outside: clip to clip boxes to the image" if "outside" in problem
                       else "fix the boxes' proposer")
                raise RefbenchError(f"sam_masks: image {item.image_id} box {i} {[b.x, b.y, b.w, b.h]} {problem}; SAM masks only "
                                    "boxes within the image", fix)
            out.append(b)
        return out

    def segment(self, item: ImageItem, boxes: list[Box]) -> list[Box]:
        """``boxes`` with their SAM masks (compressed RLE of the original image's size)."""
        import torch
        from pycocotools import mask as coco_mask

        if self.model is None:
            self.load()
        o = self.options
        inputs = self.processor(images=load_image(item), input_boxes=[[[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes]],
                                return_tensors="pt")
        out: list[Box] = []
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, self.dtype))
            for start in range(0, len(boxes), o.batch_size):
                # boxes stay float32: the prompt encoder scales them to [0, 1] before casting to the model's dtype
                prompt = inputs["input_boxes"][:, start:start + o.batch_size].to(self.device, torch.float32)
                result = self.model(image_embeddings=embeddings, input_boxes=prompt, multimask_output=o.multimask_output)
                masks = self.processor.post_process_masks(result.pred_masks.float().cpu(), inputs["original_sizes"],
                                                          inputs["reshaped_input_sizes"], mask_threshold=o.mask_threshold)[0]
                best = result.iou_scores[0].float().argmax(dim=-1).cpu()  # [boxes]; 0 when there is one mask
                chosen = masks[torch.arange(len(best)), best].numpy().astype(np.uint8)  # [boxes, H, W]
                rles = coco_mask.encode(np.asfortranarray(chosen.transpose(1, 2, 0)))
                for k, rle in enumerate(rles):
                    i = start + k
                    out.append(with_mask(boxes[i], rle, item.height, item.width, f"SAM mask of box {i} (image {item.image_id})"))
        return out

    def propose(self, item: ImageItem) -> list[Box]:
        boxes = self.prompts(item, list(self.inner.propose(item)))
        if not boxes:
            return []
        extra = [[b.x, b.y, b.w, b.h, b.score, b.label] for b in boxes]
        cached = self.cache.get(item, digest(extra))
        if cached is not None and len(cached) == len(boxes):
            return [replace(b, mask=c.mask) for b, c in zip(boxes, cached)]
        out = self.segment(item, boxes)
        self.cache.put(item, out, digest(extra))
        return out

    def report(self) -> str | None:
        lines = [line for line in (self.inner.report(), self.cache.report()) if line]
        return "; ".join(lines) or None

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"boxes": self.inner.describe(), "model": o.model, "revision": o.revision, "folder": str(self.folder),
                "batch_size": o.batch_size, **self.cache.describe()}
