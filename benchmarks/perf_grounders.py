"""Model grounders' throughput: refbench's run against a plain loop over the same model and inputs.

For each tiny model (random weights, built by live_models.tiny), on the first --images images of a
SynthRef testA:
  - refbench: ``refbench run`` of a benchmark with that one grounder, in this process, end to end
    (config, data set, image decoding, the grounder's batches, the protocol, the journal, run.json);
  - plain loop: the same model loaded with transformers, the same images decoded with Pillow, the
    same (image, phrase) pairs in the same order and batch size, the processor, the model (or
    ``generate``) and the post-processing; nothing else.
Both load the model inside the timing. Each is run --repeats times, alternating; the figure is the
best of each. Printed: phrases/s for both, refbench over plain at each batch size (goal >= 90% at
batch size 1), and refbench batched over refbench at batch size 1 (goal >= 3x on the CPU). Kosmos-2's
plain loop pads prompts of different lengths into one batch, which moves its answers (see
live_models.kosmos2); refbench batches only prompts of one length, so its batches are smaller.

    python benchmarks/perf_grounders.py                          # CPU, all tiny families
    python benchmarks/perf_grounders.py --device cuda --batch-sizes 1 16 --images 200
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from refbench.cli import main as refbench
from refbench.synth import SynthSpec, generate

from live_models.tiny.__main__ import build as build_tiny

QWEN25 = "Locate {phrase} in this image and output the bbox coordinates in JSON format."
QWEN2 = "<|object_ref_start|>{phrase}<|object_ref_end|>"
INTERNVL = "Please provide the bounding box coordinate of the region this sentence describes: <ref>{phrase}</ref>"


def pairs_of(root: Path, images: int) -> list[tuple[Path, str]]:
    """The first ``images`` testA images' (file, phrase) pairs, in the runner's order (by image id, refs in order)."""
    import pickle

    refs = pickle.loads((root / "synthref" / "refs(unc).p").read_bytes())
    meta = {i["id"]: i for i in json.loads((root / "synthref" / "instances.json").read_text())["images"]}
    by_image: dict[int, list[str]] = {}
    for r in refs:
        if r["split"] == "testA":
            by_image.setdefault(r["image_id"], []).extend(s["sent"] for s in r["sentences"])
    chosen = sorted(by_image)[:images]
    return [(root / "images" / meta[i]["file_name"], p) for i in chosen for p in by_image[i]]


def decoded(part: list[tuple[Path, str]], cache: dict[Path, Image.Image]) -> list[Image.Image]:
    """``part``'s images, each decoded once (as the runner decodes each image once)."""
    for f, _ in part:
        if f not in cache:
            cache[f] = Image.open(f).convert("RGB")
    return [cache[f] for f, _ in part]


def plain_detector(folder: Path, pairs: list[tuple[Path, str]], batch: int, device: str, owl: bool) -> float:
    """Grounding DINO (``owl`` False: lower-cased queries ending in ".") or OWLv2 (one query per image)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    start = time.perf_counter()
    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(folder).to(device).eval()
    cache: dict[Path, Image.Image] = {}
    for k in range(0, len(pairs), batch):
        part = pairs[k:k + batch]
        ims = decoded(part, cache)
        if owl:
            inputs = processor(images=ims, text=[[p] for _, p in part], truncation=True, return_tensors="pt").to(device)
        else:
            inputs = processor(images=ims, text=[p.lower().rstrip(".") + "." for _, p in part], padding=True, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model(**inputs)
        if owl:
            found = processor.post_process_grounded_object_detection(out, threshold=0.0)
        else:
            found = processor.post_process_grounded_object_detection(out, inputs["input_ids"], threshold=0.0, text_threshold=0.0)
        [f["boxes"][f["scores"].argmax()].tolist() for f in found if len(f["scores"])]
    return time.perf_counter() - start


def plain_vlm(folder: Path, pairs: list[tuple[Path, str]], batch: int, device: str, prompt: str, cls: str) -> float:
    import transformers
    from transformers import AutoProcessor

    start = time.perf_counter()
    processor = AutoProcessor.from_pretrained(folder)
    # padded as the grounders pad: set and passed (InternVL's processor reads only the argument, Kosmos-2's only the attribute)
    side = processor.tokenizer.padding_side = "right" if cls.startswith("Florence2") else "left"
    model = getattr(transformers, cls).from_pretrained(folder).to(device).eval()
    cache: dict[Path, Image.Image] = {}
    for k in range(0, len(pairs), batch):
        part = pairs[k:k + batch]
        ims = decoded(part, cache)
        if cls.startswith("PaliGemma"):  # no chat template: the image token, then the prompt
            texts = ["<image>" + prompt.replace("{phrase}", p) for _, p in part]
        elif cls.startswith(("Florence2", "Kosmos2")):  # the processor adds the image tokens
            texts = [prompt.replace("{phrase}", p) for _, p in part]
        else:
            texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt.replace("{phrase}", p)}]}],
                                                   add_generation_prompt=True) for _, p in part]
        inputs = processor(images=ims, text=texts, padding=True, padding_side=side, return_tensors="pt").to(device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        new = out[:, 1:] if model.config.is_encoder_decoder else out[:, inputs["input_ids"].shape[1]:]
        processor.batch_decode(new, skip_special_tokens=False)
    return time.perf_counter() - start


def run_refbench(root: Path, folder: Path, plugin: str, batch: int, images: int, device: str, work: Path) -> float:
    spec = {"plugin": plugin, "model": str(folder), "batch_size": batch, "device": device}
    if plugin in ("qwen2_vl", "qwen2_5_vl", "paligemma", "florence2", "kosmos2", "internvl"):
        spec["max_new_tokens"] = 24
    config = work / f"{plugin}-{batch}.yaml"
    config.write_text(f"""name: perf_{plugin}
dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [testA], images: {root}/images}}
protocol: {{iou: 0.5, comparison: ">", iou_convention: refer}}
runner: {{limit: {images}, batch_size: 64, workers: 0}}
methods:
  - id: m
    ground: {json.dumps(spec)}
""")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the run's tables
        assert refbench(["run", str(config), "--results", str(work / "results"), "-q"]) == 0
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--models", nargs="+", default=["grounding_dino", "owlv2", "qwen2_vl", "qwen2_5_vl", "paligemma", "florence2", "kosmos2", "internvl"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "synthref"
        generate(root, SynthSpec(seed=1, images={"testA": args.images}))
        folders = {name: folder for name, folder, _ in build_tiny(work / "tiny", args.models)}
        pairs = pairs_of(root, args.images)
        print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
              f"{args.images} images, {len(pairs)} phrases, best of {args.repeats}")
        summary = {}
        for name in args.models:
            plain = {"grounding_dino": lambda b: plain_detector(folders[name], pairs, b, args.device, owl=False),
                     "owlv2": lambda b: plain_detector(folders[name], pairs, b, args.device, owl=True),
                     "qwen2_vl": lambda b: plain_vlm(folders[name], pairs, b, args.device, QWEN2, "Qwen2VLForConditionalGeneration"),
                     "qwen2_5_vl": lambda b: plain_vlm(folders[name], pairs, b, args.device, QWEN25, "Qwen2_5_VLForConditionalGeneration"),
                     "paligemma": lambda b: plain_vlm(folders[name], pairs, b, args.device, "detect {phrase}", "PaliGemmaForConditionalGeneration"),
                     "florence2": lambda b: plain_vlm(folders[name], pairs, b, args.device, "<CAPTION_TO_PHRASE_GROUNDING>{phrase}",
                                                      "Florence2ForConditionalGeneration"),
                     # the plain loop batches Kosmos-2's prompts of any length, padded; refbench batches equal lengths only
                     "kosmos2": lambda b: plain_vlm(folders[name], pairs, b, args.device, "<grounding><phrase> {phrase}</phrase>",
                                                    "Kosmos2ForConditionalGeneration"),
                     "internvl": lambda b: plain_vlm(folders[name], pairs, b, args.device, INTERNVL, "InternVLForConditionalGeneration")}[name]
            rate = {}
            for b in args.batch_sizes:
                ours, theirs = [], []
                for _ in range(args.repeats):
                    ours.append(run_refbench(root, folders[name], name, b, args.images, args.device, work))
                    if plain is not None:
                        theirs.append(plain(b))
                rate[b] = len(pairs) / min(ours)
                line = f"[{name}] batch {b}: refbench {rate[b]:.1f} phrases/s"
                if theirs:
                    loop = len(pairs) / min(theirs)
                    line += f", plain loop {loop:.1f} phrases/s, refbench/plain {rate[b] / loop:.1%}"
                    summary[f"{name}_b{b}_vs_plain"] = round(rate[b] / loop, 3)
                print(line)
            if len(args.batch_sizes) > 1:
                top = max(args.batch_sizes)
                print(f"[{name}] batch {top} over batch {min(args.batch_sizes)}: {rate[top] / rate[min(args.batch_sizes)]:.2f}x")
                summary[f"{name}_batched_speedup"] = round(rate[top] / rate[min(args.batch_sizes)], 2)
        print("summary:", json.dumps(summary))


if __name__ == "__main__":
    main()
