"""A live-model run (tiny Grounding DINO and Qwen2.5-VL in the run's own process, batched) killed with
SIGKILL mid-run resumes to the uninterrupted run's answers, raw texts and metrics."""

from __future__ import annotations

import json
import os
import signal

from refbench.synth import SynthSpec, generate

from conftest import bench_yaml
from test_resume import kill_mid_run, start

from live_models.tiny.detectors import build_grounding_dino
from live_models.tiny.qwen import build_qwen2_5_vl


def test_kill_minus_nine_mid_run_then_rerun_equals_uninterrupted(tmp_path):
    root = tmp_path / "data"
    generate(root, SynthSpec(seed=5, images={"testA": 24}))
    dino, qwen = build_grounding_dino(tmp_path / "gd"), build_qwen2_5_vl(tmp_path / "qwen")
    methods = (f"  - {{id: dino, ground: {{plugin: grounding_dino, model: {dino}, batch_size: 4}}}}\n"
               f"  - {{id: qwen, ground: {{plugin: qwen2_5_vl, model: {qwen}, batch_size: 4, max_new_tokens: 8}}}}")
    cfg = tmp_path / "b.yaml"
    # chunks of 2 images and the grounders in this process (scoring: main): the journal grows in many
    # small appends while the models answer, so the kill lands between two of them
    cfg.write_text(bench_yaml(root, methods, splits="[testA]", proposer="null")
                   + "runner: {batch_size: 2, workers: 1, scoring: main}\n")

    killed = tmp_path / "killed"
    proc = start(cfg, killed)
    try:
        journal = kill_mid_run(proc, killed, answers=40, within_s=180)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the run's reader processes, if they still live
        except ProcessLookupError:
            pass
    run_dir = journal.parent
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    kept = len(journal.read_text().splitlines())

    again = start(cfg, killed)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming run" in err
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["status"] == "complete" and kept - 1 <= resumed["sessions"][1]["kept"] <= kept

    clean = start(cfg, tmp_path / "clean")
    _, err = clean.communicate(timeout=300)
    assert clean.returncode == 0, err
    (clean_dir,) = (tmp_path / "clean").iterdir()
    reference = json.loads((clean_dir / "run.json").read_text())
    assert resumed["metrics"] == reference["metrics"]  # each method's misses among them

    def answers(path):
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        return {(r["method"], r["sent_id"]): (r["box"], r["raw"], r.get("problem")) for r in rows}, len(rows)

    mine, count = answers(journal)
    theirs, _ = answers(clean_dir / "predictions.jsonl")
    assert count == len(mine) == len(theirs) == 2 * reference["metrics"]["dino"]["n"]  # each answer once
    assert mine == theirs
