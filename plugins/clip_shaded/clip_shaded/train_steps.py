"""One epoch of ``refbench train``, planned: records per phrase, K candidates drawn per record, steps of
whole images, their share per torchrun rank, the batches and the loss, and the learning-rate schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from refbench import ImageItem, RefbenchError, load_image

from .scorer import ClipScorer
from .train_config import Recipe


# ---------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Record:
    item: int  # index into items
    ref: int  # index into items[item].refs
    target: int  # index of the truth among the image's annotations


def records_of(items: list[ImageItem]) -> list[Record]:
    out = []
    for i, item in enumerate(items):
        ann_index = {a.id: j for j, a in enumerate(item.annotations)}
        if len(ann_index) < 2:
            continue  # nothing to choose between
        for r, ref in enumerate(item.refs):
            if ref.ann_id in ann_index:
                out.append(Record(i, r, ann_index[ref.ann_id]))
    return out


@dataclass(frozen=True)
class Step:
    """One optimiser step: phrases with their drawn candidates (annotation indices; truth at ``targets``)."""

    records: tuple[Record, ...]
    candidates: tuple[tuple[int, ...], ...]
    targets: tuple[int, ...]


def plan_epoch(items: list[ImageItem], records: list[Record], recipe: Recipe, epoch: int) -> list[Step]:
    """Deterministic from (seed, epoch): which candidates every phrase sees, and the step order."""
    rng = np.random.default_rng([recipe.seed, epoch])
    draws = []
    expanded = [rec for rec in records
                for _ in range(recipe.oversample.get(items[rec.item].refs[rec.ref].phrase_type, 1))]
    for rec in expanded:
        anns = items[rec.item].annotations
        others = [j for j in range(len(anns)) if j != rec.target]
        order = list(rng.permutation(others))
        if recipe.same_category and rng.random() < recipe.same_category:
            category = anns[rec.target].category
            order.sort(key=lambda j: anns[j].category != category)  # stable: same category first, shuffled
        picked = order[: recipe.k - 1]
        cands = [rec.target, *picked]
        rng.shuffle(cands)
        draws.append((rec, tuple(int(c) for c in cands), int(cands.index(rec.target))))
    if recipe.group_by_image:
        by_image: dict[int, list] = {}
        for d in draws:
            by_image.setdefault(d[0].item, []).append(d)
        groups = [by_image[i] for i in rng.permutation(sorted(by_image))]
        steps, current = [], []
        for group in groups:
            current.extend(group)
            if len(current) >= recipe.batch_size:
                steps.append(current)
                current = []
        if current:
            steps.append(current)
    else:
        order = rng.permutation(len(draws))
        steps = [[draws[i] for i in order[s : s + recipe.batch_size]] for s in range(0, len(order), recipe.batch_size)]
    return [Step(tuple(d[0] for d in s), tuple(d[1] for d in s), tuple(d[2] for d in s)) for s in steps]


class Share(NamedTuple):
    """A rank's part of a global step, and the weight of its mean loss."""

    step: Step
    weight: float  # (its phrases / the step's) x world, so DDP's average is the step's gradient
    whole: bool  # the step is too small to split: every rank does all of it (counted once)


def shard_step(step: Step, rank: int, world: int) -> Share:
    """Rank ``rank``'s part of a global step under ``world`` ranks: whole images, so each view is
    rendered and encoded on one rank only (the union of the shards' views is the step's, as BatchNorm
    statistics over the ranks need), dealt largest first to the rank with the least work so far
    (views, then phrases): the same on every rank, every rank gets an image, phrases keep the step's
    order. A step with fewer images than ranks is done whole by every rank, at weight 1."""
    by_image: dict[int, list[int]] = {}
    for i, rec in enumerate(step.records):
        by_image.setdefault(rec.item, []).append(i)
    if len(by_image) < world:
        return Share(step, 1.0, True)
    work = {item: (len({c for i in rows for c in step.candidates[i]}), len(rows)) for item, rows in by_image.items()}
    load = [(0, 0)] * world
    mine: list[int] = []
    for item in sorted(by_image, key=lambda it: (-work[it][0], -work[it][1], it)):
        r = min(range(world), key=lambda k: (load[k], k))
        load[r] = (load[r][0] + work[item][0], load[r][1] + work[item][1])
        if r == rank:
            mine += by_image[item]
    mine.sort()
    part = Step(tuple(step.records[i] for i in mine), tuple(step.candidates[i] for i in mine),
                tuple(step.targets[i] for i in mine))
    return Share(part, len(mine) * world / len(step.records), False)


class StepBatches(torch.utils.data.Dataset):
    """Renders one step's views (each distinct (image, box) once) and tokenises its phrases."""

    def __init__(self, items: list[ImageItem], steps: list[Step], scorer: ClipScorer, prompter: Any) -> None:
        self.items, self.steps, self.scorer, self.prompter = items, steps, scorer, prompter

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            return self._batch(self.steps[index])
        except RefbenchError as exc:  # travels to the main process as a value, message intact
            return {"error": exc}

    def _batch(self, step: Step) -> dict[str, torch.Tensor]:
        needed: dict[int, dict[int, int]] = {}  # item -> annotation -> row in the view batch
        for rec, cands in zip(step.records, step.candidates):
            needed.setdefault(rec.item, {}).update({c: 0 for c in cands})
        views, row = [], 0
        for item_index, anns in needed.items():
            item = self.items[item_index]
            order = sorted(anns)
            for a in order:
                anns[a] = row
                row += 1
            views.append(self.scorer.prepare(load_image(item), [item.annotations[a].box for a in order], self.prompter))
        k = max(len(c) for c in step.candidates)  # images with fewer boxes than K are padded with -1
        rows = torch.full((len(step.records), k), -1, dtype=torch.int64)
        for i, (rec, cands) in enumerate(zip(step.records, step.candidates)):
            rows[i, : len(cands)] = torch.tensor([needed[rec.item][c] for c in cands])
        texts = [self.items[rec.item].refs[rec.ref].text for rec in step.records]
        return {"views": torch.cat(views), "tokens": self.scorer.tokenize(texts), "rows": rows,
                "targets": torch.tensor(step.targets)}


def step_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy over each phrase's K candidates: logit_scale x cos(phrase, view)."""
    view_feats = model.encode_image(batch["views"], normalize=True)
    text_feats = model.encode_text(batch["tokens"], normalize=True)
    sims = model.logit_scale.exp() * text_feats @ view_feats.T  # [phrases, distinct views]
    rows = batch["rows"]
    logits = sims.gather(1, rows.clamp(min=0)).masked_fill(rows < 0, float("-inf"))  # [phrases, K]
    return torch.nn.functional.cross_entropy(logits, batch["targets"])


def lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# ---------------------------------------------------------------- the loop
