"""The training config of ``refbench train``: the recipe, validation and output, validated from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refbench import ComponentSpec, ProposerSpec, ProtocolConfig, Workers, config_digest, load_yaml



class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Recipe(_Strict):
    k: int = Field(4, ge=2, description="candidates per phrase: the truth + k-1 others")
    same_category: float = Field(0.0, ge=0, le=1, description=(
        "probability that the k-1 others are drawn from the truth's category first (hard negatives, "
        "as MAttNet samples same-type distractors); 0 = uniformly, as the original recipe"))
    oversample: dict[str, int] = Field(default_factory=dict, description=(
        "phrase type -> times each such phrase is drawn per epoch (a curriculum knob; default once)"))
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1, description="phrases per step")
    lr: float = Field(8e-6, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of all steps spent warming up linearly")
    grad_clip: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    group_by_image: bool = Field(True, description="steps hold whole images, so shared views are encoded once")
    freeze: list[str] = Field(default_factory=list, description="parameter-name prefixes kept fixed, e.g. token_embedding")
    workers: Workers = Field("auto", description="background processes rendering views; 0 = in the main process; auto = CPUs - 2, at most 8")
    threads: int | None = Field(None, ge=1, description="torch CPU threads")


class Validation(_Strict):
    dataset: ComponentSpec
    proposer: ProposerSpec
    protocol: ProtocolConfig = ProtocolConfig()
    batch_size: int = 256


class TrainConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    model: dict[str, Any] = Field(description="options of the 'clip' scorer: arch, pretrained, checkpoint, init_seed, ...")
    prompter: ComponentSpec = ComponentSpec(plugin="green_shade")
    data: ComponentSpec = Field(description="a dataset plugin block selecting the training split")
    validation: Validation
    recipe: Recipe = Recipe()
    output: Path

    def digest(self) -> str:
        """Hash of what determines the weights (not workers, threads or validation batch size)."""
        return config_digest(self, exclude={"recipe": {"workers", "threads"},
                                            "validation": {"batch_size": True, "proposer": {"invalid"}}})


def load_train_config(path: Path) -> TrainConfig:
    return load_yaml(path, TrainConfig, "benchmarks/train/synthref_rn.yaml")
