"""Turn one method's chosen boxes from a completed refbench run into a predictions file, as a
VLM would answer: raw text holding ``[x1, y1, x2, y2]`` on a 0-1000 grid of the image.

    python examples/predictions/convert_run.py results/<run_id> clip-rn data/synthref/synthref/instances.json OUT.jsonl

``benchmarks/synthref_testA_predictions.yaml`` reads the shipped output back with the
``predictions`` grounder (``input: text, box_format: xyxy, scale: 0-1000``) and reproduces the
run's accuracy for that method exactly. Coordinates keep three decimals on the grid (well under
a thousandth of a pixel on SynthRef's images), so no IoU moves across the threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def convert(journal: Path, method: str, sizes: dict[int, tuple[int, int]]) -> list[str]:
    """One JSON line per phrase of ``method``: its chosen box as 0-1000 xyxy text."""
    lines = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["method"] != method:
            continue
        answer = "I cannot find it."
        if r["box"]:
            w, h = sizes[r["image_id"]]
            x, y, bw, bh = r["box"]
            grid = [1000 * x / w, 1000 * y / h, 1000 * (x + bw) / w, 1000 * (y + bh) / h]
            answer = "The region is [" + ", ".join(f"{v:.3f}" for v in grid) + "]."
        lines.append(json.dumps({"sent_id": r["sent_id"], "text": answer}))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("method")
    p.add_argument("instances", type=Path, help="the data set's instances.json (image sizes)")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    images = json.loads(args.instances.read_text(encoding="utf-8"))["images"]
    sizes = {int(i["id"]): (int(i["width"]), int(i["height"])) for i in images}
    lines = convert(args.run / "predictions.jsonl", args.method, sizes)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} answers written to {args.out}")


if __name__ == "__main__":
    main()
