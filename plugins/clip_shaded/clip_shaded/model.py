"""The open_clip model behind the clip scorer: checkpoints (safetensors with their architecture), building
a model from an architecture, a pretrained tag or a checkpoint, text encoding and device names."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import open_clip
import torch

from refbench import RefbenchError, atomic_path



MODEL_CONFIGS = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIGS)  # tiny architectures that train on a CPU

CHECKPOINT_FIX = "train one with `refbench train` or fix scorer.checkpoint"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def save_checkpoint(model: torch.nn.Module | dict[str, torch.Tensor], path: Path, arch: str,
                    extra: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> None:
    """safetensors weights (optionally cast, e.g. to fp16 for shipping); the architecture and
    training facts go in the header."""
    from safetensors.torch import save_file

    weights = model if isinstance(model, dict) else model.state_dict()
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
             for k, v in weights.items()}
    meta = {"arch": arch, "format": "refbench-clip-shaded/1", "info": json.dumps(extra or {}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata from ``.safetensors`` or a torch file loaded with ``weights_only``.

    Never unpickles arbitrary objects: a checkpoint is data, not code.
    """
    if not path.is_file():
        raise RefbenchError(f"checkpoint not found: {path}", CHECKPOINT_FIX)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}
            info = json.loads(meta.get("info", "{}"))
            return state, {"arch": meta.get("arch"), **info}
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RefbenchError(f"cannot load checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                            "use a .safetensors file or a torch state dict of tensors") from None
    if isinstance(blob, dict) and "state_dict" in blob:
        meta = {k: v for k, v in blob.items() if k in ("arch", "name", "epoch")}
        blob = blob["state_dict"]
    else:
        meta = {}
    if not isinstance(blob, dict) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise RefbenchError(f"{path} holds no state dict of tensors", "save the model's state_dict()")
    state = {k.removeprefix("module."): v for k, v in blob.items()}
    meta.setdefault("arch", meta.pop("name", None))
    return state, meta


@contextlib.contextmanager
def _quiet_open_clip() -> Any:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def build_model(arch: str | None, pretrained: str | None, checkpoint: Path | None, seed: int) -> tuple[torch.nn.Module, str, dict[str, Any]]:
    """The one place models are made: open_clip architecture + (pretrained tag | local weights | seeded init)."""
    meta: dict[str, Any] = {}
    state = None
    if checkpoint is not None:
        state, meta = load_checkpoint(checkpoint)
        if arch is None:
            arch = meta.get("arch")
        elif meta.get("arch") and meta["arch"] != arch:
            raise RefbenchError(f"checkpoint {checkpoint} is a {meta['arch']!r} model, not {arch!r}",
                                "drop scorer.arch or set it to the checkpoint's architecture")
    if arch is None:
        raise RefbenchError("scorer 'clip' needs an architecture", "set arch: (e.g. RN50x16, ViT-B-32, synth-rn)")
    if arch not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(arch, open_clip.list_models(), n=1)
        raise RefbenchError(f"unknown open_clip architecture {arch!r}", f"did you mean {close[0]!r}?" if close else "see open_clip.list_models()")
    torch.manual_seed(seed)
    try:
        with _quiet_open_clip():  # it warns that a model without a pretrained tag is randomly initialised
            model = open_clip.create_model(arch, pretrained=pretrained if checkpoint is None else None)
    except RuntimeError as exc:  # no network, unknown tag
        raise RefbenchError(f"cannot load open_clip weights {arch}/{pretrained} ({str(exc).splitlines()[0][:200]})",
                            "on a machine without internet, download them once elsewhere and pass scorer.checkpoint") from None
    if state is not None:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # same names, other shapes
            raise RefbenchError(f"checkpoint {checkpoint} does not fit {arch}: {str(exc).splitlines()[-1].strip()[:160]}",
                                "check scorer.arch matches the checkpoint") from None
        if missing or unexpected:
            raise RefbenchError(f"checkpoint {checkpoint} does not fit {arch}: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}",
                                "check scorer.arch matches the checkpoint")
    return model, arch, meta


def encode_text(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Normalised phrase features: ``model.encode_text(tokens, normalize=True)``, computed on the
    tokens up to the batch's last end-of-text.

    open_clip's CLIP text tower is causal and pools at end-of-text (the highest token id), so
    the padding after it cannot change a feature; it is most of the work (RefCOCO phrases fill
    about 10 of CLIP's 77 positions). This mirrors ``CLIP.encode_text`` on the shorter
    sequence; any other text tower gets ``model.encode_text`` itself.
    """
    if not (type(model) is open_clip.CLIP and model.text_pool_type == "argmax" and model.attn_mask is not None
            and getattr(model.transformer, "batch_first", False)):  # older open_clip runs it sequence-first
        return model.encode_text(tokens, normalize=True)
    ends = tokens.argmax(dim=-1)
    n = int(ends.max()) + 1
    if n == tokens.shape[1]:
        return model.encode_text(tokens, normalize=True)
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens[:, :n]).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    x = x[torch.arange(x.shape[0], device=x.device), ends]
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return torch.nn.functional.normalize(x, dim=-1)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RefbenchError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RefbenchError(f"device {name!r} asked for, but torch sees no GPU here", "use device: cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RefbenchError(f"device {name!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s) here",
                            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type not in ("cpu", "cuda"):
        raise RefbenchError(f"device {name!r} is not supported", "use auto, cpu, cuda or cuda:N")
    return device
