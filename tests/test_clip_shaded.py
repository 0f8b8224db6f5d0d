import json
import os
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from refbench import Box, RefbenchError
from refbench.config import load_config
from refbench.plugins import registry
from refbench.results import Store, read_record
from refbench.run import run_benchmark

from clip_shaded import ClipScorer, GreenShade, save_checkpoint
from clip_shaded.train import StepBatches, load_train_config, plan_epoch, records_of, step_loss, train

from conftest import bench_yaml


def test_green_shade_pixels():
    image = Image.new("RGB", (20, 16), (100, 100, 100))
    (view,) = GreenShade().render(image, [Box(4, 3, 10, 8)])
    px = np.asarray(view).astype(int)
    assert tuple(px[0, 0]) == (100, 100, 100)  # outside: untouched
    assert tuple(px[3, 4]) == (50, 205, 50) and tuple(px[4, 5]) == (50, 205, 50)  # 2-px outline
    assert tuple(px[10, 13]) == (50, 205, 50) and tuple(px[9, 12]) == (50, 205, 50)
    assert tuple(px[5, 6]) == (75, 152, 75) or tuple(px[5, 6]) == (75, 153, 75)  # 0.5 * grey + 0.5 * green
    assert tuple(px[11, 8]) == (100, 100, 100) and tuple(px[6, 14]) == (100, 100, 100)  # just outside
    assert np.asarray(image).max() == 100  # the input is not modified
    custom = GreenShade(GreenShade.Options(colour=(255, 0, 0), alpha=1.0, outline=0))
    (red,) = custom.render(image, [Box(4, 3, 10, 8)])
    assert tuple(np.asarray(red)[5, 6]) == (255, 0, 0)


def test_fast_path_equals_exact_render_at_model_size():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    boxes = [Box(3, 4, 10, 12), Box(20.4, 1.6, 9, 9), Box(0, 0, 32, 32)]
    prompter = GreenShade()
    exact = np.stack([np.asarray(v) for v in prompter.render(image, boxes)])
    fast = prompter.render_resized(np.asarray(image), boxes, scale=1.0)
    assert fast.dtype == np.uint8 and np.array_equal(fast, exact)  # same arithmetic, same rounding


def _shade_reference(image: np.ndarray, box: Box, alpha: float, colour: tuple, t: int) -> np.ndarray:
    """The definition, pixel by pixel: inside the box's pixel rectangle, a pixel within ``t`` of its
    edge is the colour, any other is the alpha blend; outside, the image."""
    h, w = image.shape[:2]
    x0 = min(max(round(box.x), 0), w - 1)
    y0 = min(max(round(box.y), 0), h - 1)
    x1 = min(max(round(box.x + box.w), x0 + 1), w)
    y1 = min(max(round(box.y + box.h), y0 + 1), h)
    out = image.copy()
    for y in range(y0, y1):
        for x in range(x0, x1):
            edge = t and (y < y0 + t or y >= y1 - t or x < x0 + t or x >= x1 - t)
            out[y, x] = colour if edge else np.rint(image[y, x] * (1 - alpha) + np.asarray(colour, np.float32) * alpha)
    return out


def test_shading_matches_its_definition_for_any_boxes():
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 24, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        boxes = [Box(*(float(v) for v in rng.uniform([-4, -4, 0.2, 0.2], [w + 2, h + 2, w, h]))) for _ in range(int(rng.integers(0, 5)))]
        options = dict(alpha=float(rng.choice([0.0, 0.5, 0.7, 1.0])), outline=int(rng.integers(0, 4)),
                       colour=tuple(int(c) for c in rng.integers(0, 256, 3)))
        prompter = GreenShade(GreenShade.Options(**options))
        views = prompter.render_resized(image, boxes, scale=1.0)
        assert views.shape == (len(boxes), h, w, 3)
        channels_first = np.zeros((len(boxes), 3, h, w), dtype=np.uint8)  # written in place through a transposed view
        prompter.render_resized(image, boxes, scale=1.0, out=channels_first.transpose(0, 2, 3, 1))
        assert np.array_equal(channels_first, views.transpose(0, 3, 1, 2))
        for view, box in zip(views, boxes):
            assert np.array_equal(view, _shade_reference(image, box, options["alpha"], options["colour"], options["outline"]))


