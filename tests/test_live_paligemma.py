"""PaliGemma as a grounder: its location-token answers decoded by hand, and a tiny model saved with
save_pretrained and loaded back through ``model: <folder>``, run on SynthRef through the real
processor and ``generate``: raw text kept, batched == unbatched, another family refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refbench.cli import main

from conftest import bench_yaml

from live_models.paligemma import PaliGemma
from live_models.tiny.paligemma import build


def decode(text: str, width: int, height: int):
    found = PaliGemma.pattern.search(text)
    return None if found is None else PaliGemma.box_format.decode([float(g) for g in found.groups()], width, height)


def test_location_tokens_are_y_first_1024_bins_of_the_image():
    # y_min 256, x_min 128, y_max 768, x_max 512 of 1024 bins on a 640x480 image
    box = decode("<loc0256><loc0128><loc0768><loc0512> the dog", 640, 480)
    assert box.xywh == pytest.approx((128 / 1024 * 640, 256 / 1024 * 480, 384 / 1024 * 640, 512 / 1024 * 480))
    assert decode("<loc0000><loc0000><loc1023><loc1023> all", 100, 50).xywh == pytest.approx((0, 0, 100 * 1023 / 1024, 50 * 1023 / 1024))
    assert decode("the dog", 640, 480) is None and decode("<loc0256><loc0128> dog", 640, 480) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("paligemma") / "m")


def run(root: Path, folder: Path, tmp: Path, **options) -> tuple[list[dict], dict]:
    spec = {"plugin": "paligemma", "model": str(folder), "max_new_tokens": 8, **options}
    (tmp / "b.yaml").write_text(bench_yaml(root, f"  - id: pg\n    ground: {json.dumps(spec)}", splits="[testA]", proposer="null",
                                           extra="runner: {limit: 5}"))
    assert main(["run", str(tmp / "b.yaml"), "--results", str(tmp / "r"), "-q"]) == 0
    (found,) = [p for p in (tmp / "r").iterdir() if p.is_dir()]
    lines = [json.loads(x) for x in (found / "predictions.jsonl").read_text().splitlines()]
    return sorted(lines, key=lambda r: r["sent_id"]), json.loads((found / "run.json").read_text())


def test_a_run_keeps_every_answer_and_batches_change_none(tiny, synth_root, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    one, _ = run(synth_root, tiny, tmp_path / "a", batch_size=1)
    four, record = run(synth_root, tiny, tmp_path / "b", batch_size=4)
    assert len(four) == record["metrics"]["pg"]["n"] > 4
    assert all(r["raw"] and (r["box"] or r["problem"]) for r in four)
    assert len({r["raw"] for r in four}) > len(four) // 2  # answers differ, so a batch that moved one would show
    assert [(r["sent_id"], r["raw"], r["box"], r.get("problem")) for r in one] == \
           [(r["sent_id"], r["raw"], r["box"], r.get("problem")) for r in four]
    method = record["methods"]["pg"]
    assert method["prompt"] == "detect {phrase}" and method["box_format"]["order"] == "yx" and method["box_format"]["grid"] == 1024


def test_a_folder_of_another_family_is_one_line(synth_root, tmp_path, capsys):
    from live_models.tiny.qwen import build_qwen2_vl

    folder = build_qwen2_vl(tmp_path / "q")
    capsys.readouterr()  # the build's progress output
    (tmp_path / "b.yaml").write_text(bench_yaml(synth_root, f"  - id: pg\n    ground: {{plugin: paligemma, model: {folder}}}",
                                                splits="[testA]", proposer="null"))
    assert main(["run", str(tmp_path / "b.yaml"), "--results", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a qwen2_vl" in err and "plugin paligemma runs paligemma models" in err and len(err.splitlines()) == 1
