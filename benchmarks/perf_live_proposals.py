"""Proposals cache reuse: the same benchmark run twice, with live proposals computed, then read back.

The benchmark is SynthRef testA with ``mask_shade`` and the shipped synth-rn CLIP over
``sam_masks`` of ``torchvision_detector`` (Faster R-CNN v2, the real architecture with random
weights saved to a .pth, so it runs without downloads; a tiny SAM). Run 1 starts from an empty
cache folder: the detector and SAM run on every image. Run 2 (``--new``, same config) finds every
image cached and loads neither model. Prints each run's wall time (the whole ``refbench run``
command: start, proposals, scoring) and the cache lines the runs announce.

    .venv/bin/python benchmarks/perf_live_proposals.py [--data data/synthref] [--limit N] [--min-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFBENCH = str(Path(sys.executable).with_name("refbench"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="a SynthRef folder (default: generated in a temporary folder)")
    p.add_argument("--limit", type=int, default=None, help="only the first N testA images")
    p.add_argument("--min-size", type=int, default=128, help="the detector's resize (torchvision's default is 800)")
    args = p.parse_args()

    from live_models.tiny.detector import MODEL
    from live_models.tiny.detector import build as build_detector
    from live_models.tiny.sam import build as build_sam

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = args.data
        if data is None:
            data = tmp / "synthref"
            subprocess.run([REFBENCH, "synth", str(data)], check=True, capture_output=True)
        weights = build_detector(tmp / "detector") / f"{MODEL}.pth"
        sam = build_sam(tmp / "tiny-sam")
        boxes = {"plugin": "torchvision_detector", "weights": str(weights), "max_count": 10, "cache": str(tmp / "cache"),
                 "min_size": args.min_size, "max_size": max(args.min_size, 128)}
        proposer = {"plugin": "sam_masks", "boxes": boxes, "model": str(sam), "cache": str(tmp / "cache")}
        limit = f", limit: {args.limit}" if args.limit else ""
        config = tmp / "bench.yaml"
        config.write_text(f"""name: perf_live_proposals
dataset: {{plugin: refer, root: {data}, dataset: synthref, split_by: unc, splits: [testA], images: {data}/images}}
proposer: {json.dumps(proposer)}
runner: {{batch_size: 256, workers: auto{limit}}}
methods:
  - {{id: mask-shade, prompter: {{plugin: mask_shade, short_side: null}}, scorer: {{plugin: clip, checkpoint: {REPO}/checkpoints/synthref/synth-rn.safetensors}}}}
""")
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        for i in (1, 2):
            cmd = [REFBENCH, "run", str(config), "--results", str(tmp / "results"), "--quiet", "--new"]
            start = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - start
            if done.returncode:
                sys.exit(done.stderr)
            lines = [x for x in done.stderr.splitlines() if "cache:" in x]
            print(f"run {i}: {wall:.1f} s wall")
            for line in lines:
                print("  " + line.split("proposer: ", 1)[-1])


if __name__ == "__main__":
    main()