def test_resized_views_stay_close_to_exact_views(synth_root):
    exact = ClipScorer(ClipScorer.Options(arch="synth-rn"))
    fast = ClipScorer(ClipScorer.Options(arch="synth-rn", views="resized"))
    image = Image.open(next((synth_root / "images").glob("*.jpg"))).convert("RGB")
    boxes = [Box(10, 12, 30, 25), Box(70.5, 40.2, 41, 50)]
    a, b = exact.prepare(image, boxes, GreenShade()), fast.prepare(image, boxes, GreenShade())
    assert a.shape == b.shape == (2, 3, 64, 64) and a.dtype == b.dtype == torch.uint8
    a, b = a.float(), b.float()
    diff = (a - b).abs()
    assert diff.mean() < 1.5 and diff.max() < 80  # interpolation at the box edges only (0..255 units)
    assert (a[0] - a[1]).abs().mean() > 5 * diff.mean()  # far smaller than the difference between two boxes


@pytest.fixture(scope="module")
def tiny_scorer():
    return ClipScorer(ClipScorer.Options(arch="synth-rn", init_seed=5))


def _logits(scorer, image, boxes, texts):
    views = scorer.prepare(image, boxes, GreenShade())
    with torch.inference_mode():
        return scorer.logits(scorer.encode_texts(scorer.prepare_texts(texts)), scorer.encode_views(views))


def test_token_ids_come_from_the_cache_exactly_as_tokenised(tiny_scorer, monkeypatch):
    texts = ["left red cube", "big blue ball", "left red cube", "the green one", "big blue ball", "top right"]
    one_by_one = torch.cat([open_clip.tokenize([t], context_length=tiny_scorer.model.context_length) for t in texts])
    monkeypatch.setattr(tiny_scorer, "text_cache_size", 3)
    assert torch.equal(tiny_scorer.tokenize(texts[:2]), one_by_one[:2])
    assert torch.equal(tiny_scorer.tokenize(texts), one_by_one)  # overflows: the cache starts over with these 4
    assert len(tiny_scorer._token_cache) == 4
    assert torch.equal(tiny_scorer.tokenize(texts[3:]), one_by_one[3:])


@pytest.mark.parametrize("arch", ["synth-rn", "synth-vit"])
def test_phrase_features_skip_the_padding_after_end_of_text(arch):
    from clip_shaded.scorer import encode_text

    scorer = ClipScorer(ClipScorer.Options(arch=arch))
    short = ["left", "the big red cube on the right", "top blue ball"]
    with torch.inference_mode():
        for texts in (short, short + ["a very long phrase that does not fit into sixteen tokens at all, so it is cut"]):
            tokens = scorer.tokenize(texts)
            full = scorer.model.encode_text(tokens, normalize=True)
            assert torch.allclose(encode_text(scorer.model, tokens), full, atol=1e-5)
        assert int(scorer.tokenize(short).argmax(-1).max()) + 1 < scorer.model.context_length  # the short batch is cut...
        full = scorer.model.encode_text(scorer.tokenize(short), normalize=True)
        scorer.model.encode_text = None  # ...by encode_text itself, not open_clip's
        assert torch.allclose(encode_text(scorer.model, scorer.tokenize(short)), full, atol=1e-5)


def test_phrase_features_come_from_the_cache_exactly_as_computed(tiny_scorer, monkeypatch):
    texts = ["left red cube", "big blue ball", "left red cube", "the green one", "big blue ball", "top right"]
    tokens = tiny_scorer.tokenize(texts)
    with torch.inference_mode():
        direct = tiny_scorer.model.encode_text(tokens, normalize=True)
        tiny_scorer.weights_changed()
        monkeypatch.setattr(tiny_scorer, "text_cache_size", 3)  # the second call overflows the cache
        first = tiny_scorer.encode_texts(tokens[:2])
        both = tiny_scorer.encode_texts(tokens)
    assert torch.allclose(first, direct[:2], atol=1e-6) and torch.allclose(both, direct, atol=1e-6)
    assert torch.equal(both[0], both[2]) and len(tiny_scorer._text_cache) == 4


