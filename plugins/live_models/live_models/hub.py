"""Where a model's weights come from, and how it is loaded: one place for every live model.

``model:`` names a local folder (one that ``save_pretrained`` wrote) or a Hugging Face model id,
which is looked up in the local Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``). With
``HF_HUB_OFFLINE=1`` nothing is downloaded; without it, a missing model is fetched as
transformers does. Every problem is one line naming the model and how to get it.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field

from refbench import Options, RefbenchError

Precision = Literal["auto", "fp32", "bf16", "fp16"]
_HASHED_BYTES = 1 << 20  # a weight file is fingerprinted by its size and its first and last MiB


class ModelOptions(Options):
    """Options every transformers-backed component shares."""

    model: str = Field(description="a local folder written by save_pretrained, or a Hugging Face model id in the local cache")
    revision: str | None = Field(None, description="the Hub revision (branch, tag or commit) of a model id")
    device: str = Field("auto", description="auto (cuda when available, else cpu), cpu, cuda, cuda:1 ...")
    precision: Precision = Field("auto", description="auto: bf16 on a GPU that has it, else fp32")
    batch_size: int = Field(8, ge=1, description="phrases (with their images) per forward pass")
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="transformers' attention implementation (None: its default)")


def resolve(model: str, revision: str | None = None) -> Path:
    """The folder holding ``model``'s config and weights: the local folder itself, or the model id's
    snapshot in the Hugging Face cache (downloaded first unless ``HF_HUB_OFFLINE`` is set)."""
    folder = Path(model).expanduser()
    if folder.is_dir() or model.startswith((".", "/", "~")):
        if not folder.is_dir():
            raise RefbenchError(f"model folder not found: {model}", "point model: at a folder that save_pretrained wrote")
        if not (folder / "config.json").is_file():
            raise RefbenchError(f"model folder {model} has no config.json",
                                "point model: at the folder save_pretrained wrote (it holds config.json and the weights)")
        return folder
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        path = Path(snapshot_download(model, revision=revision, local_files_only=constants.HF_HUB_OFFLINE))
    except HFValidationError:
        raise RefbenchError(f"model {model!r} is neither a folder nor a Hugging Face model id",
                            "write a folder path (./models/x) or an id such as IDEA-Research/grounding-dino-tiny") from None
    except Exception as exc:  # not in the cache, offline, no network, gated: all mean the same here
        where = constants.HF_HUB_CACHE
        raise RefbenchError(f"model {model} is not in the Hugging Face cache ({where}) and could not be fetched "
                            f"({type(exc).__name__})",
                            f"on a machine with internet run `hf download {model}` and copy {where} here, "
                            "or point model: at a local folder") from None
    if not (path / "config.json").is_file():
        raise RefbenchError(f"model {model} in the cache has no config.json", f"download it again: `hf download {model}`")
    return path


def config_of(folder: Path) -> dict[str, Any]:
    """The model's config.json."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RefbenchError(f"{folder / 'config.json'} is not JSON ({exc})", "restore the model folder") from None


def check_family(folder: Path, model: str, model_types: tuple[str, ...], plugin: str) -> None:
    """Refuse a model whose config is not one of ``model_types`` (the family ``plugin`` runs)."""
    config = config_of(folder)
    found = config.get("model_type")
    if found not in model_types:
        arch = ", ".join(config.get("architectures") or []) or "no architectures listed"
        raise RefbenchError(f"model {model} is a {found} ({arch}), but plugin {plugin} runs {' or '.join(model_types)} models",
                            "use the plugin of this model's family (refbench plugins lists them), or another model")


def device_and_dtype(device: str, precision: Precision) -> tuple[Any, Any]:
    """The torch device and dtype to run on; one line when this machine cannot run them."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise RefbenchError(f"device {device!r} is not a torch device", "write auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RefbenchError(f"device {device} asked for, but this machine has no CUDA GPU", "set device: cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RefbenchError(f"device {device} asked for, but this machine has {torch.cuda.device_count()} GPU(s)",
                            "pick an index below that, or device: auto")
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and dev.type == "cpu":
        raise RefbenchError("precision fp16 on the CPU: most CPU kernels lack half precision", "use precision: fp32 or bf16")
    if precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RefbenchError(f"precision bf16 on {torch.cuda.get_device_name(dev)}, which has no bf16", "use precision: fp16 or fp32")
    return dev, {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextmanager
def quiet_progress() -> Iterator[None]:
    """transformers' own progress bars (e.g. "Loading weights", once per model) off inside:
    the run's progress is refbench's bar."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            logging.enable_progress_bar()


def load(cls: Any, folder: Path, model: str, device: Any, dtype: Any, attn_implementation: str | None = None) -> Any:
    """``cls.from_pretrained`` on ``folder`` (no remote code), moved to ``device``, in eval mode; a
    folder that does not load is one error naming ``model`` (the id or folder the config gave)."""
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with quiet_progress():
            loaded = cls.from_pretrained(folder, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"model {model} could not be loaded as {cls.__name__}: {str(exc).splitlines()[0][:200]}",
                            "check the folder holds this family's weights (save_pretrained output), or download it again") from None
    return loaded.to(device).eval()


def load_processor(cls: Any, folder: Path, model: str, **options: Any) -> Any:
    """``cls.from_pretrained`` on ``folder`` for a processor (e.g. ``AutoProcessor``); a folder without
    its files is one error naming the model and the fix."""
    try:
        return cls.from_pretrained(folder, local_files_only=True, **options)
    except (OSError, ValueError) as exc:
        raise RefbenchError(f"model {model} has no usable {cls.__name__} files: {str(exc).splitlines()[0][:160]}",
                            "save the processor beside the model (processor.save_pretrained(folder)), or download it again") from None


def fingerprint(folder: Path) -> dict[str, Any]:
    """What identifies the weights in run.json (and tells a resumed run that they changed): the
    config's sha256 and each weight file's size with the sha256 of its first and last MiB; for a
    cache snapshot, its commit too. Reading every byte of a 15 GB model at each start would cost
    a minute; these parts change whenever the weights do in practice."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file())
    out: dict[str, Any] = {"config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest(), "weights": {}}
    for p in files:
        size = p.stat().st_size
        h = hashlib.sha256()
        with open(p, "rb") as f:
            h.update(f.read(_HASHED_BYTES))
            if size > 2 * _HASHED_BYTES:
                f.seek(size - _HASHED_BYTES)
            h.update(f.read(_HASHED_BYTES))
        out["weights"][p.name] = {"bytes": size, "sha256_ends": h.hexdigest()}
    if folder.parent.name == "snapshots":
        out["snapshot"] = folder.name
    return out
