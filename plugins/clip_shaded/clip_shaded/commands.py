"""``refbench train`` and ``refbench export-checkpoint``: this plugin's commands.

Adding them runs on every start of the CLI, so this module imports nothing heavy; the
handlers import the training code when they run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="fine-tune CLIP with the green-shading recipe (clip_shaded plugin); "
                                            "several processes: torchrun --nproc-per-node N -m refbench train CONFIG")
    p.add_argument("config", type=Path)
    p.add_argument("--restart", action="store_true", help="ignore a previous checkpoint in the output folder")
    p.add_argument("--until-epoch", type=int, metavar="N", help="stop after epoch N of the schedule (rerun without it to go on)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=_cmd_train)
    e = subparsers.add_parser("export-checkpoint", help="copy a trained checkpoint for shipping, e.g. as fp16 (clip_shaded plugin)")
    e.add_argument("source", type=Path)
    e.add_argument("target", type=Path)
    e.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16")
    e.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from refbench import RefbenchError

    from .scorer import load_checkpoint, save_checkpoint

    state, meta = load_checkpoint(args.source)
    arch = meta.pop("arch", None)
    if arch is None:
        raise RefbenchError(f"{args.source} does not record its architecture", "export a checkpoint written by refbench train")
    meta["exported_from"] = {"path": str(args.source), "dtype": args.dtype}
    save_checkpoint(state, args.target, arch, meta, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype])
    Console().print(f"wrote {args.target} ({args.target.stat().st_size / 2**20:.1f} MiB, {args.dtype})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .train import load_train_config, train

    summary = train(load_train_config(args.config), restart=args.restart, quiet=args.quiet, until_epoch=args.until_epoch)
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    Console().print(f"best validation accuracy {summary['best_val_accuracy']:.2f}% (epoch {summary['best_epoch']}); "
                    f"checkpoint {summary['checkpoint']}")
    return 0