def test_checkpoint_round_trip_gives_identical_logits(tiny_scorer, tmp_path):
    image = Image.new("RGB", (128, 128), (120, 90, 60))
    boxes = [Box(10, 10, 30, 30), Box(60, 50, 40, 20)]
    texts = ["left red circle", "the biggest blue square"]
    before = _logits(tiny_scorer, image, boxes, texts)
    save_checkpoint(tiny_scorer.model, tmp_path / "m.safetensors", "synth-rn", {"note": "test"})
    loaded = ClipScorer(ClipScorer.Options(checkpoint=tmp_path / "m.safetensors"))  # arch read from the file
    assert loaded.arch == "synth-rn" and loaded.checkpoint_meta["note"] == "test"
    np.testing.assert_array_equal(before, _logits(loaded, image, boxes, texts))
    torch.save({"state_dict": {f"module.{k}": v for k, v in tiny_scorer.model.state_dict().items()}}, tmp_path / "m.pt")
    from_pt = ClipScorer(ClipScorer.Options(arch="synth-rn", checkpoint=tmp_path / "m.pt"))
    np.testing.assert_array_equal(before, _logits(from_pt, image, boxes, texts))
    assert not np.array_equal(before, _logits(ClipScorer(ClipScorer.Options(arch="synth-rn", init_seed=6)), image, boxes, texts))
    # the shipping copy: fp16 weights, half the bytes, the same choices
    from refbench.cli import main

    assert main(["export-checkpoint", str(tmp_path / "m.safetensors"), str(tmp_path / "half.safetensors")]) == 0
    assert (tmp_path / "half.safetensors").stat().st_size < 0.55 * (tmp_path / "m.safetensors").stat().st_size
    half = ClipScorer(ClipScorer.Options(checkpoint=tmp_path / "half.safetensors"))
    assert half.checkpoint_meta["exported_from"]["dtype"] == "fp16" and half.checkpoint_meta["note"] == "test"
    np.testing.assert_allclose(_logits(half, image, boxes, texts), before, atol=0.05)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_checkpoints_are_loaded_safely(tmp_path, monkeypatch, tiny_scorer):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": tiny_scorer.model.state_dict(), "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(RefbenchError, match="cannot load checkpoint"):
        ClipScorer(ClipScorer.Options(arch="synth-rn", checkpoint=tmp_path / "evil.pt"))
    assert not (tmp_path / "pwned_by_checkpoint").exists()
    save_checkpoint(tiny_scorer.model, tmp_path / "rn.safetensors", "synth-rn")
    with pytest.raises(RefbenchError, match="is a 'synth-rn' model, not 'synth-vit'"):
        ClipScorer(ClipScorer.Options(arch="synth-vit", checkpoint=tmp_path / "rn.safetensors"))
    with pytest.raises(RefbenchError, match="did you mean 'synth-rn'"):
        ClipScorer(ClipScorer.Options(arch="synth-rm"))


def test_ensemble_of_one_member_equals_the_member(synth_root, tmp_path, write_config):
    methods = """
  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, init_seed: 2}}
  - {id: solo, combine: {plugin: mean_logits, of: [clip]}}
"""
    run = run_benchmark(load_config(write_config(bench_yaml(synth_root, methods))), Store(tmp_path / "r"))
    rows = [json.loads(x) for x in run.journal.path.read_text().splitlines()]
    by = {(r["method"], r["sent_id"]): r for r in rows}
    for (method, sent), r in by.items():
        if method == "solo":
            assert r["chosen"] == by[("clip", sent)]["chosen"]
            assert r["score"] == pytest.approx(by[("clip", sent)]["score"], abs=1e-4)
    m = read_record(run.dir)["metrics"]
    assert m["solo"]["accuracy"] == m["clip"]["accuracy"]


