"""The CLIP scorer: logits = logit_scale x cosine(phrase, prompted view), on open_clip."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import open_clip
import torch
from PIL import Image
from pydantic import Field
from torchvision import transforms

from refbench import Box, EmbeddingScorer, Options, Prompter, RefbenchError, join_tensors, sha256

from .device import DeviceViews, draw
from .views import ExactViews

from .model import (CHECKPOINT_FIX, MODEL_CONFIGS, PRECISIONS, _device, _quiet_open_clip, build_model,  # noqa: F401
                    encode_text, load_checkpoint, save_checkpoint)


class ClipScorer(EmbeddingScorer):
    """open_clip model scoring phrases against prompted views (cosine x logit scale)."""

    text_cache_size = 1 << 16  # phrase features kept per run

    class Options(Options):
        arch: str | None = Field(None, description="open_clip architecture; read from the checkpoint when omitted")
        pretrained: str | None = Field(None, description="open_clip pretrained tag, e.g. openai (needs internet once)")
        checkpoint: Path | None = Field(None, description="local weights: .safetensors, or a torch state dict")
        init_seed: int = Field(0, description="seed of the random init when no weights are given")
        template: str | None = Field(None, description="text template, e.g. 'a photo of {}'; default: the prompter's, else '{}'")
        device: str = Field("auto", description="auto, cpu, cuda, cuda:1...")
        precision: Literal["fp32", "bf16", "fp16"] = "fp32"
        batch_size: int | None = Field(None, ge=1, description="split encoder calls into this many views")
        views: Literal["exact", "resized", "device"] = Field(
            "exact", description="exact: render on the full image, then preprocess; resized: preprocess once, shade the model-size tensor; "
                                 "device: workers only decode, views are drawn and resized with torch on the model's device")
        threads: int | None = Field(None, ge=1, description="torch CPU threads")

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        o = options
        assert isinstance(o, ClipScorer.Options)
        problems = []
        if o.pretrained and o.checkpoint:
            problems.append(RefbenchError("both pretrained and checkpoint are given", "give one of them"))
        if o.template is not None and "{}" not in o.template:
            problems.append(RefbenchError(f"template {o.template!r} has no '{{}}'", "write e.g. template: 'a photo of {}'"))
        device = None
        try:
            device = _device(o.device)
        except RefbenchError as exc:
            problems.append(exc)
        if o.precision != "fp32" and device is not None and device.type != "cuda":
            problems.append(RefbenchError(f"precision {o.precision} needs a GPU", "use precision: fp32 on the CPU"))
        elif o.precision == "bf16" and device is not None and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            problems.append(RefbenchError(f"{torch.cuda.get_device_name(device)} does not support bf16", "use precision: fp16 or fp32"))
        if o.checkpoint is not None and not o.checkpoint.is_file():
            problems.append(RefbenchError(f"checkpoint not found: {o.checkpoint}", CHECKPOINT_FIX))
        return problems

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        problems = self.check(o)
        if problems:
            raise RefbenchError.many(problems)
        if o.threads:
            torch.set_num_threads(o.threads)
        self.device = _device(o.device)
        self.model, self.arch, self.checkpoint_meta = build_model(o.arch, o.pretrained, o.checkpoint, o.init_seed)
        self.model.eval().to(self.device)
        self._text_cache: dict[bytes, torch.Tensor] = {}  # token ids -> features; only valid while weights are fixed
        self.tokenizer = open_clip.get_tokenizer(self.arch)
        self._token_cache: dict[str, np.ndarray] = {}  # phrase -> token ids
        self.template = o.template or "{}"  # until use_prompter names the method's prompter
        self.phrase_chars: int | None = None
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = cfg["size"]
        self.size = size if isinstance(size, int) else size[0]
        # open_clip's eval transform (resize shortest side, centre crop). Views travel as uint8
        # (4x less to copy from workers and to the GPU) and are normalised on the model's device.
        self.resize = transforms.Compose([
            transforms.Resize(self.size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(self.size),
        ])
        self.exact = ExactViews(self.size)  # the same views for prompters that draw near their boxes only
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1) * 255
        if self.device.type == "cuda":  # initialise CUDA, cuBLAS and cuDNN before any timing starts
            with torch.inference_mode(), self.autocast():
                self.model.encode_image(torch.zeros(2, 3, self.size, self.size, device=self.device))
                self.model.encode_text(self.tokenize(["warm up"]).to(self.device))

    def use_prompter(self, prompter: Prompter | None) -> None:
        """The phrase template (the config's, else the prompter's, else the bare phrase) and the
        prompter's phrase cut."""
        template = self.options.template or (prompter.template if prompter is not None else None) or "{}"
        chars = prompter.phrase_chars if prompter is not None else None
        if (template, chars) != (self.template, self.phrase_chars):
            self.template, self.phrase_chars = template, chars
            self._token_cache.clear()
            self._text_cache.clear()

    def check_prompter(self, prompter: Prompter | None) -> list[RefbenchError]:
        if prompter is not None and self.options.views == "resized" and not prompter.renders_resized:
            return [RefbenchError(f"views: resized, but prompter {type(prompter).__name__} draws only on the full image",
                                  "use the scorer's views: exact")]
        if prompter is not None and self.options.views == "device" and not prompter.renders_tensor:
            return [RefbenchError(f"views: device, but prompter {type(prompter).__name__} draws only with PIL and numpy (no render_tensor)",
                                  "use the scorer's views: exact")]
        return super().check_prompter(prompter)

    # ------------------------------------------------------------ preparation (workers)

    def prepare(self, image: Image.Image, boxes: Sequence[Box], prompter: Prompter | None) -> torch.Tensor | DeviceViews:
        """``[len(boxes), 3, size, size]`` uint8 views, contiguous: they are written channels-first
        here, in the workers, so batching them is a plain copy. With ``views: device``, the decoded
        image and its boxes instead (:class:`DeviceViews`, one row per view): :meth:`encode_views`
        draws the views."""
        if prompter is None:
            raise RefbenchError("scorer 'clip' needs a prompter", "add prompter: {plugin: green_shade}")
        if self.options.views == "device":
            if not prompter.renders_tensor:
                raise RefbenchError(f"prompter {type(prompter).__name__} draws only with PIL and numpy", "use the scorer's views: exact")
            return DeviceViews.of(image, boxes, prompter)
        out = torch.empty((len(boxes), 3, self.size, self.size), dtype=torch.uint8)
        array = out.numpy().transpose(0, 2, 3, 1)  # the same memory, seen as N x H x W x 3
        if self.options.views == "exact":
            # a prompter that draws near its boxes only: each view recomputed only there (ExactViews)
            if not (prompter.draws_within_box is not None and image.mode == "RGB"
                    and self.exact.write(image, boxes, prompter, out.numpy())):
                for i, view in enumerate(prompter.render(image, boxes)):
                    array[i] = np.asarray(self.resize(view))
        else:
            if not prompter.renders_resized:
                raise RefbenchError(f"prompter {type(prompter).__name__} draws only on the full image", "use the scorer's views: exact")
            prompter.render_resized(*self._resized(image, boxes), out=array)
        return out

    def _resized(self, image: Image.Image, boxes: Sequence[Box]) -> tuple[np.ndarray, list[Box], float]:
        """``views: resized``: the image resized and cropped to the model's input, the boxes in its
        pixels, and the scale."""
        scale = max(self.size / image.width, self.size / image.height)  # Resize: shortest side -> size
        left = round((image.width * scale - self.size) / 2)
        top = round((image.height * scale - self.size) / 2)
        mapped = [Box(b.x * scale - left, b.y * scale - top, b.w * scale, b.h * scale) for b in boxes]
        return np.asarray(self.resize(image)), mapped, scale

    def prepare_many(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]],
                     prompter: Prompter | None) -> list[torch.Tensor | DeviceViews]:
        """:meth:`prepare` of several images. Exact views drawn within their boxes have every image's
        windows drawn in one batch (:meth:`ExactViews.write_many`); resized views, every image's of
        one scale (each image resized and cropped to the model's input: the same size)."""
        if type(self).prepare is not ClipScorer.prepare or prompter is None:  # a subclass's own views
            return super().prepare_many(images, boxes, prompter)
        if self.options.views == "resized" and prompter.renders_resized:
            return self._resized_many(images, boxes, prompter)
        if not (self.options.views == "exact" and prompter.draws_within_box is not None):
            return super().prepare_many(images, boxes, prompter)
        outs = [torch.empty((len(b), 3, self.size, self.size), dtype=torch.uint8) for b in boxes]
        rgb = [k for k, image in enumerate(images) if image.mode == "RGB"]
        written = self.exact.write_many([images[k] for k in rgb], [boxes[k] for k in rgb], prompter, [outs[k].numpy() for k in rgb])
        done = {k for k, ok in zip(rgb, written) if ok}
        return [outs[k] if k in done else self.prepare(image, boxes[k], prompter) for k, image in enumerate(images)]

    def _resized_many(self, images: Sequence[Image.Image], boxes: Sequence[Sequence[Box]], prompter: Prompter) -> list[torch.Tensor]:
        """``views: resized`` of several images, drawn in one batch per scale, each image's views a
        slice of its batch (contiguous)."""
        inputs = [self._resized(image, b) for image, b in zip(images, boxes)]
        result: list[torch.Tensor] = [torch.empty(0)] * len(images)
        by_scale: dict[float, list[int]] = {}
        for k, (_, _, scale) in enumerate(inputs):
            by_scale.setdefault(scale, []).append(k)
        for scale, group in by_scale.items():
            counts = [len(boxes[k]) for k in group]
            out = torch.empty((sum(counts), 3, self.size, self.size), dtype=torch.uint8)
            prompter.render_resized_many([inputs[k][0] for k in group], [inputs[k][1] for k in group], scale,
                                         out=out.numpy().transpose(0, 2, 3, 1))
            for k, views in zip(group, out.split(counts)):
                result[k] = views
        return result

    def model_input(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 views (any device) -> normalised float on the model's device."""
        x = views.to(self.device, non_blocking=True).to(torch.float32, copy=True)  # a new tensor: normalised in place
        return x.sub_(self.mean).div_(self.std)

    def device_input(self, views: DeviceViews) -> torch.Tensor:
        """``views: device``: the views drawn, resized and normalised on the model's device."""
        return draw(views.to(self.device), self.size).sub_(self.mean).div_(self.std)

    def concat(self, prepared: Sequence[torch.Tensor | DeviceViews]) -> torch.Tensor | DeviceViews:
        if isinstance(prepared[0], DeviceViews):
            return DeviceViews.concat(prepared)  # type: ignore[arg-type]
        return join_tensors(prepared)  # type: ignore[arg-type]

    def to_device(self, views: torch.Tensor | DeviceViews) -> torch.Tensor | DeviceViews:
        """The views (``views: device``: the decoded images) on the model's device, asynchronously where possible."""
        return views.to(self.device, non_blocking=True) if isinstance(views, torch.Tensor) else views.to(self.device)

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def pin_memory(self) -> bool:
        """Batches go to the GPU from pinned memory, so copies are asynchronous."""
        return self.on_gpu

    # ------------------------------------------------------------ encoding (main process)

    def autocast(self) -> Any:
        if self.options.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.options.precision])

    def encode_views(self, views: torch.Tensor | DeviceViews) -> torch.Tensor:
        step = self.options.batch_size or len(views)
        inputs = self.device_input if isinstance(views, DeviceViews) else self.model_input
        feats = []
        for i in range(0, len(views), step):
            x = inputs(views[i : i + step])  # type: ignore[arg-type]
            with self.autocast():
                feats.append(self.model.encode_image(x, normalize=True))
        return torch.cat(feats).float()

    def _cached(self, cache: dict[Any, Any], keys: Sequence[Any], compute: Callable[[list[int]], Sequence[Any]]) -> list[Any]:
        """``cache[k]`` for every key; each missing distinct key is computed once (``compute`` gets the
        rows where they first appear, all together). When the new keys would take the cache past
        ``text_cache_size``, it starts over with this call's."""
        first: dict[Any, int] = {}  # distinct key -> its first row
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        new = [i for k, i in first.items() if k not in cache]
        if new:
            if len(cache) + len(new) > self.text_cache_size:
                cache.clear()
                new = list(first.values())
            cache.update(zip((keys[i] for i in new), compute(new)))
        return [cache[k] for k in keys]

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``[len(texts), context]``. open_clip's BPE runs in Python, so each distinct
        phrase is tokenised once (a call's new ones together) and kept (see :meth:`_cached`)."""
        ids = self._cached(self._token_cache, texts,
                           lambda rows: self.tokenizer([self.template.format(texts[i][: self.phrase_chars])
                                                        for i in rows]).numpy())
        return torch.from_numpy(np.stack(ids))

    def prepare_texts(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenize(texts)

    def concat_texts(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        return join_tensors(prepared)

    def weights_changed(self) -> None:
        """Call after changing ``model``'s weights (training): cached phrase features are stale."""
        self._text_cache.clear()

    def encode_texts(self, texts: torch.Tensor) -> torch.Tensor:
        """Features of token ids (``prepare_texts`` output). Each distinct phrase is encoded once per
        run: features are kept for up to 65,536 phrases (a few MB), then the cache starts over."""
        def compute(rows: list[int]) -> torch.Tensor:
            with self.autocast():
                return encode_text(self.model, texts[rows].to(self.device)).float()

        return torch.stack(self._cached(self._text_cache, [row.tobytes() for row in texts.numpy()], compute))

    def logits(self, text_features: torch.Tensor, view_features: torch.Tensor) -> np.ndarray:
        scale = self.model.logit_scale.exp().float()
        return (scale * text_features @ view_features.T).cpu().numpy()

    def describe(self) -> dict[str, Any]:
        o = self.options
        info: dict[str, Any] = {"arch": self.arch, "pretrained": o.pretrained, "device": str(self.device),
                                "template": self.template, "params": sum(p.numel() for p in self.model.parameters())}
        if o.checkpoint is not None:
            info.update({"checkpoint": str(o.checkpoint), "checkpoint_sha256": sha256(o.checkpoint),
                         "trained": self.checkpoint_meta})
        elif not o.pretrained:
            info["weights"] = f"random init, seed {o.init_seed}"
        return info
