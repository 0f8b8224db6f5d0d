"""Grounding DINO and OWLv2 as grounders: tiny models saved with save_pretrained and loaded back through
``model: <folder>``, run on SynthRef through the real processor, model and post-processing; batched and
unbatched answers; the declared frames checked against the processors; bad input."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from refbench import RefbenchError
from refbench.cli import main

from conftest import bench_yaml

from live_models.detectors import GroundingDino, Owlv2
from live_models.tiny.detectors import build_grounding_dino, build_owlv2

BUILD = {"grounding_dino": build_grounding_dino, "owlv2": build_owlv2}
CLASS = {"grounding_dino": GroundingDino, "owlv2": Owlv2}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-detectors")
    return {name: build(root / name) for name, build in BUILD.items()}


def config(root: Path, specs: dict[str, dict]) -> str:
    methods = "".join(f"  - id: {mid}\n    ground: {json.dumps(spec)}\n" for mid, spec in specs.items())
    return bench_yaml(root, methods.rstrip("\n"), splits="[testA]", proposer="null")


def run_dir(results: Path) -> Path:
    (found,) = [p for p in results.iterdir() if p.is_dir()]
    return found


def journal(results: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir(results) / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tiny, synth_root, tmp_path_factory) -> dict[int, Path]:
    """One run of both detectors per batch size (1: unbatched; 4: across phrases and images)."""
    out = {}
    for size in (1, 4):
        tmp = tmp_path_factory.mktemp(f"b{size}")
        specs = {name: {"plugin": name, "model": str(folder), "batch_size": size} for name, folder in tiny.items()}
        (tmp / "bench.yaml").write_text(config(synth_root, specs))
        assert main(["run", str(tmp / "bench.yaml"), "--results", str(tmp / "r"), "-q"]) == 0
        out[size] = tmp / "r"
    return out


def test_every_phrase_gets_the_model_s_best_box_with_its_score_kept(runs, tiny, synth_root):
    records = journal(runs[4])
    images = {i["id"]: i for i in json.loads((synth_root / "synthref" / "instances.json").read_text())["images"]}
    for name in tiny:
        mine = [r for r in records if r["method"] == name]
        assert mine and all(r["raw"].startswith("score ") or r["raw"] == "no box" for r in mine)
        boxed = [r for r in mine if r["box"]]
        assert boxed, f"{name}: some answers are boxes of the image"
        for r in boxed:
            image = images[r["image_id"]]
            x, y, w, h = r["box"]
            assert w >= 0 and h >= 0 and x >= 0 and y >= 0 and x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
        assert all(r.get("problem") in ("invalid_box", "no_box", "below_threshold") for r in mine if not r["box"])


def test_batched_and_unbatched_runs_choose_the_same_boxes(runs):
    one, four = (sorted(journal(runs[s]), key=lambda r: (r["method"], r["sent_id"])) for s in (1, 4))
    assert [(r["method"], r["sent_id"]) for r in one] == [(r["method"], r["sent_id"]) for r in four]
    for a, b in zip(one, four):
        assert bool(a["box"]) == bool(b["box"]) and a.get("problem") == b.get("problem")
        if a["box"]:
            assert a["box"] == pytest.approx(b["box"], abs=1e-3)
        # the scores agree to float error: a batch computes the same sums in other shapes
        assert float(a["raw"].split()[1]) == pytest.approx(float(b["raw"].split()[1]), abs=1e-4)


def test_run_json_records_the_model_the_rule_and_the_declared_frame(runs, tiny):
    record = json.loads((run_dir(runs[4]) / "run.json").read_text())
    gd, owl = record["methods"]["grounding_dino"], record["methods"]["owlv2"]
    assert gd["model"] == str(tiny["grounding_dino"]) and gd["batch_size"] == 4 and gd["threshold"] == 0.0
    assert gd["choice"] == "score" and gd["choice_rule"] == "the highest-scoring box" and gd["query"] == "{phrase}."
    assert gd["box_format"] == {"box_format": "xyxy", "scale": "normalised", "order": "xy", "relative_to": "original"}
    assert owl["box_format"]["relative_to"] == "letterboxed" and owl["box_format"]["letterbox"] == "top_left"
    assert gd["config_sha256"] and gd["weights"]["model.safetensors"]["bytes"] > 0 and gd["precision"] == "float32"


def test_grounding_dino_s_query_is_lower_case_and_ends_in_a_full_stop(tiny):
    g = GroundingDino(GroundingDino.Options(model=str(tiny["grounding_dino"])))
    assert g.query("The Red Square ") == "the red square." and g.query("far left.") == "far left."


def test_owlv2_s_frame_is_the_square_its_processor_pads_to(tiny):
    """A box spanning the image's normalised extent in OWLv2's padded square decodes to the whole image,
    and the processor pads a 96x48 image at the bottom: its lower half is the padding value."""
    g = Owlv2(Owlv2.Options(model=str(tiny["owlv2"])))
    form, (right, bottom) = g.frame(96, 48)
    assert (right, bottom) == (1.0, 0.5)
    assert form.decode([0.0, 0.0, right, bottom], 96, 48).xywh == pytest.approx((0, 0, 96, 48))
    assert form.decode([0.25, 0.125, 0.5, 0.25], 96, 48).xywh == pytest.approx((24, 12, 24, 12))
    white = Image.new("RGB", (96, 48), (255, 255, 255))
    pixels = g.processor(images=[white], text=[["x"]], return_tensors="pt")["pixel_values"][0]
    side = pixels.shape[-1]
    top, low = pixels[:, : side // 2 - 2], pixels[:, side // 2 + 2:]
    assert bool((low < top.amin(dim=(1, 2), keepdim=True)).all())  # the padding is darker than white
    assert torch.allclose(low, low[:, :1, :1].expand_as(low))  # and uniform in each channel


def test_a_best_box_under_the_threshold_is_no_answer(tiny, synth_root, tmp_path):
    specs = {"gd": {"plugin": "grounding_dino", "model": str(tiny["grounding_dino"]), "threshold": 1.0}}
    (tmp_path / "b.yaml").write_text(config(synth_root, specs))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 0
    records = journal(tmp_path / "r")
    assert records and all(r["box"] == [] and r["problem"] == "below_threshold" for r in records)


def test_choice_largest_answers_with_the_largest_box_above_the_threshold(tiny, synth_root, tmp_path):
    """The same model and threshold under both choice rules: the same phrases answered (a box above the
    threshold exists for both or neither), each largest answer at least as large as the top-scoring
    one and some larger, and run.json recording each rule."""
    specs = {f"gd-{rule}": {"plugin": "grounding_dino", "model": str(tiny["grounding_dino"]), "threshold": 0.9,
                            "choice": rule} for rule in ("score", "largest")}
    (tmp_path / "b.yaml").write_text(config(synth_root, specs) + "\nrunner: {limit: 12}\n")
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 0
    by = collections.defaultdict(dict)
    for r in journal(tmp_path / "r"):
        by[r["sent_id"]][r["method"]] = r
    area = lambda r: r["box"][2] * r["box"][3]  # noqa: E731
    answered = larger = 0
    for pair in by.values():
        score, largest = pair["gd-score"], pair["gd-largest"]
        assert bool(score["box"]) == bool(largest["box"])
        if score["box"]:
            answered += 1
            assert area(largest) >= area(score) - 1e-6 and float(largest["raw"].split()[1]) >= 0.9  # 4 decimals
            larger += area(largest) > area(score) + 1e-6
    assert answered and larger, (answered, larger)
    methods = json.loads((run_dir(tmp_path / "r") / "run.json").read_text())["methods"]
    assert methods["gd-largest"]["choice"] == "largest" and methods["gd-largest"]["threshold"] == 0.9
    assert methods["gd-largest"]["choice_rule"] == "the largest box scoring above the threshold"


def test_choice_largest_without_a_threshold_is_one_line(tiny, synth_root, tmp_path, capsys):
    spec = {"plugin": "owlv2", "model": str(tiny["owlv2"]), "choice": "largest"}
    (tmp_path / "b.yaml").write_text(config(synth_root, {"m": spec}))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "choice: largest needs a threshold above 0" in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("plugin, folder, line", [
    ("owlv2", "grounding_dino", "is a grounding-dino (GroundingDinoForObjectDetection), but plugin owlv2 runs owlv2 models"),
    ("grounding_dino", "missing", "model folder not found"),
    ("grounding_dino", "no_config", "has no config.json"),
    ("owlv2", "no_processor", "has no usable AutoProcessor files"),
])
def test_bad_models_are_one_line(plugin, folder, line, tiny, synth_root, tmp_path, capsys):
    (tmp_path / "no_config").mkdir()
    if folder == "no_processor":  # the model's folder without its processor's files: weights and config alone
        import shutil

        shutil.copytree(tiny["owlv2"], tmp_path / "no_processor", ignore=shutil.ignore_patterns("*processor_config.json"))
    path = {"missing": tmp_path / "missing", "no_config": tmp_path / "no_config", "no_processor": tmp_path / "no_processor"}.get(folder) or tiny[folder]
    (tmp_path / "b.yaml").write_text(config(synth_root, {"m": {"plugin": plugin, "model": str(path)}}))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert line in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: methods[0] (m).ground: ")  # the block it came from, whether check() or loading found it
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_model_id_not_in_the_cache_names_it_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RefbenchError) as caught:
        GroundingDino(GroundingDino.Options(model="IDEA-Research/grounding-dino-tiny"))
    assert "IDEA-Research/grounding-dino-tiny is not in the Hugging Face cache" in str(caught.value)
    assert "hf download IDEA-Research/grounding-dino-tiny" in caught.value.fix


@pytest.mark.parametrize("spec, line", [
    ({"plugin": "grounding_dino", "model": "IDEA-Research/grounding-dino-tiny"},
     "model IDEA-Research/grounding-dino-tiny is not in the Hugging Face cache"),
    ({"plugin": "owlv2", "model": "owlv2", "device": "cpu", "precision": "fp16"}, "fp16 on the CPU"),
])
def test_a_run_with_a_model_it_cannot_load_stops_in_one_line_and_loses_nothing(spec, line, tiny, synth_root, tmp_path,
                                                                             monkeypatch, capsys):
    """A model id not in the (offline) cache, and a precision the CPU cannot run: `refbench run` exits 2
    with one line naming the problem and the fix, and a finished run in the results folder is untouched."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    results = tmp_path / "r"
    (tmp_path / "good.yaml").write_text(config(synth_root, {"gd": {"plugin": "grounding_dino", "model": str(tiny["grounding_dino"])}})
                                        + "\nrunner: {limit: 2}\n")
    assert main(["run", str(tmp_path / "good.yaml"), "--results", str(results), "-q"]) == 0
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    spec = {**spec, "model": str(tiny[spec["model"]]) if spec["model"] in tiny else spec["model"]}
    (tmp_path / "bad.yaml").write_text(config(synth_root, {"m": spec}))
    capsys.readouterr()
    assert main(["run", str(tmp_path / "bad.yaml"), "--results", str(results), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and line in err, err
    assert {p: p.read_bytes() for p in before} == before and sorted(p for p in results.rglob("*") if p.is_file()) == sorted(before)


def test_fp16_on_the_cpu_is_refused_before_loading(tiny):
    with pytest.raises(RefbenchError, match="fp16 on the CPU"):
        Owlv2(Owlv2.Options(model=str(tiny["owlv2"]), device="cpu", precision="fp16"))



def test_torchrun_shards_the_grounders_and_matches_one_process(tiny, synth_root, tmp_path):
    """Two gloo ranks, each grounding its shard of the images with the same tiny models, merge into the
    one-process run's answers (the detectors' and a VLM's)."""
    from test_distributed import finish, the_run, torchrun

    from live_models.tiny.qwen import build_qwen2_5_vl

    specs = {name: {"plugin": name, "model": str(folder), "batch_size": 4} for name, folder in tiny.items()}
    specs["qwen2_5_vl"] = {"plugin": "qwen2_5_vl", "model": str(build_qwen2_5_vl(tmp_path / "qwen")), "batch_size": 4,
                           "max_new_tokens": 8}
    cfg = tmp_path / "b.yaml"
    cfg.write_text(config(synth_root, specs) + "\nrunner: {limit: 8}\n")
    assert main(["run", str(cfg), "--results", str(tmp_path / "one"), "-q"]) == 0
    err = finish(torchrun(2, cfg, tmp_path / "two"))

    one, two = (sorted(journal(tmp_path / name), key=lambda r: (r["method"], r["sent_id"])) for name in ("one", "two"))
    assert [(r["method"], r["sent_id"], r.get("problem")) for r in one] == [(r["method"], r["sent_id"], r.get("problem")) for r in two]
    assert len(one) > 3 * 8
    for a, b in zip(one, two):
        if a["method"] == "qwen2_5_vl":
            assert a["raw"] == b["raw"]
        else:  # a detector's score and box to float error: a shard's batches hold other images
            assert float(a["raw"].split()[1]) == pytest.approx(float(b["raw"].split()[1]), abs=1e-4)
            assert a["box"] == pytest.approx(b["box"], abs=1e-3)
    record = json.loads((the_run(tmp_path / "two") / "run.json").read_text())
    assert record["sessions"][0]["placement"]["ranks"] == 2
    # the misses of both ranks are counted once, from the merged journal, and printed once
    alone = json.loads((the_run(tmp_path / "one") / "run.json").read_text())
    counted = collections.Counter((r["method"], r["problem"]) for r in two if r.get("problem"))
    assert counted  # the tiny VLM answers nonsense
    for method in specs:
        misses = {problem: n for (m, problem), n in counted.items() if m == method}
        assert record["metrics"][method].get("misses", {}) == misses == alone["metrics"][method].get("misses", {})
        if misses:
            line = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(misses.items()))
            assert err.count(f"method {method}: answers scored as misses: {line}") == 1, err[-2000:]
