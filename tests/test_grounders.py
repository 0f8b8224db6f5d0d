"""Grounders (a box per phrase) and the predictions grounder: declared formats, counted misses, bad files."""

import json

import numpy as np
import pytest

from refbench import Answer, Box
from refbench.cli import main
from refbench.synth import SynthSpec, generate

from conftest import REPO, bench_yaml, committed_run

CLIP = "  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn}}"


def ground_yaml(root, spec: str, extra_methods: str = "") -> str:
    text = bench_yaml(root, f"  - id: file\n    ground: {spec}\n{extra_methods}", splits="[testA]")
    return text


def sizes(root) -> dict[int, tuple[int, int]]:
    images = json.loads((root / "synthref" / "instances.json").read_text())["images"]
    return {i["id"]: (i["width"], i["height"]) for i in images}


def journal(results) -> list[dict]:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture
def clip_run(synth_root, tmp_path, write_config):
    """A tiny CLIP's choices on testA: the source a predictions file is made from."""
    results = tmp_path / "source"
    assert main(["run", str(write_config(bench_yaml(synth_root, CLIP, splits="[testA]"), "src.yaml")), "--results", str(results), "-q"]) == 0
    return journal(results)


@pytest.mark.parametrize("declared", [
    {"input": "box", "box_format": "xywh", "scale": "pixels"},
    {"input": "box", "box_format": "xyxy", "scale": "normalised"},
    {"input": "text", "box_format": "xyxy", "scale": "0-1000"},
    {"input": "box", "box_format": "xyxy", "scale": "pixels", "relative_to": "letterboxed", "input_size": [300, 200]},
    {"input": "text", "box_format": "xywh", "scale": "normalised", "relative_to": "resized", "input_size": [64, 32]},
])
def test_declared_formats_reproduce_the_source_run_exactly(declared, clip_run, synth_root, tmp_path, write_config):
    size = sizes(synth_root)
    lines = []
    for r in clip_run:
        (w, h), (x, y, bw, bh) = size[r["image_id"]], r["box"]
        box = [x, y, x + bw, y + bh] if declared["box_format"] == "xyxy" else [x, y, bw, bh]
        if declared.get("relative_to") == "letterboxed":  # centred in a 300x200 input
            s = min(300 / w, 200 / h)
            dx, dy = (300 - w * s) / 2, (200 - h * s) / 2
            box = [v * s + (dx if i % 2 == 0 else dy) if declared["box_format"] == "xyxy" or i < 2 else v * s for i, v in enumerate(box)]
        frame = declared.get("input_size") or (w, h)
        if declared.get("relative_to") == "resized":
            box = [v * (frame[0] / w if i % 2 == 0 else frame[1] / h) for i, v in enumerate(box)]
        unit = {"pixels": (1, 1), "normalised": frame, "0-1000": (frame[0] / 1000, frame[1] / 1000)}[declared["scale"]]
        box = [v / unit[i % 2] for i, v in enumerate(box)]
        value = box if declared["input"] == "box" else f"sure: <box>[{', '.join(f'{v:.9f}' for v in box)}]</box>"
        lines.append(json.dumps({"sent_id": r["sent_id"], declared["input"]: value}))
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines))
    spec = json.dumps({"plugin": "predictions", "path": str(path), **declared})
    assert main(["run", str(write_config(ground_yaml(synth_root, spec))), "--results", str(tmp_path / "r"), "-q"]) == 0
    got = {r["sent_id"]: r for r in journal(tmp_path / "r")}
    assert {s: r["hit"] for s, r in got.items()} == {r["sent_id"]: r["hit"] for r in clip_run}
    if declared["input"] == "text":  # the model's text is kept beside its record, for audit
        assert all(r["raw"].startswith("sure: <box>[") for r in got.values())
    else:
        assert not any("raw" in r for r in got.values())
    assert all(r["oracle"] is None and r["chance"] is None and r["chosen"] is None for r in got.values())
    record = json.loads(next((tmp_path / "r").iterdir()).joinpath("run.json").read_text())
    assert record["metrics"]["file"]["upper_bound"] is None and record["methods"]["file"]["declared"]["scale"] == declared["scale"]


