import json
from pathlib import Path
import pickle
import shutil
import subprocess
import sys

import pytest

from refbench.cli import main

from conftest import bench_yaml

RANDOM = "  - {id: random, scorer: {plugin: random}}\n  - {id: largest, scorer: {plugin: largest}}"
CLIP = "  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn}}"


def error_lines(capsys) -> list[str]:
    """The problems printed (one ``error:`` line each), and nothing else said about them."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert lines, err
    return lines


def error_line(capsys) -> str:
    (line,) = error_lines(capsys)
    return line


@pytest.fixture
def data_copy(synth_root, tmp_path):
    """A private copy of the tiny data set that a test may damage."""
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def run(argv, tmp_path):
    return main(["run", *map(str, argv), "--results", str(tmp_path / "results"), "--quiet"])


@pytest.mark.parametrize("text, words", [
    ("name: x\nmethods: [\n", "broken YAML at line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("name: x\ndataset: {plugin: refer}\nproposer: {plugin: gt}\nmethods: []\nspeed: 11\n", "speed: unknown field"),
])
def test_bad_yaml_is_one_line(tmp_path, capsys, text, words):
    path = tmp_path / "b.yaml"
    path.write_text(text)
    assert run([path], tmp_path) == 2
    assert words in error_line(capsys)


def test_unknown_plugin_and_option(synth_root, tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(synth_root, "  - {id: r, scorer: {plugin: rando}}"))
    assert run([cfg], tmp_path) == 2
    line = error_line(capsys)
    assert "unknown scorer 'rando'" in line and "did you mean 'random'" in line
    cfg = write_config(bench_yaml(synth_root, "  - {id: r, scorer: {plugin: random, sead: 3}}"))
    assert run([cfg], tmp_path) == 2
    line = error_line(capsys)
    assert "sead: unknown option" in line and "valid options: seed" in line


def test_missing_data_says_how_to_get_it(tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(tmp_path / "nowhere", RANDOM))
    assert run([cfg], tmp_path) == 2
    refs, instances, images, dets = error_lines(capsys)  # every missing file at once
    assert "refs(unc).p is missing" in refs and "refbench synth" in refs and "instances.json is missing" in instances
    assert "image folder not found" in images and "detections file not found" in dets


def test_missing_image_keeps_earlier_work_and_resumes(data_copy, tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(data_copy, CLIP, splits="[testA]") + "runner: {batch_size: 8, workers: 0}\n")
    refs = [r for r in pickle.load(open(data_copy / "synthref" / "refs(unc).p", "rb")) if r["split"] == "testA"]
    last_image = max(r["image_id"] for r in refs)
    victim = data_copy / "images" / f"synthref_{last_image:012d}.jpg"
    saved = victim.read_bytes()
    victim.unlink()
    assert run([cfg], tmp_path) == 2
    line = error_line(capsys)
    assert f"image {last_image} not found" in line and "dataset.images" in line
    assert run([cfg, "--workers", "2", "--scoring", "workers"], tmp_path) == 2  # raised in a worker: the same line
    assert f"image {last_image} not found" in error_line(capsys)
    (run_dir,) = (tmp_path / "results").iterdir()
    kept = len((run_dir / "predictions.jsonl").read_text().splitlines())
    assert kept > 0 and json.loads((run_dir / "run.json").read_text())["status"] == "running"
    victim.write_bytes(b"not a jpeg")
    assert run([cfg], tmp_path) == 2
    assert "unreadable" in error_line(capsys)
    victim.write_bytes(saved)
    assert run([cfg], tmp_path) == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "complete" and record["sessions"][-1]["kept"] == kept


def test_a_chunk_is_prepared_together_and_a_bad_image_keeps_the_ones_before_it(data_copy, write_config, monkeypatch):
    """The runner prepares a chunk's images with one ``prepare_many`` call, whose windows share a few
    canvases: the chunk's views are the images' own, one by one. An unreadable image, or a scorer's
    error, in the middle of a chunk gives a chunk of the images before it, then the error, as
    preparing them one at a time does; an error of the joint call alone keeps every image."""
    import torch

    from refbench import RefbenchError
    from refbench.config import load_config
    from refbench.run import build
    from refbench.run.prepare import build_chunks, load_image

    from clip_shaded import ClipScorer, GreenShade

    cfg = write_config(bench_yaml(data_copy, CLIP, splits="[testA]") + "runner: {workers: 0}\n")
    bench = build(load_config(cfg))
    (method,) = bench.methods
    items = list(bench.dataset)[:12]
    boxes = {item.image_id: bench.proposer.propose(item) for item in items}
    alone = [method.scorer.prepare(load_image(item), boxes[item.image_id], method.prompter) for item in items]
    calls, draws = [], []
    many, one, draw = ClipScorer.prepare_many, ClipScorer.prepare, GreenShade.draw
    monkeypatch.setattr(ClipScorer, "prepare_many", lambda self, im, b, p: calls.append(len(im)) or many(self, im, b, p))
    monkeypatch.setattr(GreenShade, "draw", lambda self, canvas: draws.append(len(canvas.boxes)) or draw(self, canvas))
    (chunk,) = build_chunks(items, boxes, bench.methods, 10_000)
    assert [p.item.image_id for p in chunk.images] == [item.image_id for item in items] and chunk.error is None
    assert torch.equal(chunk.views["clip"], torch.cat(alone))
    assert calls == [12] and len(draws) < 3 and sum(draws) == sum(map(len, boxes.values()))  # one call, a canvas or two

    victim = boxes[items[7].image_id]  # the scorer refuses this image's boxes, together and alone
    def refusing(real):
        def prepare(self, image, b, prompter):
            if b is victim or (isinstance(b, list) and any(x is victim for x in b)):
                raise RefbenchError("scorer refuses image 7", "fix it")
            return real(self, image, b, prompter)
        return prepare
    monkeypatch.setattr(ClipScorer, "prepare_many", refusing(many))
    monkeypatch.setattr(ClipScorer, "prepare", refusing(one))
    before, failed = build_chunks(items, boxes, bench.methods, 10_000)
    assert [p.item.image_id for p in before.images] == [item.image_id for item in items[:7]]
    assert torch.equal(before.views["clip"], torch.cat(alone[:7])) and "refuses image 7" in str(failed.error)
    monkeypatch.setattr(ClipScorer, "prepare", one)  # only the joint call refuses: every image, one at a time
    (kept,) = build_chunks(items, boxes, bench.methods, 10_000)
    assert kept.error is None and torch.equal(kept.views["clip"], torch.cat(alone))

    # a chunk of many pixels is prepared in groups: here of 4 images (SynthRef's are 128 x 128)
    import refbench.run.prepare

    monkeypatch.setattr(refbench.run.prepare, "PREPARE_PIXELS", 4 * 128 * 128)
    monkeypatch.setattr(ClipScorer, "prepare_many", lambda self, im, b, p: calls.append(len(im)) or many(self, im, b, p))
    calls.clear()
    (chunk,) = build_chunks(items, boxes, bench.methods, 10_000)
    assert calls == [4, 4, 4] and torch.equal(chunk.views["clip"], torch.cat(alone))
    Path(items[5].path).write_bytes(b"not a jpeg")  # in the second group
    before, failed = build_chunks(items, boxes, bench.methods, 10_000)
    assert [p.item.image_id for p in before.images] == [item.image_id for item in items[:5]]
    assert torch.equal(before.views["clip"], torch.cat(alone[:5]))
    assert not failed.images and "unreadable" in str(failed.error)


def test_degenerate_and_empty_proposals(data_copy, tmp_path, capsys, write_config):
    dets_path = data_copy / "dets" / "synthref_unc_dets.json"
    dets = json.loads(dets_path.read_text())
    refs = pickle.load(open(data_copy / "synthref" / "refs(unc).p", "rb"))
    image = next(r["image_id"] for r in refs if r["split"] == "testA")
    bad = [[5, 5, 0, 8], [float("nan"), 1, 2, 3], [400, 400, 50, 50]]  # degenerate, non-finite, off the image
    dets += [{"det_id": 10**6 + i, "box": b, "image_id": image, "category_id": 1, "category_name": "circle", "score": 0.9}
             for i, b in enumerate(bad)]
    dets_path.write_text(json.dumps(dets))
    cfg = write_config(bench_yaml(data_copy, RANDOM))
    assert run([cfg], tmp_path) == 2  # stopped before any work: no run folder
    line = error_line(capsys)
    assert "3 invalid proposal boxes in 1 image" in line and f"image {image} box" in line and "[5.0, 5.0, 0.0, 8.0]" in line
    assert "degenerate" in line and "non-finite" in line and "outside" in line and "proposer.invalid: drop" in line
    assert not (tmp_path / "results").exists()
    assert main(["validate", str(cfg)]) == 2 and "3 invalid proposal boxes" in error_line(capsys)
    # drop: the run goes on without them, counts them per image in run.json, and says so once
    dropping = write_config(bench_yaml(data_copy, RANDOM, proposer=f"{{plugin: detections, path: {dets_path}, invalid: drop}}"), "d.yaml")
    assert main(["validate", str(dropping)]) == 0 and "would drop 3 invalid proposal boxes in 1 image;" in capsys.readouterr().out
    assert run([dropping], tmp_path) == 0
    assert capsys.readouterr().err.count("dropped 3 invalid proposal boxes in 1 image ") == 1
    (run_dir,) = (tmp_path / "results").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["proposals"]["dropped"] == 3 and record["proposals"]["dropped_per_image"] == {str(image): 3}
    assert record["proposals"]["out_of_image_tolerance_px"] == 1.0
    shutil.rmtree(tmp_path / "results")
    dets_path.write_text(json.dumps([d for d in dets if d["image_id"] != image]))
    assert run([cfg, "--new"], tmp_path) == 2
    assert f"image {image} " in error_line(capsys)
    # a worker that prepares (judging then runs in a background thread), or that scores: the error still ends the run, once
    for where in (["--scoring", "main"], ["--scoring", "workers"]):
        assert run([cfg, "--new", "--workers", "1", *where], tmp_path) == 2
        line = error_line(capsys)
        assert f"1 image without candidate boxes: image {image} " in line and "empty_proposals: miss" in line
    cfg = write_config(bench_yaml(data_copy, RANDOM, extra="protocol: {empty_proposals: miss}"), "miss.yaml")
    assert run([cfg], tmp_path) == 0


def test_hostile_pickle_through_the_cli(data_copy, tmp_path, capsys, write_config):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (data_copy / "synthref" / "refs(unc).p").write_bytes(pickle.dumps([Evil()]))
    assert run([write_config(bench_yaml(data_copy, RANDOM))], tmp_path) == 2
    captured = error_line(capsys)
    assert "unsafe or corrupt refs pickle" in captured and "builtins.print" in captured


def test_leaderboard_formats_and_corrupt_runs(synth_root, tmp_path, capsys, write_config):
    assert run([write_config(bench_yaml(synth_root, RANDOM))], tmp_path) == 0
    capsys.readouterr()
    bad = tmp_path / "results" / "20990101-000000-broken-000000"
    bad.mkdir()
    (bad / "run.json").write_text("{ not json")
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert "skipping 20990101-000000-broken-000000" in out.err
    runs = [r for r in rows if r["source"] == "run"]
    assert {r["method"] for r in runs} == {"random", "largest"}
    assert all(r["dataset"] == "synthref/unc" and r["n"] > 0 for r in runs)
    assert any(r["method"] == "MAttNet" and r["splits"]["testA"] == 81.14 for r in rows)
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "csv", "--benchmark", "tiny"]) == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0].startswith("dataset,benchmark,method,metric,testA,testB,overall")
    assert "MAttNet" not in csv_text  # filtered to the synthref data set
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "markdown"]) == 0
    assert "### refcoco/unc: accuracy (%)" in capsys.readouterr().out
    # a run counted with another rule gets a table of its own, never mixed with the others
    other = write_config(bench_yaml(synth_root, RANDOM, extra="protocol: {comparison: '>='}"), "other.yaml")
    assert run([other], tmp_path) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "markdown", "--benchmark", "tiny"]) == 0
    titles = [x for x in capsys.readouterr().out.splitlines() if x.startswith("### ")]
    assert titles == ["### synthref/unc: accuracy (%), IoU(chosen, truth) > 0.5",
                      "### synthref/unc: accuracy (%), IoU(chosen, truth) >= 0.5"]
    assert main(["leaderboard", "--results", str(tmp_path / "results")]) == 0
    table = capsys.readouterr().out
    assert "synthref/unc: accuracy (%)" in table and "random" in table


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "b.yaml"
    bad.write_text("name: [unclosed\n")
    proc = subprocess.run([sys.executable, "-m", "refbench", "run", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "broken YAML" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "refbench", "--debug", "run", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_runner_options_are_validated(synth_root, tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(synth_root, RANDOM))
    assert run([cfg, "--limit", "-1"], tmp_path) == 2
    assert "runner.limit: Input should be greater than or equal to 1" in error_line(capsys)
    assert run([cfg, "--workers", "-2"], tmp_path) == 2
    assert "runner.workers" in error_line(capsys)
    assert not (tmp_path / "results").exists()


def test_synth_bad_options_are_one_line(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--objects", "2", "3", "-q"]) == 2
    assert "cannot generate SynthRef" in error_line(capsys)
    assert main(["synth", str(tmp_path / "s"), "--train", "2", "--val", "0", "--testA", "1", "--testB", "0", "-q"]) == 0
    capsys.readouterr()
    assert main(["synth", str(tmp_path / "s"), "--train", "3", "--val", "0", "--testA", "1", "--testB", "0", "-q"]) == 2
    assert "pick another folder" in error_line(capsys)


def test_changed_inputs_are_not_resumed(data_copy, tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(data_copy, RANDOM))
    assert run([cfg], tmp_path) == 0
    (run_dir,) = (tmp_path / "results").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    record["status"] = "running"  # as if it had been interrupted
    (run_dir / "run.json").write_text(json.dumps(record))
    dets = data_copy / "dets" / "synthref_unc_dets.json"
    dets.write_text(json.dumps(json.loads(dets.read_text())[:-1]))  # the proposals change meanwhile
    assert main(["run", str(cfg), "--results", str(tmp_path / "results"), "--resume", run_dir.name, "-q"]) == 2
    assert "data or proposals changed since run" in error_line(capsys)
    assert run([cfg], tmp_path) == 0
    assert f"not resuming run {run_dir.name}" in capsys.readouterr().err
    assert len(list((tmp_path / "results").iterdir())) == 2


def test_malformed_refs_entries_are_one_line(data_copy, tmp_path, capsys, write_config):
    refs_path = data_copy / "synthref" / "refs(unc).p"
    refs = pickle.load(open(refs_path, "rb"))
    del refs[0]["sentences"][0]["sent_id"]
    refs_path.write_bytes(pickle.dumps(refs))
    assert run([write_config(bench_yaml(data_copy, RANDOM, splits="[train, val, testA, testB]"))], tmp_path) == 2
    assert "malformed (KeyError: 'sent_id')" in error_line(capsys)


def test_unknown_split_names_the_splits_the_refs_file_has(synth_root, tmp_path, capsys, write_config):
    assert run([write_config(bench_yaml(synth_root, RANDOM, splits="[testC]"))], tmp_path) == 2
    line = error_line(capsys)
    assert "no ref in split 'testC'" in line and "its splits are: testA, testB, train, val" in line
    assert run([write_config(bench_yaml(synth_root, RANDOM, splits="[tset]"), "b.yaml")], tmp_path) == 2
    assert "unknown split 'tset'" in error_line(capsys)


def test_a_sentence_without_text_names_its_ids(data_copy, tmp_path, capsys, write_config):
    refs_path = data_copy / "synthref" / "refs(unc).p"
    refs = pickle.load(open(refs_path, "rb"))
    victim = next(r for r in refs if r["split"] == "testA")
    sent = victim["sentences"][0]
    sent["sent"] = "  "
    refs_path.write_bytes(pickle.dumps(refs))
    assert run([write_config(bench_yaml(data_copy, RANDOM, splits="[testA]"))], tmp_path) == 2
    line = error_line(capsys)
    assert f"ref {victim['ref_id']} sentence {sent['sent_id']} has no 'sent' text" in line and "dataset.text: raw" in line
    del sent["sent"], sent["raw"]
    refs_path.write_bytes(pickle.dumps(refs))
    assert run([write_config(bench_yaml(data_copy, RANDOM, splits="[testA]"))], tmp_path) == 2
    assert "has no 'sent' text; fix or regenerate the refs file" in error_line(capsys)


def test_validate_reports_every_problem_at_once(synth_root, tmp_path, capsys, write_config):
    methods = ("  - {id: a, prompter: {plugin: green_shade}, scorer: {plugin: clip, precision: bf16, device: cpu, "
               "checkpoint: nowhere.safetensors}}\n  - {id: b, scorer: {plugin: random}}")
    cfg = write_config(bench_yaml(synth_root, methods + "\n  - {id: c, scorer: {plugin: largst}}", splits="[testA, testZ, testC]"))
    assert main(["validate", str(cfg)]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 5, lines
    assert any("unknown scorer 'largst'" in x and "did you mean 'largest'" in x for x in lines)
    assert any("unknown split 'testZ'" in x for x in lines) and any("no ref in split 'testC'" in x for x in lines)
    assert any("methods[0] (a).scorer: precision bf16 needs a GPU" in x for x in lines)
    assert any("methods[0] (a).scorer: checkpoint not found: nowhere.safetensors" in x for x in lines)
    cfg = write_config(bench_yaml(synth_root, "  - {id: a, prompter: {plugin: crop}, scorer: {plugin: clip, arch: synth-rn, "
                                              "views: resized}}"), "resized.yaml")
    assert main(["validate", str(cfg)]) == 2  # found when the method is built, before any run folder exists
    assert "methods[0] (a): views: resized, but prompter CropPrompter draws only on the full image" in error_line(capsys)
    cfg = write_config(bench_yaml(synth_root, "  - {id: b, scorer: {plugin: random}}"), "ok.yaml")
    assert main(["validate", str(cfg)]) == 0
    assert "ok (24 images" in capsys.readouterr().out


def test_a_mistyped_data_set_option_is_one_line_in_validate_and_run(synth_root, tmp_path, capsys, write_config):
    cfg = write_config(bench_yaml(synth_root, RANDOM).replace("split_by: unc,", "split_by: unc, txt: raw,"))
    for argv in (["validate", str(cfg)], ["run", str(cfg), "--results", str(tmp_path / "r"), "-q"]):
        assert main(argv) == 2
        line = error_line(capsys)
        assert "dataset (dataset 'refer'): txt: unknown option" in line and "valid options:" in line