def test_epoch_plans_follow_the_recipe(synth_root):
    config = load_train_config(Path(__file__).parent.parent / "benchmarks" / "train" / "synthref_rn.yaml")
    data = {**config.data.as_dict(), "root": synth_root, "images": synth_root / "images"}
    items = list(registry().build("dataset", data, "data"))
    records = records_of(items)
    a, b = plan_epoch(items, records, config.recipe, 0), plan_epoch(items, records, config.recipe, 1)
    assert a == plan_epoch(items, records, config.recipe, 0)  # deterministic
    assert a != b  # candidates re-drawn each epoch
    seen = [(rec, cands, t) for step in a for rec, cands, t in zip(step.records, step.candidates, step.targets)]
    assert sorted((r.item, r.ref) for r, _, _ in seen) == sorted((r.item, r.ref) for r in records)  # each phrase once
    for rec, cands, t in seen:
        assert len(cands) == config.recipe.k and len(set(cands)) == len(cands) and cands[t] == rec.target
    assert len({t for _, _, t in seen}) == config.recipe.k  # the truth is not always first
    hard = config.recipe.model_copy(update={"same_category": 1.0, "oversample": {"location": 2}})
    hard_plan = [(r, c) for step in plan_epoch(items, records, hard, 0) for r, c in zip(step.records, step.candidates)]
    n_location = sum(items[r.item].refs[r.ref].phrase_type == "location" for r in records)
    assert len(hard_plan) == len(records) + n_location
    for rec, cands in hard_plan:
        anns = items[rec.item].annotations
        peers = [j for j, a in enumerate(anns) if j != rec.target and a.category == anns[rec.target].category]
        assert sum(c in peers for c in cands) == min(len(peers), config.recipe.k - 1)


def test_images_with_fewer_boxes_than_k_are_padded_and_masked(synth_root):
    config = load_train_config(Path(__file__).parent.parent / "benchmarks" / "train" / "synthref_rn.yaml")
    data = {**config.data.as_dict(), "root": synth_root, "images": synth_root / "images"}
    items = list(registry().build("dataset", data, "data"))
    recipe = config.recipe.model_copy(update={"k": 6, "batch_size": 16})  # scenes hold 4-7 objects
    plan = plan_epoch(items, records_of(items), recipe, 0)
    scorer = ClipScorer(ClipScorer.Options(arch="synth-rn"))
    batch = StepBatches(items, plan[:1], scorer, GreenShade())[0]
    assert (batch["rows"] == -1).any() and (batch["rows"][torch.arange(len(batch["rows"])), batch["targets"]] >= 0).all()
    batch["views"] = scorer.model_input(batch["views"])
    loss = step_loss(scorer.model, batch)
    assert torch.isfinite(loss) and loss.item() < np.log(6) + 1


