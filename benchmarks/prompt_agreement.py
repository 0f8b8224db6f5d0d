"""Views of every visual prompt, compared pixel by pixel between this checkout and another revision.

Each prompt of the zoo (green_shade in both styles, crop, blur, cpt_shade, red_circle,
grayscale_outside, and the mask prompts mask_shade, blur_reverse_mask and
grayscale_reverse_mask, given the detections' masks) is drawn on SynthRef testA images with their
detections through every path the prompter has (the full image, the image resized to 64 px,
windows around the boxes, and the batched tensor path; where the checkout has them, the windows
and resized views of all the images drawn together, as the runner's chunks draw them), in a
separate process per checkout, and the arrays are compared:

    git worktree add /tmp/before <revision>
    python benchmarks/prompt_agreement.py --before /tmp/before --data data/synthref

It prints, per prompt and path, the views compared and the share of identical views and pixels.
A prompt that draws only its reference views (crop, the mask prompts, green_shade's seed style)
has the ``full`` path alone.
Windows are compared with the other revision's full views cut to the same windows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
#: label: the prompter's block
PROMPTS = {name: {"plugin": name} for name in ["green_shade", "crop", "blur", "cpt_shade", "red_circle", "grayscale_outside",
                                               "mask_shade", "blur_reverse_mask", "grayscale_reverse_mask"]}
PROMPTS["green_shade_seed"] = {"plugin": "green_shade", "style": "seed"}

# run in each checkout's own process: draws every path and saves the arrays
DRAW = r"""
import json, sys
import numpy as np
from PIL import Image
from refbench import Box
from refbench.plugins import registry
root, out, images = sys.argv[1], sys.argv[2], int(sys.argv[3])
dets = json.load(open(f"{root}/dets/synthref_unc_masks.json"))  # the detections, each with its mask
refs = {}
for d in dets:
    rle = {"size": d["rle"]["size"], "counts": d["rle"]["counts"].encode()}
    refs.setdefault(d["image_id"], []).append(Box(*d["box"], mask=rle))
ids = sorted(refs)[:images]
arrays, many = {}, []
for name, spec in %(prompts)s.items():
    prompter = registry().build("prompter", spec, name)
    for image_id in ids:
        image = Image.open(f"{root}/images/synthref_{image_id:012d}.jpg").convert("RGB")
        boxes = refs[image_id]
        full = [np.asarray(v) for v in prompter.render(image, boxes)]  # crop's views are of the boxes' sizes
        for k, view in enumerate(full):
            arrays[f"{name}/full/{image_id}/{k}"] = view
        if prompter.renders_resized:
            small = np.asarray(image.resize((64, 64), Image.BICUBIC))
            s = 64 / image.width
            scaled = [Box(b.x * s, b.y * 64 / image.height, b.w * s, b.h * 64 / image.height) for b in boxes]
            arrays[f"{name}/resized/{image_id}"] = prompter.render_resized(small, scaled, s)
        windows = [(max(int(b.x) - 2, 0), max(int(b.y) - 2, 0), min(int(b.x + b.w) + 3, image.width),
                    min(int(b.y + b.h) + 3, image.height)) for b in boxes]
        windows = [w if w[0] < w[2] and w[1] < w[3] else (0, 0, 1, 1) for w in windows]
        for k, (x0, y0, x1, y1) in enumerate(windows):  # the full views cut: what windows must equal
            if full[k].shape[:2] == (image.height, image.width):
                arrays[f"{name}/cut/{image_id}/{k}"] = full[k][y0:y1, x0:x1]
        if prompter.draws_within_box is not None:
            for k, patch in enumerate(prompter.render_windows(image, boxes, windows)):
                arrays[f"{name}/windows/{image_id}/{k}"] = patch
        if prompter.renders_tensor:
            import torch
            t = torch.from_numpy(np.array(image)).permute(2, 0, 1)
            xywh = torch.tensor([b.xywh for b in boxes], dtype=torch.float64)
            arrays[f"{name}/tensor/{image_id}"] = prompter.render_tensor(t, xywh).permute(0, 2, 3, 1).numpy()
        resized = (small, s, scaled) if prompter.renders_resized else (None, None, None)
        many.append((image, boxes, windows, *resized))
    # the paths that draw several images on one canvas (as the runner's chunks do), where the checkout has them
    if prompter.draws_within_box is not None and hasattr(prompter, "render_windows_many"):
        drawn = prompter.render_windows_many([m[0] for m in many], [m[1] for m in many], [m[2] for m in many])
        for image_id, patches in zip(ids, drawn):
            for k, patch in enumerate(patches):
                arrays[f"{name}/windows-many/{image_id}/{k}"] = patch
    if prompter.renders_resized and hasattr(prompter, "render_resized_many"):
        by_scale = {}
        for image_id, m in zip(ids, many):
            by_scale.setdefault(m[4], []).append((image_id, m))
        for scale, group in by_scale.items():
            views = prompter.render_resized_many([m[3] for _, m in group], [m[5] for _, m in group], scale)
            start = 0
            for image_id, m in group:
                arrays[f"{name}/resized-many/{image_id}"] = views[start : start + len(m[1])]
                start += len(m[1])
    many.clear()
np.savez_compressed(out, **arrays)
"""


def draw(checkout: Path, data: Path, out: Path, images: int) -> None:
    paths = [checkout, *(checkout / "plugins" / p for p in ("clip_shaded", "visual_prompts"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    code = DRAW % {"prompts": repr(PROMPTS)}
    subprocess.run([sys.executable, "-c", code, str(data), str(out), str(images)], env=env, check=True, cwd=checkout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the revision to compare with")
    p.add_argument("--data", type=Path, default=REPO / "data" / "synthref")
    p.add_argument("--images", type=int, default=40)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before, after = Path(tmp) / "before.npz", Path(tmp) / "after.npz"
        draw(args.before.resolve(), args.data.resolve(), before, args.images)
        draw(REPO, args.data.resolve(), after, args.images)
        old, new = np.load(before), np.load(after)
        rows: dict[tuple[str, str], list[int]] = {}
        for key in sorted(k for k in new.files if "/cut/" not in k):
            name, path = key.split("/")[:2]
            row = rows.setdefault((name, path), [0, 0, 0, 0, 0])  # views, identical views, pixels, identical pixels, missing
            # windows against the other revision's full views, cut; views drawn several images at a time
            # against its views drawn image by image
            theirs = key.replace("/windows-many/", "/cut/").replace("/windows/", "/cut/").replace("/resized-many/", "/resized/")
            if theirs not in old.files:
                row[4] += 1
                continue
            a, b = old[theirs], new[key]
            a, b = (a[None], b[None]) if a.ndim == 3 else (a, b)
            same = (a == b).all(-1)
            row[0] += len(a)
            row[1] += int(same.reshape(len(a), -1).all(1).sum())
            row[2] += same.size
            row[3] += int(same.sum())
    print(f"{'prompt':<22} {'path':<12} {'views':>6} {'identical views':>16} {'identical pixels':>17} {'not there':>12}")
    for (name, path), (views, same_views, pixels, same_pixels, missing) in sorted(rows.items()):
        share = f"{100 * same_views / views:.2f}%" if views else "-"
        pix = f"{100 * same_pixels / pixels:.4f}%" if pixels else "-"
        print(f"{name:<22} {path:<12} {views:>6} {share:>16} {pix:>17} {missing:>12}")


if __name__ == "__main__":
    main()
