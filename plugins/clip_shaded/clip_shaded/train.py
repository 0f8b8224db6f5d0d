"""``refbench train CONFIG``: the fine-tuning recipe of the green-shading CLIP method.

One record per phrase; its candidates are the image's annotated boxes. Every epoch each
phrase draws K of them (the truth and K-1 others, re-drawn each epoch, order shuffled);
the loss is cross-entropy over the K candidates' logits (logit_scale x cosine). AdamW,
linear warmup then linear decay. After each epoch the model is validated under the
benchmark protocol (detector proposals, all candidates); the best checkpoint is kept.

With ``group_by_image`` (default) a step holds whole images: each distinct view is
encoded once per step however many of the image's phrases drew it. The loss is the
same sum over the same (phrase, candidates) draws; only the encoder work shrinks.

Under ``torchrun`` (see :mod:`clip_shaded.train_dist`) each rank trains on its share of every
global step (whole images, :func:`shard_step`) with DistributedDataParallel, validates its share
of the validation images, and rank 0 alone writes the output folder.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from refbench import ImageItem, annotation_boxes, Method, RefbenchError, RunnerConfig, atomic_path, build_component, evaluate, package_versions, worker_count, write_atomic

from .scorer import ClipScorer, load_checkpoint, save_checkpoint
from .train_dist import SAME_FS, Ranks, merged_metrics
from .train_config import Recipe, TrainConfig, Validation, load_train_config  # noqa: F401 (the training config, re-exported)
from .train_steps import Record, Share, Step, StepBatches, lr_lambda, plan_epoch, records_of, shard_step, step_loss  # noqa: F401


def train(config: TrainConfig, console: Console | None = None, restart: bool = False, quiet: bool = False,
          until_epoch: int | None = None) -> dict[str, Any]:
    """Train (or continue) to the end of the schedule, or only up to ``until_epoch`` of it. Under
    torchrun, one rank's part of the distributed training (every rank returns the summary)."""
    console = console or Console(stderr=True)
    ranks = Ranks.detect()
    if ranks is None:
        return _train(config, console, restart, quiet, until_epoch, None)
    ranks.prepare(config.recipe.threads)
    device = str(config.model.get("device", "auto"))
    ranks.join(cuda=torch.cuda.is_available() and device != "cpu")
    try:
        ranks.agree(config.digest(), {"restart": restart, "until_epoch": until_epoch})  # before any file is touched
        return _train(config, console if ranks.main else Console(stderr=True, quiet=True), restart, quiet or not ranks.main,
                      until_epoch, ranks)
    finally:
        ranks.leave()


