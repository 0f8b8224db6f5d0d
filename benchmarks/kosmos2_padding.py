"""Why refbench batches Kosmos-2's prompts only by length: what padding does to its answers.

On the data perf_grounders.py uses (the first --images images of a SynthRef testA, seed 1) and its
tiny Kosmos-2 (random weights, built by live_models.tiny), prints:
  - how many answers a plain loop's left-padded batches of --batch change against batch size 1
    (transformers numbers the generated tokens from the padded cache's length);
  - how many token lengths the phrases' prompts fall into, and how many batches of at most
    --batch refbench needs for them with runner chunks of --chunk phrases (prompts of one length
    share a batch), against the fewest that would hold them.

    python benchmarks/kosmos2_padding.py [--images 40] [--batch 8] [--chunk 64]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
from transformers import AutoProcessor, Kosmos2ForConditionalGeneration

from refbench.synth import SynthSpec, generate

from live_models.tiny.__main__ import build as build_tiny

from perf_grounders import decoded, pairs_of

PROMPT = "<grounding><phrase> {phrase}</phrase>"


def answers(folder: Path, pairs: list[tuple[Path, str]], batch: int) -> list[str]:
    """The plain loop's decoded answers, batches of ``batch`` pairs padded on the left."""
    processor = AutoProcessor.from_pretrained(folder)
    processor.tokenizer.padding_side = "left"  # Kosmos-2's processor reads the tokenizer's attribute
    model = Kosmos2ForConditionalGeneration.from_pretrained(folder).eval()
    cache: dict[Path, object] = {}
    out: list[str] = []
    for k in range(0, len(pairs), batch):
        part = pairs[k:k + batch]
        inputs = processor(images=decoded(part, cache), text=[PROMPT.replace("{phrase}", p) for _, p in part],
                           padding=True, padding_side="left", return_tensors="pt")
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        out += processor.batch_decode(tokens[:, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
    return out


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
        single, padded = answers(folder, pairs, 1), answers(folder, pairs, args.batch)
        changed = sum(a != b for a, b in zip(single, padded))
        print(f"{len(pairs)} phrases; padded batches of {args.batch} change {changed} of the {len(pairs)} answers "
              f"given at batch size 1 ({len(set(single))} distinct answers at batch size 1)")

        tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
        length = {t: len(tokenizer(PROMPT.replace("{phrase}", t), add_special_tokens=False)["input_ids"]) for _, t in pairs}
        chunks: list[list[int]] = [[]]  # the runner's chunks: whole images, at most --chunk phrases
        for _, group in _by_image(pairs):
            if chunks[-1] and len(chunks[-1]) + len(group) > args.chunk:
                chunks.append([])
            chunks[-1] += [length[t] for t in group]
        batches = sum(-(-n // args.batch) for c in chunks for n in Counter(c).values())
        whole = sum(-(-n // args.batch) for n in Counter(length[t] for _, t in pairs).values())
        print(f"{len(set(length.values()))} prompt lengths in tokens; refbench's batches of at most {args.batch}: "
              f"{batches} with chunks of {args.chunk} phrases, {whole} with one chunk for all, "
              f"{-(-len(pairs) // args.batch)} if any prompts could share a batch")


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
