"""Uncertainty: 95% intervals on accuracies, and paired comparisons of two methods.

Phrases about one image share its candidates and its difficulty, so they are not independent
draws: the bootstrap here resamples whole images (a cluster bootstrap), within each split,
and takes the percentile interval. The same draws serve every group of a method (phrase
types, sizes...: each is the phrases of that group in the drawn images), and count weights
make each chunk of resamples one matrix product.
Wilson's score interval (scipy) treats phrases as independent: a fast check, narrower when
phrases of an image agree. McNemar's exact test is scipy's two-sided binomial test on the
discordant pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import zlib
from typing import Any, Hashable, Iterator, Mapping, Sequence

import numpy as np

LEVEL = 0.95
CHUNK = 250  # resamples drawn at once (memory: CHUNK x images weights)
MIN_IMAGES = 2  # a group of fewer images gets no interval (a bootstrap of one image has no spread to show)


def describe(cfg: Any) -> dict[str, Any]:
    """What run.json records about how its intervals were made."""
    if cfg.interval == "wilson":
        return {"interval": "wilson", "level": LEVEL, "unit": "phrase"}
    return {"interval": "cluster bootstrap over images, percentile", "level": LEVEL, "resamples": cfg.resamples,
            "seed": cfg.seed, "unit": "image"}


Cluster = tuple[str, int]  # (split, image_id): the unit resampled


def _weights(rng: np.random.Generator, m: int, resamples: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, [rows, m] counts)``: how often each of ``m`` clusters is drawn in each resample, in chunks."""
    for start in range(0, resamples, CHUNK):
        c = min(CHUNK, resamples - start)
        draws = rng.integers(0, m, size=(c, m)) + (np.arange(c) * m)[:, None]
        yield start, np.bincount(draws.ravel(), minlength=c * m).reshape(c, m).astype(np.float64)


def resampled_sums(clusters: Sequence[Cluster], values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``[resamples, rows]``: each row of ``values`` (``[rows, clusters]``) summed over a bootstrap draw of
    the clusters. Images are drawn within their split (stratified), each split from its own stream
    seeded by ``(seed, split)``, so a split's interval does not depend on which other splits the run holds."""
    out = np.zeros((resamples, values.shape[0]))
    strata: dict[str, list[int]] = {}
    for j, (split, _) in enumerate(clusters):
        strata.setdefault(split, []).append(j)
    for split, columns in sorted(strata.items()):
        rng = np.random.default_rng([seed, zlib.crc32(split.encode())])
        part = values[:, columns].T
        for start, w in _weights(rng, len(columns), resamples):
            out[start : start + len(w)] += w @ part
    return out


def _percentiles(values: np.ndarray) -> np.ndarray:
    """Lower and upper percentile bounds per column of ``[resamples, groups]`` (nan where undefined)."""
    tail = 100 * (1 - LEVEL) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanpercentile(values, [tail, 100 - tail], axis=0)


def accuracy_intervals(per_cluster: Mapping[Hashable, Mapping[Cluster, list[int]]], cfg: Any) -> dict[Hashable, list[float]]:
    """95% intervals, in percent, of each group's accuracy; ``per_cluster[group][(split, image)] = [phrases, hits]``."""
    if cfg.interval == "wilson":
        from scipy.stats import binomtest

        out = {}
        for key, images in per_cluster.items():
            n, k = sum(c[0] for c in images.values()), sum(c[1] for c in images.values())
            ci = binomtest(k, n).proportion_ci(LEVEL, method="wilson")
            out[key] = [round(float(100 * ci.low), 4), round(float(100 * ci.high), 4)]
        return out
    keys = list(per_cluster)
    clusters = sorted({c for images in per_cluster.values() for c in images})
    column = {c: j for j, c in enumerate(clusters)}
    values = np.zeros((2 * len(keys), len(clusters)))  # phrases of each group, then hits of each group
    for g, key in enumerate(keys):
        for c, (n, k) in per_cluster[key].items():
            values[g, column[c]], values[len(keys) + g, column[c]] = n, k
    sums = resampled_sums(clusters, values, cfg.resamples, cfg.seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        bounds = _percentiles(100 * sums[:, len(keys):] / sums[:, : len(keys)])
    return {key: [round(float(bounds[0, g]), 4), round(float(bounds[1, g]), 4)] if len(per_cluster[key]) >= MIN_IMAGES else None
            for g, key in enumerate(keys)}


@dataclass
class Comparison:
    """Two methods on the phrases both evaluated: A's accuracy minus B's, with a paired test."""

    n: int  # phrases both evaluated
    images: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # percentage points, A - B
    difference_ci95: list[float]  # paired cluster bootstrap over images
    only_a: int  # A right, B wrong (McNemar's b)
    only_b: int  # B right, A wrong (McNemar's c)
    mcnemar_p: float  # exact, two-sided
    resamples: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(a: Mapping[int, tuple[Cluster, bool]], b: Mapping[int, tuple[Cluster, bool]], resamples: int = 2000,
            seed: int = 0) -> Comparison:
    """Paired comparison on the sent_ids both ``a`` and ``b`` hold: ``{sent_id: ((split, image_id), hit)}``."""
    from scipy.stats import binomtest

    shared = sorted(a.keys() & b.keys())
    if not shared:
        raise ValueError("no phrase was evaluated by both")
    clusters = sorted({a[s][0] for s in shared})
    column = {c: j for j, c in enumerate(clusters)}
    per_cluster = np.zeros((3, len(clusters)))  # phrases, hits of A, hits of B
    only_a = only_b = 0
    for s in shared:
        (cluster, hit_a), hit_b = a[s], b[s][1]
        per_cluster[:, column[cluster]] += (1, hit_a, hit_b)
        only_a += hit_a and not hit_b
        only_b += hit_b and not hit_a
    n = int(per_cluster[0].sum())
    sums = resampled_sums(clusters, np.stack([per_cluster[0], per_cluster[1] - per_cluster[2]]), resamples, seed)
    lo, hi = _percentiles(100 * sums[:, 1:] / sums[:, :1])[:, 0]
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    acc_a, acc_b = 100 * per_cluster[1].sum() / n, 100 * per_cluster[2].sum() / n
    return Comparison(n, len(clusters), acc_a, acc_b, acc_a - acc_b, [round(float(lo), 4), round(float(hi), 4)],
                      only_a, only_b, float(p), resamples, seed)