def _train(config: TrainConfig, console: Console, restart: bool, quiet: bool, until_epoch: int | None,
           ranks: Ranks | None) -> dict[str, Any]:
    recipe = config.recipe
    writes = ranks is None or ranks.main
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    if config.model.get("precision") == "fp16":
        raise RefbenchError("training in fp16 needs gradient scaling, which this recipe does not do", "use precision: bf16 or fp32")
    if config.model.get("views") == "device":
        raise RefbenchError("model.views: device draws views where the model runs; training draws them in its workers",
                            "leave model.views out of the training config (views: device is for evaluation)")
    model_spec = {"plugin": "clip", **config.model}
    if ranks is not None and str(model_spec.get("device", "")).startswith("cuda:"):
        model_spec["device"] = "cuda"  # each rank its own GPU (LOCAL_RANK), not the one the config names
    scorer = build_component("scorer", model_spec, "model")
    prompter = build_component("prompter", config.prompter.as_dict(), "prompter")
    scorer.use_prompter(prompter)
    items = list(build_component("dataset", config.data.as_dict(), "data"))
    records = records_of(items)
    if not records:
        raise RefbenchError("no trainable phrase (each needs an image with 2+ annotated boxes)", "check data.splits")
    val_runner = RunnerConfig(batch_size=config.validation.batch_size, workers=recipe.workers,
                              scoring="main")  # the live model stays in this process
    val_items = list(build_component("dataset", config.validation.dataset.as_dict(), "validation.dataset"))
    val_proposer = build_component("proposer", config.validation.proposer.as_dict(), "validation.proposer")
    if prompter.needs_masks:  # training draws the annotations' masks, validation the proposer's: both checked now
        items = _with_masks(items, config.prompter.plugin)
        _validation_masks(val_items, val_proposer, config.prompter.plugin)
    method = Method(config.name, scorer=scorer, prompter=prompter)

    model = scorer.model
    device = scorer.device
    plans = [plan_epoch(items, records, recipe, e) for e in range(recipe.epochs)]
    total = sum(len(p) for p in plans)
    decay, no_decay = [], []
    frozen = [n for n, p in model.named_parameters() if any(n.startswith(f) for f in recipe.freeze)]
    if recipe.freeze and not frozen:
        raise RefbenchError(f"recipe.freeze {recipe.freeze} matches no parameter", "use names from model.named_parameters()")
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "positional_embedding" in name else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=recipe.betas, eps=recipe.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total, int(recipe.warmup * total)))

    out = config.output
    last, metrics_path = out / "last.pt", out / "metrics.jsonl"
    state = {"epoch": 0, "best": -1.0, "best_epoch": None, "history": []}
    if ranks is None:
        out.mkdir(parents=True, exist_ok=True)
        blob = _read_last(last, out, config) if last.exists() and not restart else None
    else:  # rank 0 decides whether to resume; every rank then reads last.pt itself (a shared filesystem)
        blob, problem = None, None
        if ranks.main:
            try:
                out.mkdir(parents=True, exist_ok=True)
                blob = _read_last(last, out, config) if last.exists() and not restart else None
            except OSError as exc:
                problem = RefbenchError(f"cannot create the output folder {out}: {exc.strerror or exc}", "pick a writable output folder")
            except RefbenchError as exc:
                problem = exc
        if ranks.settle(problem, blob is not None) and not ranks.main:
            try:
                if not last.is_file():
                    raise RefbenchError(f"rank {ranks.rank} cannot see {last}, which rank 0 resumes from", SAME_FS)
                blob = _read_last(last, out, config)
            except RefbenchError as exc:
                problem = exc
        ranks.settle(problem)
    if blob is not None:
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
        scheduler.load_state_dict(blob["scheduler"])
        state = json.loads(blob["state"])
        console.print(f"[yellow]resuming {config.name} after epoch {state['epoch']}")
        best_path = out / "best.safetensors"
        if writes and state["best_epoch"] == state["epoch"] and _epoch_of(best_path) != state["epoch"]:
            _save_best(model, best_path, scorer, config, state["history"][-1])  # the crash came between the two writes
    del blob
    record: dict[str, Any] = {"config": config.model_dump(mode="json"), "digest": config.digest(),
                              "versions": package_versions(["refbench-clip-shaded"])}
    ddp = None
    if ranks is not None:
        record["distributed"] = {"world_size": ranks.size, "backend": ranks.backend, "global_batch": recipe.batch_size,
                                 "sharding": "each global step's images dealt out to the ranks"}
        ddp = ranks.wrap(model, step_loss, device)
    if writes:
        write_atomic(out / "config.json", json.dumps(record, indent=1))

    start_all = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.3f}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=quiet) as bar:
        for epoch in range(state["epoch"], min(recipe.epochs, until_epoch or recipe.epochs)):
            steps = plans[epoch]
            shares = None if ranks is None else [shard_step(s, ranks.rank, ranks.size) for s in steps]
            task = bar.add_task(f"{config.name} epoch {epoch + 1}/{recipe.epochs}", total=len(steps), loss=float("nan"))
            workers = worker_count(recipe.workers)
            loader = torch.utils.data.DataLoader(
                StepBatches(items, steps if shares is None else [s.step for s in shares], scorer, prompter),
                batch_size=None, shuffle=False, num_workers=workers,
                prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda",
                worker_init_fn=_one_thread if workers else None)
            model.train()
            t0, seen, views, losses = time.perf_counter(), 0, 0, []
            for index, batch in enumerate(loader):
                if "error" in batch:
                    raise batch["error"]
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                batch["views"] = scorer.model_input(batch["views"])
                with scorer.autocast():
                    loss = step_loss(model, batch) if ddp is None else ddp(batch, shares[index].weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                scheduler.step()
                with torch.no_grad():  # CLIP's clamp: logit scale at most 100
                    model.logit_scale.clamp_(0, math.log(100))
                    losses.append(loss.item() if ranks is None else ranks.step_loss(loss))
                if shares is None or not shares[index].whole or ranks.main:
                    seen += len(batch["targets"])
                    views += len(batch["views"])
                bar.update(task, advance=1, loss=float(np.mean(losses[-20:])))
            train_s = time.perf_counter() - t0
            model.eval()
            scorer.weights_changed()
            t1 = time.perf_counter()
            if ranks is None:
                val = evaluate(val_items, val_proposer, [method], config.validation.protocol, val_runner,
                               config.validation.proposer.invalid)[config.name]
            else:  # each rank its share of the images with the live model; the counts merged
                shard = ranks.shard(val_items)
                part = evaluate(shard, val_proposer, [method], config.validation.protocol, val_runner,
                                config.validation.proposer.invalid)[config.name] if shard else None
                parts = ranks.gather({"val": part, "phrases": seen, "views": views, "train_s": train_s})
                val = merged_metrics([p["val"] for p in parts])
                seen, views = sum(p["phrases"] for p in parts), sum(p["views"] for p in parts)
                train_s = max(p["train_s"] for p in parts)
            entry = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "phrases": seen, "views": views,
                     "phrases_per_s": round(seen / train_s, 1), "views_per_s": round(views / train_s, 1),
                     "train_s": round(train_s, 1), "val_s": round(time.perf_counter() - t1, 1),
                     "val_accuracy": val["accuracy"], "val_upper_bound": val["upper_bound"],
                     "val_phrase_types": {t: round(v["accuracy"], 2) for t, v in val["phrase_types"].items()},
                     "lr": scheduler.get_last_lr()[0]}
            if ranks is not None:
                entry.update(world_size=ranks.size, global_batch=round(seen / len(steps), 1))  # phrases per optimiser step
            state["history"].append(entry)
            console.print(f"epoch {epoch + 1}: loss {entry['loss']:.4f}, val {val['accuracy']:.2f}% "
                          f"(upper bound {val['upper_bound']:.2f}), {entry['phrases_per_s']} phrases/s")
            improved = val["accuracy"] > state["best"]
            if improved:
                state.update(best=val["accuracy"], best_epoch=epoch + 1)
            state["epoch"] = epoch + 1
            if writes:
                # last.pt first: it alone decides where a resumed run starts (and can rewrite best)
                with atomic_path(last) as tmp:
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                "state": json.dumps(state), "digest": config.digest()}, tmp)
                write_atomic(metrics_path, "".join(json.dumps(e) + "\n" for e in state["history"]))
                if improved:
                    _save_best(model, out / "best.safetensors", scorer, config, entry)
            if ranks is not None:
                ranks.barrier()  # the epoch is on disk before any rank goes on
    summary = {"name": config.name, "best_val_accuracy": state["best"], "best_epoch": state["best_epoch"],
               "epochs": state["history"], "wall_s_this_session": round(time.perf_counter() - start_all, 1),
               "checkpoint": str(out / "best.safetensors")}
    if ranks is not None:
        summary["world_size"] = ranks.size
    if writes:
        write_atomic(out / "train.json", json.dumps(summary, indent=1))
    return summary


