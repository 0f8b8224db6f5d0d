"""``torchvision_detector``: candidate boxes from torchvision's COCO detectors, computed once per image.

``fasterrcnn_resnet50_fpn_v2`` gives boxes, ``maskrcnn_resnet50_fpn_v2`` boxes with masks (each
:class:`refbench.Box` carrying its mask as compressed RLE, so mask prompters draw them); the other
Faster/Mask R-CNN builders of ``torchvision.models.detection`` run too. Weights are torchvision's own
(``weights: DEFAULT`` or a member of the model's weights enum, in the torch hub cache,
``$TORCH_HOME/hub/checkpoints``) or a local ``.pth`` state dict. The model's output per image is
cached on disk (:mod:`live_models.cache`) before ``score_threshold`` and ``max_count`` apply, so
changing those two reuses the cache; the model is loaded only when some image is not cached.

torchvision's detection models return ``boxes`` as absolute ``[x1, y1, x2, y2]`` pixels of the image
passed in, with ``labels`` indexing the weights' ``meta["categories"]`` (COCO category ids, 91
entries with N/A gaps) and ``masks`` as ``[N, 1, H, W]`` probabilities on the original image
(torchvision's detection reference: "the soft masks can be thresholded, generally with a value of 0.5").
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from refbench import Box, ImageItem, Options, Proposer, RefbenchError, load_image, with_mask

from .cache import Cache, default_folder, weights_sha256
from .hub import device_and_dtype

FAMILIES = ("fasterrcnn_", "maskrcnn_")  # the builders whose keyword arguments are the ones set here
DEFAULT_SCORE, DEFAULT_COUNT = 0.05, 100  # torchvision's box_score_thresh and box_detections_per_img


def known_models() -> list[str]:
    """torchvision's Faster/Mask R-CNN builders, by name."""
    from torchvision.models import detection, list_models

    return [n for n in list_models(module=detection) if n.startswith(FAMILIES)]


class DetectorOptions(Options):
    """Options of ``torchvision_detector``."""

    model: str = Field("fasterrcnn_resnet50_fpn_v2", description="a torchvision detection builder: fasterrcnn_resnet50_fpn_v2 "
                                                                  "(boxes) or maskrcnn_resnet50_fpn_v2 (boxes and masks), ...")
    weights: str = Field("DEFAULT", description="a member of the model's torchvision weights enum (DEFAULT, COCO_V1), read from "
                                                "the torch hub cache ($TORCH_HOME/hub/checkpoints), or a local .pth state dict")
    score_threshold: float = Field(0.05, ge=0, le=1, description="keep boxes scoring at least this")
    max_count: int | None = Field(None, ge=1, description="keep the highest-scoring N boxes per image (None: all)")
    mask_threshold: float = Field(0.5, gt=0, lt=1, description="mask models: a pixel is in the mask where its probability exceeds this")
    min_size: int | None = Field(None, ge=1, description="the model's resize: shorter side (None: torchvision's 800)")
    max_size: int | None = Field(None, ge=1, description="the model's resize: longer side at most (None: torchvision's 1333)")
    model_kwargs: dict[str, int | float | bool] = Field(
        default_factory=dict, description="more keyword arguments of the builder, e.g. rpn_post_nms_top_n_test: 300")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    download: bool = Field(True, description="fetch torchvision weights missing from the hub cache (never when HF_HUB_OFFLINE is set)")
    cache: Path | None = Field(None, description="cache folder (None: $REFBENCH_CACHE, else ~/.cache/refbench)")
    reuse: bool = Field(True, description="read cached images; false computes every image again and rewrites its entry")


def hub_file(model: str, member: str) -> tuple[Any, Path]:
    """The weights enum member ``member`` of ``model`` and where torch hub keeps its file."""
    import torch.hub
    from torchvision.models import get_model_weights

    enum = get_model_weights(model)
    try:
        weights = enum[member] if member != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise RefbenchError(f"weights {member!r} is neither a file nor a member of {enum.__name__}",
                            f"write one of {names}, or a .pth file path") from None
    return weights, Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def weights_file(o: DetectorOptions, fetch: bool = False) -> Path:
    """The weight file ``o`` names; a torchvision file missing from the hub cache is downloaded (with
    ``fetch``; without, only checked) unless ``download`` is off or ``HF_HUB_OFFLINE`` is set. One line
    naming the file and where it goes otherwise."""
    if o.weights.endswith((".pth", ".pt")) or "/" in o.weights or Path(o.weights).expanduser().is_file():
        path = Path(o.weights).expanduser()
        if not path.is_file():
            raise RefbenchError(f"weights file not found: {o.weights}", "point weights: at a .pth state dict, or write DEFAULT")
        return path
    weights, path = hub_file(o.model, o.weights)
    if path.is_file() or (not fetch and o.download and not _offline()):  # checked before a run: fetched when it starts
        return path
    if fetch and o.download and not _offline():
        from torch.hub import HASH_REGEX, download_url_to_file

        found = HASH_REGEX.search(path.name)  # torchvision's file names carry their sha256's first digits
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            download_url_to_file(weights.url, str(path), hash_prefix=found.group(1) if found else None, progress=False)
            return path
        except Exception as exc:  # no network, proxy, disk: all mean the same here
            why = f"could not be downloaded ({type(exc).__name__})"
    else:
        why = "is not in the torch hub cache" + (" (offline)" if o.download else " (download: false)")
    raise RefbenchError(f"torchvision weights {path.name} for {o.model} {why}",
                        f"download {weights.url} on a machine with internet and put it at {path} (the hub cache is "
                        "$TORCH_HOME/hub/checkpoints), or point weights: at a local .pth file")