def test_missing_unparsable_and_bad_answers_are_counted_reported_and_missed(clip_run, synth_root, tmp_path, capsys, write_config):
    answers = {r["sent_id"]: [v / 128 for v in r["box"]] for r in clip_run}  # SynthRef images are 128 x 128
    ids = sorted(answers)
    answers[ids[0]] = [0.5, 0.5, 1.5, 0.2]  # a normalised value outside [0, 1]
    answers[ids[1]] = "no box here"
    answers[ids[2]] = [0.1, 0.1, 0.0, 0.05]  # degenerate: no width
    del answers[ids[3]]
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({str(k): v for k, v in answers.items()}))
    spec = json.dumps({"plugin": "predictions", "path": str(path), "input": "box", "box_format": "xywh", "scale": "normalised"})
    assert main(["run", str(write_config(ground_yaml(synth_root, spec))), "--results", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "method file: answers scored as misses: 1 invalid box, 1 missing, 1 outside unit range, 1 unparsable" in err
    got = {r["sent_id"]: r for r in journal(tmp_path / "r")}
    (run_dir,) = [p for p in (tmp_path / "r").iterdir() if p.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["metrics"]["file"]["misses"] == {
        "invalid_box": 1, "missing": 1, "outside_unit_range": 1, "unparsable": 1}
    assert len(got) == len(clip_run) and not any(got[s]["hit"] for s in ids[:4])
    assert [got[s].get("problem") for s in ids[:4]] == ["outside_unit_range", "unparsable", "invalid_box", "missing"]
    assert all("problem" not in got[s] for s in ids[4:])
    # an extra sent_id is an error, before any work
    answers[10**9] = [0, 0, 0.1, 0.1]
    path.write_text(json.dumps({str(k): v for k, v in answers.items()}))
    assert main(["validate", str(write_config(ground_yaml(synth_root, spec), "v.yaml"))]) == 2
    assert "1 sent_id(s) not in the benchmark, e.g. [1000000000]" in capsys.readouterr().err


def test_bad_predictions_files_are_one_line(synth_root, tmp_path, capsys, write_config):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"sent_id": 1, "box": [0, 0, 1, 1]}\n{"sent_id": 2, "box": [0, 0\n')
    spec = {"plugin": "predictions", "path": str(path), "input": "box", "box_format": "xywh", "scale": "pixels"}
    cases = [({}, "line 2 is not JSON"), ({"pattern": "(\\d+)"}, "pattern has 1 groups; it needs 4"),
             ({"relative_to": "resized"}, "input_size is needed exactly when"), ({"box_format": "cxcywh"}, "box_format"),
             ({"path": str(tmp_path / "none.jsonl")}, "predictions file not found")]
    for change, words in cases:
        cfg = write_config(ground_yaml(synth_root, json.dumps({**spec, **change})))
        assert main(["run", str(cfg), "--results", str(tmp_path / "r"), "-q"]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    del spec["scale"]
    assert main(["validate", str(write_config(ground_yaml(synth_root, json.dumps(spec))))]) == 2
    assert "scale: Field required" in capsys.readouterr().err  # the scale is declared, never guessed


@pytest.fixture(scope="module")
def default_synthref(tmp_path_factory):
    root = tmp_path_factory.mktemp("default") / "synthref"
    generate(root, SynthSpec())
    return root


def test_the_shipped_example_reproduces_its_source_run(default_synthref, tmp_path):
    """examples/predictions/ holds the committed clip-rn run's boxes as 0-1000 text; read back, they
    give that run's accuracy exactly."""
    cfg = (REPO / "benchmarks" / "synthref_testA_predictions.yaml").read_text()
    cfg = cfg.replace("data/synthref", str(default_synthref)).replace("examples/", f"{REPO}/examples/")
    path = tmp_path / "b.yaml"
    path.write_text(cfg)
    assert main(["run", str(path), "--results", str(tmp_path / "r"), "-q"]) == 0
    record = json.loads(next((tmp_path / "r").iterdir()).joinpath("run.json").read_text())
    source = json.loads((committed_run("20261127-150632-synthref_testA-7c119f") / "run.json").read_text())
    assert record["metrics"]["clip-rn-from-file"]["accuracy"] == source["metrics"]["clip-rn"]["accuracy"]
    assert ({t: v["accuracy"] for t, v in record["metrics"]["clip-rn-from-file"]["phrase_types"].items()}
            == {t: v["accuracy"] for t, v in source["metrics"]["clip-rn"]["phrase_types"].items()})


def test_a_full_predictions_file_serves_a_limited_or_cleaned_benchmark(clip_run, synth_root, tmp_path, capsys, write_config):
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps({"sent_id": r["sent_id"], "box": r["box"]}) for r in clip_run))
    spec = json.dumps({"plugin": "predictions", "path": str(path), "input": "box", "box_format": "xywh", "scale": "pixels"})
    limited = ground_yaml(synth_root, spec) + "runner: {limit: 3}\n"
    assert main(["run", str(write_config(limited)), "--results", str(tmp_path / "r"), "-q"]) == 0
    excluded = tmp_path / "drop.txt"
    excluded.write_text(str(clip_run[0]["sent_id"]))  # one sent_id: a bare JSON number
    cleaned = ground_yaml(synth_root, spec).replace("images: ", f"exclude: [{excluded}], images: ", 1)
    assert main(["run", str(write_config(cleaned, "c.yaml")), "--results", str(tmp_path / "c"), "-q"]) == 0
    assert len(journal(tmp_path / "c")) == len(clip_run) - 1
    # a combinator cannot mix a grounder's boxes into logits
    mixed = ground_yaml(synth_root, spec, "  - {id: largest, scorer: {plugin: largest}}\n"
                                          "  - {id: mix, combine: {plugin: mean_logits, of: [largest, file]}}")
    assert main(["validate", str(write_config(mixed, "m.yaml"))]) == 2
    assert "combines file, which predict boxes, not logits" in capsys.readouterr().err


@pytest.mark.parametrize("relative_to, size, pad", [("resized", (64, 32), "centre"), ("letterboxed", (100, 100), "centre"),
                                                    ("letterboxed", (100, 100), "top_left"), ("original", None, "centre")])
def test_coordinates_are_mapped_back_to_a_non_square_image(relative_to, size, pad, tmp_path):
    """A 200 x 100 image: a width/height swap or a wrong letterbox offset would move the box."""
    from pathlib import Path

    from refbench import Box, ImageItem, Ref
    from refbench.builtins.predictions import PredictionsGrounder

    truth = Box(40, 20, 60, 30)
    item = ImageItem(1, Path("x.jpg"), 200, 100, (Ref(7, 1, 1, "thing", truth, "testA"),))
    x, y, w, h = truth.xywh
    if relative_to == "resized":
        sx, sy = size[0] / 200, size[1] / 100
        box = [x * sx, y * sy, w * sx, h * sy]
    elif relative_to == "letterboxed":
        s = min(size[0] / 200, size[1] / 100)  # 0.5: the image fills 100 x 50 of the 100 x 100 input
        dy = (size[1] - 100 * s) / 2 if pad == "centre" else 0.0
        box = [x * s, y * s + dy, w * s, h * s]
    else:
        box = [x, y, w, h]
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"sent_id": 7, "box": box}]))
    options = PredictionsGrounder.Options(path=path, input="box", box_format="xywh", scale="pixels", relative_to=relative_to,
                                          input_size=size, letterbox=pad)
    grounder = PredictionsGrounder(options)
    assert grounder.expect([item]) == []
    (got,) = grounder.ground(None, item)
    assert got.box.xywh == pytest.approx(truth.xywh)


def test_every_miss_has_a_reason_even_without_one_given():
    from refbench.run.batch import grounded

    boxes, notes = grounded([None, Answer(None, "no box"), Answer(None, "[9]", "unparsable"), Box(1, 2, 3, 4)])
    assert [n.get("problem") for n in notes] == ["no_answer", "no_answer", "unparsable", None]
    assert notes[1]["raw"] == "no box" and np.isnan(boxes[:3]).all() and boxes[3].tolist() == [1, 2, 3, 4]
