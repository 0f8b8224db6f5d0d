"""Why refbench batches Kosmos-2's prompts only by length: what padding does to its answers.

On the data perf_grounders.py uses (the first --images images of a SynthRef testA, seed 1) and its
tiny Kosmos-2 (random weights, built by live_models.tiny), prints:
  - how many answers (decoded texts, and the first box each names) a plain loop's left-padded
    batches of --batch change against batch size 1 (transformers numbers the generated tokens from
    the padded cache's length), and, as the control, how many batches of --batch prompts of one
    length each change (refbench's batches: no padding);
  - how many token lengths the phrases' prompts fall into, and how many batches of at most
    --batch refbench needs for them with runner chunks of --chunk phrases (prompts of one length
    share a batch; ``workers: 0``, as perf_grounders.py runs), against the fewest that would hold them.

    python benchmarks/kosmos2_padding.py [--images 40] [--batch 8] [--chunk 64]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoProcessor, Kosmos2ForConditionalGeneration

from refbench.synth import SynthSpec, generate

from live_models.tiny.__main__ import build as build_tiny

from perf_grounders import decoded, pairs_of

PROMPT = "<grounding><phrase> {phrase}</phrase>"
BOX = re.compile(r"<patch_index_(\d{4})>\s*<patch_index_(\d{4})>")  # live_models.kosmos2's pattern


def answers(processor, model, pairs: list[tuple[Path, str]], batches: list[list[int]]) -> list[str]:
    """The plain loop's decoded answers, each batch of pair indices padded on the left; in pair order."""
    cache: dict[Path, object] = {}
    out: dict[int, str] = {}
    for members in batches:
        part = [pairs[k] for k in members]
        inputs = processor(images=decoded(part, cache), text=[PROMPT.replace("{phrase}", p) for _, p in part],
                           padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        out.update(zip(members, processor.batch_decode(tokens[:, inputs["input_ids"].shape[1]:], skip_special_tokens=False)))
    return [out[k] for k in range(len(pairs))]


def changed(a: list[str], b: list[str]) -> str:
    boxes = sum(BOX.findall(x)[:1] != BOX.findall(y)[:1] for x, y in zip(a, b))
    return f"{sum(x != y for x, y in zip(a, b))} of the {len(a)} answers ({boxes} of their first boxes)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk", type=int, default=64, help="the runner's batch_size: phrases per chunk")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "synthref"
        generate(root, SynthSpec(seed=1, images={"testA": args.images}))
        ((_, folder, _),) = build_tiny(work / "tiny", ["kosmos2"])
        pairs = pairs_of(root, args.images)
        processor = AutoProcessor.from_pretrained(folder)
        processor.tokenizer.padding_side = "left"  # Kosmos-2's processor reads the tokenizer's attribute
        model = Kosmos2ForConditionalGeneration.from_pretrained(folder).eval()
        tokenizer = processor.tokenizer
        length = {t: len(tokenizer(PROMPT.replace("{phrase}", t), add_special_tokens=False)["input_ids"]) for _, t in pairs}
        chunks: list[list[int]] = [[]]  # the runner's chunks: whole images, at most --chunk phrases
        for _, group in _by_image(pairs):
            if chunks[-1] and len(chunks[-1]) + len(group) > args.chunk:
                chunks.append([])
            chunks[-1] += [length[t] for t in group]
        batches = sum(-(-n // args.batch) for c in chunks for n in Counter(c).values())

        n = len(pairs)
        single = answers(processor, model, pairs, [[k] for k in range(n)])
        padded = answers(processor, model, pairs, [list(range(k, min(k + args.batch, n))) for k in range(0, n, args.batch)])
        by_length: dict[int, list[int]] = {}
        for k, (_, t) in enumerate(pairs):
            by_length.setdefault(length[t], []).append(k)
        even = answers(processor, model, pairs, [g[k:k + args.batch] for g in by_length.values() for k in range(0, len(g), args.batch)])
        print(f"{n} phrases, {len(set(single))} distinct answers at batch size 1; against them, padded batches of "
              f"{args.batch} change {changed(single, padded)}, batches of {args.batch} prompts of one length "
              f"{changed(single, even)}")
        whole = sum(-(-n // args.batch) for n in Counter(length[t] for _, t in pairs).values())
        print(f"{len(set(length.values()))} prompt lengths in tokens; refbench's batches of at most {args.batch}: "
              f"{batches} with chunks of {args.chunk} phrases, {whole} with one chunk for all, "
              f"{-(-n // args.batch)} if any prompts could share a batch")


def _by_image(pairs: list[tuple[Path, str]]) -> list[tuple[Path, list[str]]]:
    """The pairs grouped by image, in order (pairs_of lists each image's phrases together)."""
    groups: list[tuple[Path, list[str]]] = []
    for f, t in pairs:
        if not groups or groups[-1][0] != f:
            groups.append((f, []))
        groups[-1][1].append(t)
    return groups


if __name__ == "__main__":
    main()
