"""Ensembles: methods made from other methods' logits in the same run."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import Field, model_validator

from ..interfaces import Combinator, Options


class MeanLogits(Combinator):
    """(Weighted) mean of the members' logits, as the CLIP fine-tuning paper's ensemble."""

    class Options(Options):
        of: list[str] = Field(min_length=1, description="ids of the member methods")
        weights: list[float] | None = Field(None, description="one per member; default equal")

        @model_validator(mode="after")
        def _weights_match(self) -> "MeanLogits.Options":
            if self.weights is not None and len(self.weights) != len(self.of):
                raise ValueError(f"weights has {len(self.weights)} entries for {len(self.of)} members")
            if self.weights is not None and sum(self.weights) <= 0:
                raise ValueError("weights must sum to a positive number")
            return self

    @property
    def members(self) -> list[str]:
        return list(self.options.of)

    def combine(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        stacked = np.stack([np.asarray(x, dtype=np.float64) for x in logits])
        weights = np.asarray(self.options.weights or [1.0] * len(logits), dtype=np.float64)
        return np.tensordot(weights / weights.sum(), stacked, axes=1)


class SumLogits(MeanLogits):
    """(Weighted) sum of the members' logits, e.g. one model's logits under several visual prompts (ReCLIP)."""

    class Options(MeanLogits.Options):
        pass

    def combine(self, logits: Sequence[np.ndarray]) -> np.ndarray:
        stacked = np.stack([np.asarray(x, dtype=np.float64) for x in logits])
        weights = np.asarray(self.options.weights or [1.0] * len(logits), dtype=np.float64)
        return np.tensordot(weights, stacked, axes=1)