def _read_last(last: Path, out: Path, config: TrainConfig) -> dict[str, Any]:
    """``last.pt``, checked: readable, and written by this config."""
    try:
        blob = torch.load(last, map_location="cpu", weights_only=True)
        digest = blob.get("digest")
    except Exception as exc:
        raise RefbenchError(f"{last} is corrupt ({type(exc).__name__})", "pass --restart to train from the start") from None
    if digest != config.digest():
        raise RefbenchError(f"{out} holds a training run of another config",
                            "pick another output folder, or pass --restart to start over there")
    return blob


def _with_masks(items: list[ImageItem], name: str) -> list[ImageItem]:
    """The items with every annotation's box carrying its segmentation as a mask (a prompter that
    draws masks draws each candidate's); converted and checked once, before training starts."""
    try:
        return [replace(item, annotations=tuple(replace(a, box=b) for a, b in zip(item.annotations, annotation_boxes(item))))
                for item in items]
    except RefbenchError as exc:
        raise RefbenchError(f"prompter {name} draws candidates' masks: {exc.problem}", exc.fix) from None


def _validation_masks(items: list[ImageItem], proposer: Any, name: str) -> None:
    """Validation draws the proposer's masks: one candidate without one stops training before it starts,
    not after the first epoch."""
    for item in items:
        for i, box in enumerate(proposer.propose(item)):
            if box.mask is None:
                raise RefbenchError(f"prompter {name} draws candidates' masks, but validation image {item.image_id} box {i} has none",
                                    "give validation.proposer masks: {plugin: gt, masks: true} or {plugin: detections, masks: FILE}")


def _save_best(model: torch.nn.Module, path: Path, scorer: ClipScorer, config: TrainConfig, entry: dict[str, Any]) -> None:
    save_checkpoint(model, path, scorer.arch, {
        "train_config": config.model_dump(mode="json"), "epoch": entry["epoch"], "val_accuracy": entry["val_accuracy"],
        "val_phrase_types": entry["val_phrase_types"], "initialised_from": scorer.checkpoint_meta or None})


def _epoch_of(path: Path) -> int | None:
    try:
        return load_checkpoint(path)[1].get("epoch")
    except RefbenchError:
        return None


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # OpenMP's thread pool does not survive a fork
