"""Qwen2-VL and Qwen2.5-VL as grounders: each family's answers decoded by hand from its documentation
(Qwen2.5-VL's on an image its processor resized), and tiny models saved with save_pretrained and
loaded back through ``model: <folder>``, run on SynthRef through the real processor, chat template
and ``generate``: raw text in the journal, unparsable answers counted, batched == unbatched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from refbench.cli import main

from conftest import bench_yaml

from live_models.tiny.qwen import build_qwen2_5_vl, build_qwen2_vl
from live_models.qwen import Qwen2Vl, Qwen25Vl


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-vlms")
    return {"qwen2_vl": build_qwen2_vl(root / "qwen2_vl"), "qwen2_5_vl": build_qwen2_5_vl(root / "qwen2_5_vl")}


def decode(grounder, text: str, width: int, height: int, input_size=None):
    found = grounder.pattern.search(text)
    return None if found is None else grounder.box_format.decode([float(g) for g in found.groups()], width, height,
                                                                 input_size=input_size)


def test_qwen2_vl_corners_are_on_a_0_1000_grid_of_the_image():
    # the model card's answer shape: <|object_ref_start|>...<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>
    text = "<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(100,200),(500,750)<|box_end|>"
    box = decode(Qwen2Vl, text, 640, 480)
    assert box.xywh == pytest.approx((64.0, 96.0, 256.0, 264.0))  # x 0.1*640, y 0.2*480, w 0.4*640, h 0.55*480
    assert decode(Qwen2Vl, "a dog on the left", 640, 480) is None


def test_qwen2_5_vl_pixels_are_of_the_input_its_processor_resized(tiny):
    """640x480 at Qwen2.5-VL's default limits (56*56 to 28*28*1280 pixels) is resized to 644x476 (sides
    rounded to multiples of 28: 23*28 and 17*28); a bbox_2d answer in those pixels maps back by 640/644
    and 480/476."""
    g = Qwen25Vl(Qwen25Vl.Options(model=str(tiny["qwen2_5_vl"]), min_pixels=56 * 56, max_pixels=28 * 28 * 1280))
    image = Image.new("RGB", (640, 480))
    inputs = g.processor(images=[image], text=[g.text("the dog")], return_tensors="pt")
    assert inputs["image_grid_thw"][0].tolist() == [1, 34, 46] and g.input_size(inputs, 0) == (644, 476)
    text = '```json\n[\n\t{"bbox_2d": [100, 50, 300, 250], "label": "the dog"}\n]\n```'
    box = decode(g, text, 640, 480, g.input_size(inputs, 0))
    assert box.xywh == pytest.approx((100 * 640 / 644, 50 * 480 / 476, 200 * 640 / 644, 200 * 480 / 476))
    assert decode(g, '{"bbox_2d": [700, 50, 900, 250]}', 640, 480, (644, 476)) == "invalid_box"  # past the input's right edge
    small = Qwen25Vl(Qwen25Vl.Options(model=str(tiny["qwen2_5_vl"])))  # the tiny processor's own limit: 112*112 pixels
    assert small.input_size(small.processor(images=[image], text=[small.text("x")], return_tensors="pt"), 0) == (112, 84)


def config(root: Path, specs: dict[str, dict]) -> str:
    methods = "".join(f"  - id: {mid}\n    ground: {json.dumps(spec)}\n" for mid, spec in specs.items())
    return bench_yaml(root, methods.rstrip("\n"), splits="[testA]", proposer="null", extra="runner: {limit: 6}")


def records(results: Path) -> tuple[list[dict], dict]:
    (run,) = [p for p in results.iterdir() if p.is_dir()]
    lines = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    return sorted(lines, key=lambda r: (r["method"], r["sent_id"])), json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def runs(tiny, synth_root, tmp_path_factory):
    out = {}
    for size in (1, 4):
        tmp = tmp_path_factory.mktemp(f"vlm-b{size}")
        specs = {name: {"plugin": name, "model": str(folder), "batch_size": size, "max_new_tokens": 24} for name, folder in tiny.items()}
        (tmp / "bench.yaml").write_text(config(synth_root, specs))
        assert main(["run", str(tmp / "bench.yaml"), "--results", str(tmp / "r"), "-q"]) == 0
        out[size] = records(tmp / "r")
    return out


def test_every_phrase_is_answered_and_its_raw_text_kept(runs, tiny):
    lines, record = runs[4]
    for name in tiny:
        mine = [r for r in lines if r["method"] == name]
        assert len(mine) == record["metrics"][name]["n"] > 0
        assert all(isinstance(r["raw"], str) and r["raw"] for r in mine)
        # random weights answer noise: no box, each counted as unparsable and scored as a miss
        assert all(not r["box"] and r["problem"] in ("unparsable", "invalid_box", "outside_unit_range") and not r["hit"] for r in mine)
    assert record["methods"]["qwen2_5_vl"]["box_format"]["relative_to"] == "resized"
    assert record["methods"]["qwen2_vl"]["prompt"] == "<|object_ref_start|>{phrase}<|object_ref_end|>"
    assert record["methods"]["qwen2_5_vl"]["max_pixels"] == 112 * 112 and record["methods"]["qwen2_vl"]["max_new_tokens"] == 24


def test_batched_and_unbatched_runs_give_the_same_answers(runs):
    def answers(lines):
        return [(r["method"], r["sent_id"], r["raw"], r["box"], r.get("problem")) for r in lines]

    assert answers(runs[1][0]) == answers(runs[4][0])
    for name in ("qwen2_vl", "qwen2_5_vl"):  # answers differ, so a batch that moved one would show
        assert len({r["raw"] for r in runs[4][0] if r["method"] == name}) > 4


def test_a_model_of_another_family_is_one_line(tiny, synth_root, tmp_path, capsys):
    (tmp_path / "b.yaml").write_text(config(synth_root, {"m": {"plugin": "qwen2_vl", "model": str(tiny["qwen2_5_vl"])}}))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a qwen2_5_vl (Qwen2_5_VLForConditionalGeneration), but plugin qwen2_vl runs qwen2_vl models" in err
    assert len(err.splitlines()) == 1