def test_short_training_lowers_the_loss_and_beats_chance(synth_root, tmp_path):
    text = (Path(__file__).parent.parent / "benchmarks" / "train" / "synthref_rn.yaml").read_text()
    text = text.replace("data/synthref", str(synth_root)).replace("runs/synthref-rn", str(tmp_path / "out"))
    config_path = tmp_path / "train.yaml"
    config_path.write_text(text)
    config = load_train_config(config_path)
    config = config.model_copy(update={"recipe": config.recipe.model_copy(update={"epochs": 3, "batch_size": 32, "workers": 0,
                                                                                   "threads": None, "lr": 2e-3})})
    first = train(config, quiet=True, until_epoch=2)  # a session stopped early ...
    assert [e["epoch"] for e in first["epochs"]] == [1, 2]
    summary = train(config, quiet=True)  # ... is continued from last.pt by the next one
    epochs = summary["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[:2] == first["epochs"]
    assert epochs[-1]["loss"] < epochs[0]["loss"] < np.log(4) + 0.1
    assert (tmp_path / "out" / "best.safetensors").is_file() and (tmp_path / "out" / "last.pt").is_file()
    lines = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    # the best checkpoint, evaluated as a benchmark method, beats chance on validation
    bench = bench_yaml(synth_root, f"  - {{id: t, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {tmp_path}/out/best.safetensors}}}}",
                       splits="[val]")
    (tmp_path / "b.yaml").write_text(bench)
    m = read_record(run_benchmark(load_config(tmp_path / "b.yaml"), Store(tmp_path / "r")).dir)["metrics"]["t"]
    assert m["accuracy"] == pytest.approx(summary["best_val_accuracy"])
    assert m["accuracy"] > m["chance"] + 10
    # resuming a finished training does no more epochs; a different config refuses the folder
    again = train(config, quiet=True)
    assert len(again["epochs"]) == 3
    other = config.model_copy(update={"recipe": config.recipe.model_copy(update={"lr": 1e-4})})
    with pytest.raises(RefbenchError, match="another config"):
        train(other, quiet=True)


def test_predictions_do_not_depend_on_batching_or_workers(synth_root, tmp_path, write_config):
    """Encoder batches cut across images (batch 7 splits most images over two calls); workers
    build their own chunks, or score their own images; a combinator and a per-image scorer
    ride along. Same predictions."""
    methods = ("  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, init_seed: 4, views: resized}}\n"
               "  - {id: largest, scorer: {plugin: largest}}\n"
               "  - {id: mix, combine: {plugin: mean_logits, of: [clip, largest], weights: [1, 0]}}")
    rows = {}
    for name, runner in (("b7", "batch_size: 7, workers: 0"), ("scored-in-2", "batch_size: 64, workers: 2, scoring: workers"),
                         ("prepared-in-2", "batch_size: 64, workers: 2, scoring: main"), ("b1000", "batch_size: 1000, workers: 0")):
        cfg = write_config(bench_yaml(synth_root, methods, splits="[testA]", extra=f"runner: {{{runner}}}"), f"{name}.yaml")
        run = run_benchmark(load_config(cfg), Store(tmp_path / name))
        rows[name] = {(r["method"], r["sent_id"]): r for r in map(json.loads, run.journal.path.read_text().splitlines())}
        where = read_record(run.dir)["sessions"][0]["placement"]
        assert where["scoring"] == ("workers" if name == "scored-in-2" else "main") and where["workers"] == (2 if "-in-" in name else 0)
    assert len({frozenset(r) for r in rows.values()}) == 1 and len(rows["b7"]) == 3 * sum(1 for k in rows["b7"] if k[0] == "clip")
    for key, r in rows["b1000"].items():
        for other in rows.values():
            assert other[key]["chosen"] == r["chosen"] and abs(other[key]["score"] - r["score"]) < 1e-3
    assert all(rows["b1000"][("mix", sent)]["chosen"] == r["chosen"] for (method, sent), r in rows["b1000"].items() if method == "clip")


def test_the_prompters_template_applies_unless_the_config_sets_one(synth_root, tmp_path, write_config):
    """A prompter names its method's text template; the clip scorer uses it, and a config's own wins."""
    from refbench.plugins import registry
    from refbench.run import build

    class Tinted(GreenShade):
        template = "{} is in red color."

    reg = registry()
    reg.info("prompter", "green_shade")._cls = Tinted  # the registry's class for this test's build
    try:
        methods = ("  - {id: a, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn}}\n"
                   "  - {id: b, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, template: 'a photo of {}'}}")
        bench = build(load_config(write_config(bench_yaml(synth_root, methods))))
    finally:
        reg.info("prompter", "green_shade")._cls = None
    a, b = (m.scorer for m in bench.methods)
    assert (a.template, b.template) == ("{} is in red color.", "a photo of {}")
    assert a.describe()["template"] == "{} is in red color."
    expected = a.tokenizer(["red circle is in red color."])
    assert torch.equal(a.tokenize(["red circle"]), expected)


def test_seed_style_cuts_phrases_to_150_characters(tiny_scorer):
    """As the original code fed its tokeniser: the seed style's prompter asks the scorer to cut phrases."""
    long = "the small red circle " * 12  # 252 characters
    seed = GreenShade(GreenShade.Options(style="seed"))
    try:
        tiny_scorer.use_prompter(seed)
        assert tiny_scorer.phrase_chars == 150
        assert torch.equal(tiny_scorer.tokenize([long]), tiny_scorer.tokenizer([long[:150]]))
        tiny_scorer.use_prompter(GreenShade())
        assert torch.equal(tiny_scorer.tokenize([long]), tiny_scorer.tokenizer([long]))
    finally:
        tiny_scorer.use_prompter(None)
