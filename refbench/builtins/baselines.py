"""Non-learned scorers that anchor every leaderboard."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from ..boxes import IoUConvention, as_array, iou_matrix
from ..interfaces import Options, Scorer, ScoreRequest


class _BoxOnly(Scorer):
    uses_views = False


class RandomScorer(_BoxOnly):
    """Uniform random logits, seeded per image so a resumed run draws the same numbers."""

    class Options(Options):
        seed: int = Field(0, ge=0)

    def score(self, request: ScoreRequest) -> np.ndarray:
        rng = np.random.default_rng([self.options.seed, request.item.image_id])
        return rng.random((len(request.refs), len(request.boxes)))


class LargestScorer(_BoxOnly):
    """Always the largest candidate."""

    def score(self, request: ScoreRequest) -> np.ndarray:
        area = np.array([b.area for b in request.boxes], dtype=np.float64)
        return np.tile(area, (len(request.refs), 1))


class CenterScorer(_BoxOnly):
    """Always the candidate whose centre is nearest the image centre."""

    def score(self, request: ScoreRequest) -> np.ndarray:
        b = as_array(request.boxes)
        cx, cy = request.item.width / 2, request.item.height / 2
        dist = np.hypot(b[:, 0] + b[:, 2] / 2 - cx, b[:, 1] + b[:, 3] / 2 - cy)
        return np.tile(-dist, (len(request.refs), 1))


class OracleScorer(_BoxOnly):
    """Reads the ground truth and picks the best-overlapping candidate: the upper bound.

    Not a method; an anchor that equals the protocol's upper bound when ``iou_convention``
    matches the protocol's.
    """

    class Options(Options):
        iou_convention: IoUConvention = "refer"

    def score(self, request: ScoreRequest) -> np.ndarray:
        return iou_matrix(as_array([r.box for r in request.refs]), as_array(request.boxes), self.options.iou_convention)
