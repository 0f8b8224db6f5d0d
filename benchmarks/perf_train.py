"""Training throughput: `refbench train` phrases/s against a raw forward+backward+step loop.

The raw loop runs the same loss on batches rendered beforehand and held in memory, at
the same batch size: the ceiling for the data pipeline. Both step layouts are measured:
  phrase    one step = batch_size phrases x K views each (the original recipe's layout)
  image     one step = whole images, each distinct view encoded once (refbench's default)

With ``--ranks N`` the whole-image layout is also trained by N processes under torchrun (gloo on
the CPU, NCCL on GPUs), the same global batch, against the one-process figure:

    python benchmarks/perf_train.py --arch synth-rn
    python benchmarks/perf_train.py --arch synth-vit --ranks 2
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from refbench.plugins import registry
from refbench.synth import SynthSpec, generate

from clip_shaded.train import StepBatches, TrainConfig, plan_epoch, records_of, step_loss, train

REPO = Path(__file__).resolve().parent.parent


def config(root: Path, arch: str, out: Path, group: bool, batch: int, workers: int | str, threads: int | None) -> TrainConfig:
    base = yaml.safe_load((REPO / "benchmarks" / "train" / "synthref_rn.yaml").read_text())
    text = yaml.safe_dump(base).replace("data/synthref", str(root))
    data = yaml.safe_load(text)
    data["model"]["arch"] = arch
    data["output"] = str(out)
    data["recipe"].update(epochs=1, group_by_image=group, batch_size=batch, workers=workers, threads=threads)
    return TrainConfig.model_validate(data)


def raw_loop(cfg: TrainConfig, steps: int) -> float:
    """Phrases/s of loss + backward + AdamW step on the same batches, rendered beforehand."""
    reg = registry()
    scorer = reg.build("scorer", {"plugin": "clip", **cfg.model}, "model")
    prompter = reg.build("prompter", cfg.prompter.as_dict(), "prompter")
    items = list(reg.build("dataset", cfg.data.as_dict(), "data"))
    plan = plan_epoch(items, records_of(items), cfg.recipe, 0)[:steps]
    batches = [StepBatches(items, plan, scorer, prompter)[i] for i in range(len(plan))]
    for b in batches:  # held ready for the model: normalised floats
        b["views"] = scorer.model_input(b["views"])
    model = scorer.model.train()
    for n, p in model.named_parameters():
        p.requires_grad_(not any(n.startswith(f) for f in cfg.recipe.freeze))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.recipe.lr)
    step_loss(model, batches[0]).backward()  # warm-up
    opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for b in batches:
        loss = step_loss(model, b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return sum(len(b["targets"]) for b in batches) / (time.perf_counter() - start)


def ranked(cfg: TrainConfig, ranks: int, path: Path) -> dict:
    """The first epoch's metrics of ``cfg`` trained by ``ranks`` torchrun processes."""
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                    "-m", "refbench", "train", str(path), "-q", "--restart"], check=True, capture_output=True)
    return json.loads((cfg.output / "metrics.jsonl").read_text().splitlines()[0])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "perf")
    p.add_argument("--images", type=int, default=400)
    p.add_argument("--arch", nargs="+", default=["synth-rn"])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", default="auto", type=lambda v: v if v == "auto" else int(v),
                   help="recipe.workers: a number or auto (in-process on 2 CPUs)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ranks", type=int, default=1, help="also train the whole-image layout with this many torchrun ranks")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data / f"train{args.images}"
    generate(root, SynthSpec(seed=2, images={"train": args.images, "val": 20}))
    tmp = Path(tempfile.mkdtemp(prefix="refbench-perf-train-"))
    print(f"CPU threads {torch.get_num_threads()}, batch {args.batch_size} phrases, workers {args.workers}")
    for arch in args.arch:
        results = {}
        for group in (False, True):
            layout = "image" if group else "phrase"
            cfg = config(root, arch, tmp / f"{arch}-{layout}", group, args.batch_size, args.workers, args.threads)
            summary = train(cfg, quiet=True)
            epoch = summary["epochs"][0]
            steps = math.ceil(epoch["phrases"] / args.batch_size)
            raw = raw_loop(cfg, steps=min(steps, 40))
            results[layout] = epoch["phrases_per_s"]
            print(f"[{arch}] {layout} steps: refbench train {epoch['phrases_per_s']:.1f} phrases/s "
                  f"({epoch['views_per_s']:.0f} views/s); raw loop {raw:.1f} phrases/s: {100 * epoch['phrases_per_s'] / raw:.1f}% of raw")
        print(f"[{arch}] whole-image steps train {results['image'] / results['phrase']:.2f}x the phrases/s of phrase steps")
        if args.ranks > 1:
            cfg = config(root, arch, tmp / f"{arch}-ranks", True, args.batch_size, args.workers, args.threads)
            epoch = ranked(cfg, args.ranks, tmp / f"{arch}-ranks.yaml")
            print(f"[{arch}] {args.ranks} ranks (global batch {epoch['global_batch']} phrases/step): {epoch['phrases_per_s']:.1f} "
                  f"phrases/s, {epoch['phrases_per_s'] / results['image']:.2f}x one process; loss {epoch['loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