class TorchvisionDetector(Proposer):
    """Boxes (and masks, for Mask R-CNN) from a torchvision COCO detector run on each image, cached on disk."""

    Options = DetectorOptions

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, DetectorOptions)
        known = known_models()
        if options.model not in known:
            close = difflib.get_close_matches(options.model, known, n=1)
            return [RefbenchError(f"unknown torchvision detector {options.model!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
                                  f"known ones: {', '.join(known)}")]
        try:
            weights_file(options)
            device_and_dtype(options.device, "fp32")
        except RefbenchError as exc:
            return [exc]
        return []

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        assert isinstance(o, DetectorOptions)
        self.path = weights_file(o, fetch=True)
        self.device, _ = device_and_dtype(o.device, "fp32")
        self.masks = o.model.startswith("maskrcnn_")
        folder = o.cache or default_folder()
        self.cache = Cache(folder, "torchvision_detector", self.key(weights_sha256(self.path, folder)), o.reuse)
        self.cache.open()
        self.model: Any = None  # loaded on the first image not in the cache
        self.categories: list[str] = []

    def key(self, weights_sha: str) -> dict[str, Any]:
        """What the cached output depends on: the model, its weights and the options that change its raw output."""
        import torchvision

        o = self.options
        return {"model": o.model, "weights_sha256": weights_sha, "torchvision": torchvision.__version__.split("+")[0],
                "builder_kwargs": self.builder_kwargs(), "mask_threshold": o.mask_threshold if self.masks else None,
                "device": self.device.type}

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the builder: the resize, the raw output's threshold and count (at least
        torchvision's, so ``score_threshold`` and ``max_count`` filter a cached superset), and ``model_kwargs``."""
        o = self.options
        kwargs: dict[str, Any] = {"box_score_thresh": min(o.score_threshold, DEFAULT_SCORE),
                                  "box_detections_per_img": max(o.max_count or 0, DEFAULT_COUNT)}
        if o.min_size is not None:
            kwargs["min_size"] = o.min_size
        if o.max_size is not None:
            kwargs["max_size"] = o.max_size
        return {**kwargs, **o.model_kwargs}

    def load(self) -> None:
        """Build the architecture and load the weights (a state dict, or torchvision's training checkpoint's ``model``)."""
        import torch
        from torchvision.models import get_model, get_model_weights

        o = self.options
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RefbenchError(f"weights {self.path} do not load as a torch state dict ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:120]})", "restore the file, or download it again") from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]  # torchvision's references/detection/train.py checkpoints
        head = state.get("roi_heads.box_predictor.cls_score.weight") if isinstance(state, dict) else None
        if head is None:
            raise RefbenchError(f"weights {self.path} are not a {o.model} state dict (no roi_heads.box_predictor)",
                                f"use weights saved from {o.model} (torch.save(model.state_dict(), path))")
        n = int(head.shape[0])
        try:
            model = get_model(o.model, weights=None, weights_backbone=None, num_classes=n, **self.builder_kwargs())
            model.load_state_dict(state)
        except (TypeError, RuntimeError) as exc:
            raise RefbenchError(f"weights {self.path} do not fit {o.model}: {str(exc).splitlines()[0][:160]}",
                                f"use weights saved from {o.model}, and only its builder's keyword arguments in model_kwargs") from None
        coco = get_model_weights(o.model).DEFAULT.meta["categories"]
        self.categories = list(coco) if n == len(coco) else [f"class {i}" for i in range(n)]
        self.transform = get_model_weights(o.model).DEFAULT.transforms()
        self.model = model.to(self.device).eval()

    def detect(self, item: ImageItem) -> tuple[list[Box], list[int]]:
        """The model's raw output on ``item``'s image: boxes (xywh, best first, masks on Mask R-CNN) and category ids."""
        import torch
        from pycocotools import mask as coco_mask

        if self.model is None:
            self.load()
        image = self.transform(load_image(item)).to(self.device)
        with torch.inference_mode():
            out = self.model([image])[0]
        xyxy = out["boxes"].double().cpu().numpy()
        scores, labels = out["scores"].double().cpu().numpy(), out["labels"].cpu().numpy()
        binary = None
        if self.masks:
            binary = np.asfortranarray((out["masks"][:, 0] > self.options.mask_threshold).permute(1, 2, 0).cpu().numpy().astype(np.uint8))
        boxes = []
        for i, ((x1, y1, x2, y2), s, c) in enumerate(zip(xyxy, scores, labels)):
            box = Box(float(x1), float(y1), float(x2 - x1), float(y2 - y1), float(s), self.categories[int(c)])
            if binary is not None:
                box = with_mask(box, coco_mask.encode(binary[:, :, i:i + 1])[0], item.height, item.width,
                                f"mask {i} of image {item.image_id}")
            boxes.append(box)
        return boxes, [int(c) for c in labels]

    def raw(self, item: ImageItem) -> list[Box]:
        """The model's output on ``item``, from the cache or computed (and cached)."""
        boxes = self.cache.get(item)
        if boxes is None:
            boxes, ids = self.detect(item)
            self.cache.put(item, boxes, category_ids=ids)
        return boxes

    def propose(self, item: ImageItem) -> list[Box]:
        o = self.options
        boxes = sorted((b for b in self.raw(item) if b.score >= o.score_threshold), key=lambda b: -b.score)
        return boxes[: o.max_count] if o.max_count is not None else boxes

    def report(self) -> str | None:
        return self.cache.report()

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"model": o.model, "weights": str(self.path), "score_threshold": o.score_threshold, "max_count": o.max_count,
                **self.cache.describe()}
