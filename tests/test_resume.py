"""A real `refbench run` killed with SIGKILL mid-run resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time


from refbench.synth import SynthSpec, generate

from conftest import bench_yaml

METHODS = """
  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, init_seed: 1}}
  - {id: random, scorer: {plugin: random}}
  - {id: both, combine: {plugin: mean_logits, of: [clip, random]}}
"""


def start(cfg, results):
    return subprocess.Popen([sys.executable, "-m", "refbench", "run", str(cfg), "--results", str(results), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_mid_run(proc: subprocess.Popen, results, answers: int, within_s: float):
    """SIGKILL the run's main process once its journal holds ``answers`` lines; the journal's path."""
    journal = None
    deadline = time.time() + within_s
    while time.time() < deadline and proc.poll() is None:
        runs = list(results.glob("*/predictions.jsonl"))
        if runs and len(runs[0].read_bytes().splitlines()) >= answers:
            journal = runs[0]
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    assert journal is not None, f"the journal did not reach {answers} answers within {within_s:.0f} s"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return journal


def test_kill_minus_nine_then_rerun_equals_uninterrupted(tmp_path):
    root = tmp_path / "data"
    generate(root, SynthSpec(seed=11, images={"testA": 40, "testB": 40}))
    cfg = tmp_path / "b.yaml"
    # small chunks: the journal grows in many small appends, so the kill lands mid-run
    cfg.write_text(bench_yaml(root, METHODS) + "runner: {batch_size: 4, workers: 1}\n")

    killed = tmp_path / "killed"
    proc = start(cfg, killed)
    # the main process only, as a crash would: its orphaned worker exits by itself within seconds (the unit test
    # test_a_forked_worker_does_not_keep_the_run_locked covers the lock it must not keep meanwhile)
    journal = kill_mid_run(proc, killed, answers=30, within_s=120)
    run_dir = journal.parent
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    kept = len(journal.read_text().splitlines())
    with journal.open("a") as f:  # as if the power went mid-write
        f.write('{"method": "clip", "sent_id": 12')

    again = start(cfg, killed)
    out, err = again.communicate(timeout=300)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the orphaned worker, if it still lives
    except ProcessLookupError:
        pass
    assert again.returncode == 0, err
    assert "resuming run" in err and "torn last line" in err
    resumed = json.loads((run_dir / "run.json").read_text())
    assert resumed["status"] == "complete" and kept - 1 <= resumed["sessions"][1]["kept"] <= kept

    clean = start(cfg, tmp_path / "clean")
    clean.communicate(timeout=300)
    (clean_dir,) = (tmp_path / "clean").iterdir()
    reference = json.loads((clean_dir / "run.json").read_text())
    assert resumed["metrics"] == reference["metrics"]
    rows = [json.loads(x) for x in journal.read_text().splitlines()]
    keys = [(r["method"], r["sent_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3 * reference["metrics"]["clip"]["n"]
    by_key = {(r["method"], r["sent_id"]): r["chosen"] for r in rows}
    ref_rows = [json.loads(x) for x in (clean_dir / "predictions.jsonl").read_text().splitlines()]
    assert all(by_key[(r["method"], r["sent_id"])] == r["chosen"] for r in ref_rows)
