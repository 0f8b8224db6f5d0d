"""Florence-2, Kosmos-2 and InternVL as grounders: their location answers decoded by hand, and tiny models saved
with save_pretrained and loaded back through ``model: <folder>``, run on SynthRef through the real
processors and ``generate``: raw text kept, batched == unbatched, the declared formats in run.json."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from refbench.cli import main

from conftest import bench_yaml

from live_models.florence2 import Florence2
from live_models.internvl import InternVl
from live_models.kosmos2 import Kosmos2


def decode(cls, text: str, width: int, height: int):
    found = cls.pattern.search(text)
    grounder = cls.__new__(cls)  # values() reads nothing of the instance
    return None if found is None else cls.box_format.decode(grounder.values(found.groups()), width, height)


def test_florence2_reads_the_first_box_at_bin_centres_of_the_image():
    # the answer of transformers' own Florence-2 batching test ("wheels", three boxes), read on a 640x480 image
    box = decode(Florence2, "</s><s>wheels<loc_144><loc_570><loc_870><loc_778>wheels<loc_711><loc_573><loc_866><loc_774></s>", 640, 480)
    x1, y1, x2, y2 = 144.5 / 1000 * 640, 570.5 / 1000 * 480, 870.5 / 1000 * 640, 778.5 / 1000 * 480
    assert box.xywh == pytest.approx((x1, y1, x2 - x1, y2 - y1))
    assert decode(Florence2, "<s>the whole<loc_0><loc_0><loc_999><loc_999>", 100, 50).xywh == pytest.approx((0.05, 0.025, 99.9, 49.95))
    assert decode(Florence2, "<s>a dog<loc_1><loc_2></s>", 640, 480) is None
    assert decode(Florence2, "<s>upside down<loc_500><loc_500><loc_100><loc_100>", 640, 480) == "invalid_box"


def test_kosmos2_reads_cell_centres_or_whole_cells_on_its_32_grid():
    # transformers' Kosmos-2 example: "a snowman" <patch_index_0044><patch_index_0863> -> (0.390625, 0.046875, 0.984375, 0.828125)
    box = decode(Kosmos2, "<object><patch_index_0044><patch_index_0863></object>", 640, 480)
    assert box.xywh == pytest.approx((0.390625 * 640, 0.046875 * 480, (0.984375 - 0.390625) * 640, (0.828125 - 0.046875) * 480))
    # one cell, or corners in one row: the cells whole (cell 33 is row 1, column 1; 40 is row 1, column 8)
    assert decode(Kosmos2, "<patch_index_0033><patch_index_0033>", 320, 320).xywh == pytest.approx((10, 10, 10, 10))
    assert decode(Kosmos2, "<patch_index_0033><patch_index_0040>", 320, 320).xywh == pytest.approx((10, 10, 80, 10))
    assert decode(Kosmos2, "<object><patch_index_0044></object>", 640, 480) is None
    assert decode(Kosmos2, "<patch_index_0863><patch_index_0044>", 640, 480) == "invalid_box"


def test_internvl_reads_its_double_brackets_on_a_0_1000_grid_of_the_image():
    box = decode(InternVl, "<ref>the dog</ref><box>[[100, 250, 600, 750]]</box>", 640, 480)
    assert box.xywh == pytest.approx((64, 120, 320, 240))
    # small values are 0-1000 too (InternVL's own evaluation would read [[0.1, 0.2, 0.5, 0.6]] as fractions)
    assert decode(InternVl, "[[1, 2, 3, 4]]", 1000, 500).xywh == pytest.approx((1, 1, 2, 1))
    assert decode(InternVl, "<ref>the dog</ref>", 640, 480) is None


FAMILIES = {"florence2": "live_models.tiny.florence2", "kosmos2": "live_models.tiny.kosmos2", "internvl": "live_models.tiny.internvl"}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request, tmp_path_factory) -> tuple[str, Path]:
    import importlib

    build = importlib.import_module(FAMILIES[request.param]).build
    return request.param, build(tmp_path_factory.mktemp(request.param) / "m")


def run(root: Path, plugin: str, folder: Path, tmp: Path, runner: str = "", **options) -> tuple[list[dict], dict]:
    spec = {"plugin": plugin, "model": str(folder), "max_new_tokens": 8, **options}
    (tmp / "b.yaml").write_text(bench_yaml(root, f"  - id: vlm\n    ground: {json.dumps(spec)}", splits="[testA]", proposer="null",
                                           extra=f"runner: {{limit: 5{runner}}}"))
    assert main(["run", str(tmp / "b.yaml"), "--results", str(tmp / "r"), "-q"]) == 0
    (found,) = [p for p in (tmp / "r").iterdir() if p.is_dir()]
    lines = [json.loads(x) for x in (found / "predictions.jsonl").read_text().splitlines()]
    return sorted(lines, key=lambda r: r["sent_id"]), json.loads((found / "run.json").read_text())


def test_a_run_keeps_every_answer_and_batches_change_none(tiny, synth_root, tmp_path, capsys):
    plugin, folder = tiny
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one, _ = run(synth_root, plugin, folder, tmp_path / "a", batch_size=1)
    capsys.readouterr()
    four, record = run(synth_root, plugin, folder, tmp_path / "b", runner=", workers: 2, scoring: workers", batch_size=4)
    assert len(four) == record["metrics"]["vlm"]["n"] > 4
    # two workers score, each with its own grounder: the misses are still counted, from the
    # journal, in run.json and the run's last lines
    assert record["sessions"][-1]["placement"]["scoring"] == "workers" and record["sessions"][-1]["placement"]["workers"] == 2
    misses = collections.Counter(r["problem"] for r in four if r.get("problem"))
    assert record["metrics"]["vlm"].get("misses", {}) == dict(misses)
    assert misses  # the tiny weights answer nonsense
    line = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(misses.items()))
    err = capsys.readouterr().err
    assert f"method vlm: answers scored as misses: {line}" in err
    assert "Loading weights" not in err  # transformers' own bar, once per model, is off: the run's bar is refbench's
    assert all(r["raw"] and (r["box"] or r["problem"]) for r in four)
    # the tiny weights answer each pair differently, so a batch that moved an answer would show
    # (Florence-2 padded on the left, InternVL on the right, or Kosmos-2 batched across lengths all do)
    assert len({r["raw"] for r in four}) > len(four) // 2
    assert [(r["sent_id"], r["raw"], r["box"], r.get("problem")) for r in one] == \
           [(r["sent_id"], r["raw"], r["box"], r.get("problem")) for r in four]
    method = record["methods"]["vlm"]
    assert method["decoding"] == "greedy"
    if plugin == "florence2":
        assert method["box_format"]["scale"] == "grid" and method["box_format"]["grid"] == 1000 and method["box_format"]["grid_offset"] == 0.5
        assert method["expanded_prompt"] == "Locate the phrases in the caption: {phrase}"
        assert all(r["raw"].startswith("<s>") for r in four)  # the decoder's start token is cut, the forced <s> kept
    elif plugin == "kosmos2":
        assert method["box_format"]["grid"] == 32 and method["prompt"] == "<grounding><phrase> {phrase}</phrase>"
    else:
        assert method["box_format"]["scale"] == "0-1000" and method["prompt"].endswith("<ref>{phrase}</ref>")


def test_a_folder_of_another_family_is_one_line(tiny, synth_root, tmp_path, capsys):
    plugin, folder = tiny
    other = {"florence2": "kosmos2", "kosmos2": "internvl", "internvl": "florence2"}[plugin]
    (tmp_path / "b.yaml").write_text(bench_yaml(synth_root, f"  - id: vlm\n    ground: {{plugin: {other}, model: {folder}}}",
                                                splits="[testA]", proposer="null"))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"plugin {other} runs" in err and len(err.splitlines()) == 1


def test_a_folder_without_its_processor_files_is_one_line(tiny, synth_root, tmp_path, capsys):
    import shutil

    plugin, folder = tiny
    shutil.copytree(folder, tmp_path / "m", ignore=shutil.ignore_patterns("*processor_config.json"))
    (tmp_path / "b.yaml").write_text(bench_yaml(synth_root, f"  - id: vlm\n    ground: {{plugin: {plugin}, model: {tmp_path / 'm'}}}",
                                                splits="[testA]", proposer="null"))
    for command in ("validate", "run"):
        args = [command, str(tmp_path / "b.yaml")] + (["--results", str(tmp_path / "r"), "-q"] if command == "run" else [])
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert "has no usable AutoProcessor files" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_prompt_with_no_place_for_the_phrase_is_one_line(tiny, synth_root, tmp_path, capsys):
    plugin, folder = tiny
    prompts = {"find the thing": "the prompt must hold {phrase}"}
    if plugin == "florence2":  # a task token that takes no input, which the processor would refuse with a traceback
        prompts["<OD>{phrase}"] = "holds <OD>, a Florence-2 task that takes no phrase; use a task that answers a phrase with boxes"
    for prompt, problem in prompts.items():
        spec = json.dumps({"plugin": plugin, "model": str(folder), "prompt": prompt})
        (tmp_path / "b.yaml").write_text(bench_yaml(synth_root, f"  - id: vlm\n    ground: {spec}", splits="[testA]", proposer="null"))
        capsys.readouterr()
        assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_florence2_records_the_prompt_its_encoder_reads_for_another_task(synth_root, tmp_path):
    from live_models.tiny.florence2 import build

    folder = build(tmp_path / "m")
    _, record = run(synth_root, "florence2", folder, tmp_path, prompt="<OPEN_VOCABULARY_DETECTION>{phrase}")
    assert record["methods"]["vlm"]["expanded_prompt"] == "Locate {phrase} in the image."


def test_a_tiny_model_is_kept_only_while_its_builder_is_the_same(tmp_path):
    from live_models.tiny.__main__ import DONE, build

    (_, folder, first), = build(tmp_path, ["internvl"])
    (_, _, again), = build(tmp_path, ["internvl"])
    assert first is not None and again is None  # built, then kept
    (folder / DONE).write_text("", encoding="utf-8")  # as a folder written by older builder code is marked
    (_, _, stale), = build(tmp_path, ["internvl"])
    assert stale is not None and (folder / "config.json").is_file()
