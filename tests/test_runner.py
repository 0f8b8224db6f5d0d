import json
import math

import pytest


from refbench.config import load_config
from refbench.results import Store, read_record
from refbench.run import run_benchmark

from conftest import bench_yaml

BASELINES = """
  - {id: random, scorer: {plugin: random, seed: 0}}
  - {id: largest, scorer: {plugin: largest}}
  - {id: oracle, scorer: {plugin: oracle}}
  - {id: crop-random, prompter: {plugin: crop}, scorer: {plugin: random, seed: 1}}
  - {id: mix, combine: {plugin: mean_logits, of: [random, largest], weights: [1, 0]}}
"""


def test_baselines_anchor_the_table(synth_root, tmp_path, write_config):
    config = load_config(write_config(bench_yaml(synth_root, BASELINES, splits="[val, testA, testB]")))
    run = run_benchmark(config, Store(tmp_path / "results"))
    rec = read_record(run.dir)
    m = rec["metrics"]
    n = m["random"]["n"]
    chance, acc = m["random"]["chance"], m["random"]["accuracy"]
    # random lands within 3 standard errors of the expected chance accuracy
    se = 100 * math.sqrt((chance / 100) * (1 - chance / 100) / n)
    assert abs(acc - chance) < 3 * se + 1e-9
    assert m["oracle"]["accuracy"] == m["oracle"]["upper_bound"] == m["random"]["upper_bound"]
    assert m["oracle"]["upper_bound"] > 80  # detections mostly hit
    assert m["mix"]["accuracy"] == m["random"]["accuracy"]  # weights [1, 0]: the ensemble is its member
    assert set(m["random"]["splits"]) == {"val", "testA", "testB"}
    lines = run.journal.path.read_text().splitlines()
    assert len(lines) == 5 * n and len({(json.loads(x)["method"], json.loads(x)["sent_id"]) for x in lines}) == 5 * n
    # provenance
    assert rec["status"] == "complete" and rec["config_sha256"] == config.digest()
    assert rec["protocol"]["rule"] == "IoU(chosen, truth) > 0.5" and rec["protocol"]["iou_convention"] == "refer"
    assert {"refbench", "torch", "python"} <= set(rec["versions"])
    assert rec["data"]["dataset"]["refs_sha256"] and rec["data"]["proposer"]["sha256"]
    assert rec["config"]["methods"][0]["scorer"] == {"plugin": "random", "seed": 0}
    assert "sha" in rec["git"]


def test_gt_proposals_give_a_perfect_upper_bound(synth_root, tmp_path, write_config):
    config = load_config(write_config(bench_yaml(synth_root, BASELINES, proposer="{plugin: gt}")))
    m = read_record(run_benchmark(config, Store(tmp_path / "r")).dir)["metrics"]
    assert m["oracle"]["accuracy"] == 100.0


def interrupted(synth_root, tmp_path, write_config):
    """A config, the metrics of an uninterrupted run, and a second run marked as interrupted (its
    journal's lines, for the test to damage)."""
    config = load_config(write_config(bench_yaml(synth_root, BASELINES)))
    full = read_record(run_benchmark(config, Store(tmp_path / "a")).dir)["metrics"]
    store = Store(tmp_path / "b")
    run = run_benchmark(config, store)
    lines = run.journal.path.read_bytes().splitlines(keepends=True)
    rec = json.loads((run.dir / "run.json").read_text())
    rec.update(status="running")
    rec.pop("metrics")
    (run.dir / "run.json").write_text(json.dumps(rec))
    return config, full, store, run, lines


def test_torn_journal_line_is_dropped_and_the_run_resumed(synth_root, tmp_path, write_config):
    # a crash: the record says running, the journal ends in a half-written line
    config, full, store, run, lines = interrupted(synth_root, tmp_path, write_config)
    run.journal.path.write_bytes(b"".join(lines[: len(lines) // 3]) + lines[len(lines) // 3][:17])
    resumed = run_benchmark(config, store)
    assert resumed.dir == run.dir
    again = read_record(resumed.dir)
    assert again["metrics"] == full
    assert len(again["sessions"]) == 2 and again["sessions"][1]["kept"] == len(lines) // 3
    assert len(resumed.journal.path.read_text().splitlines()) == len(lines)
    # a complete run is never reopened: the next run is a new folder
    third = run_benchmark(config, store)
    assert third.dir != run.dir and len(store.run_dirs()) == 2


def test_journal_is_fsynced_at_most_once_a_second_and_before_the_run_completes(tmp_path, monkeypatch):
    import os

    import refbench.journal as journal_module

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_module.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    store = Store(tmp_path)
    run = store.create("t", {"config_sha256": "0" * 64, "status": "running"})
    journal = str(run.journal.path)
    synced.clear()
    run.journal.sync_interval = 3600
    run.journal.append([{"method": "m", "sent_id": 1}])
    run.journal.append([{"method": "m", "sent_id": 2}])
    assert synced == [] and len(run.journal.path.read_text().splitlines()) == 2  # written, not yet flushed
    run.journal.sync()
    assert synced == [journal]
    run.journal.sync()  # nothing new: no flush
    run.journal.sync_interval = 0
    run.journal.append([{"method": "m", "sent_id": 3}])
    assert synced == [journal, journal]
    run.journal.sync_interval = 3600
    run.journal.append([{"method": "m", "sent_id": 4}])
    run.close()  # closing flushes the rest
    assert synced == [journal] * 3 and [r["sent_id"] for r in run.journal.records()] == [1, 2, 3, 4]


def test_placement_scores_in_workers_only_on_the_cpu(monkeypatch):
    import os

    from refbench.builtins.baselines import LargestScorer
    from refbench.config import RunnerConfig
    from refbench.errors import RefbenchError
    from refbench.run import Method, placement

    cpu = [Method("a", scorer=LargestScorer())]
    class OnGpu(LargestScorer):
        @property
        def on_gpu(self) -> bool:
            return True

    gpu_scorer = OnGpu()
    gpu = cpu + [Method("g", scorer=gpu_scorer)]
    import torch

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert placement(RunnerConfig(), cpu) == (8, True)  # auto: one single-threaded worker per CPU
    assert placement(RunnerConfig(workers=3), cpu) == (3, True)
    assert placement(RunnerConfig(), gpu) == (6, False)  # a GPU model: workers prepare, the main process scores
    assert placement(RunnerConfig(scoring="main"), cpu) == (6, False)
    assert placement(RunnerConfig(workers=0), cpu) == (0, False)  # everything in the main process
    with pytest.raises(RefbenchError, match="method 'g' runs on a GPU"):
        placement(RunnerConfig(scoring="workers"), gpu)
    monkeypatch.setattr(os, "cpu_count", lambda: 32)  # one thread a worker would leave cores idle: the main process scores
    assert placement(RunnerConfig(), cpu) == (8, False)
    assert placement(RunnerConfig(scoring="workers", workers=32), cpu) == (32, True)
    assert placement(RunnerConfig(scoring="workers"), cpu) == (8, True)  # auto: at most 8 model copies
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)  # CUDA in use, declared or not: never forked
    assert placement(RunnerConfig(), cpu) == (2, False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert placement(RunnerConfig(), cpu) == (2, True)
    assert placement(RunnerConfig(scoring="main"), cpu) == (0, False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert placement(RunnerConfig(), cpu) == (0, False)


def test_a_forked_worker_does_not_keep_the_run_locked(tmp_path):
    """Workers are forked while the run's lock is held; one that outlives the main process
    (kill -9) must not keep the run locked, or rerunning would start a new run."""
    import os
    import time

    from refbench.results import _try_lock

    store = Store(tmp_path)
    run = store.create("t", {"config_sha256": "0" * 64, "status": "running"})
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: lives on past the main process's lock
        os.write(started, b"x")  # the fork handlers have run
        time.sleep(3)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        run.close()  # as the main process dying releases its own lock
        again = _try_lock(run.dir)
        assert again is not None, "the forked child still holds the run's lock"
        again.close()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_corrupt_journal_lines_are_reported_taken_out_and_computed_again(synth_root, tmp_path, write_config):
    config, full, store, run, lines = interrupted(synth_root, tmp_path, write_config)
    damaged = list(lines)
    damaged[4] = b'{"method": "random", "sent_id": 1\n'  # cut JSON in the middle of the file
    damaged[9] = b"\x00\x00garbage\n"
    damaged.insert(20, lines[2])  # a duplicate of an earlier line
    run.journal.path.write_bytes(b"".join(damaged))
    said = []
    resumed = run_benchmark(config, store, announce=said.append)
    assert resumed.dir == run.dir
    assert any("2 corrupt lines (5, 10) and 1 duplicate line (21)" in s for s in said), said
    again = read_record(resumed.dir)
    assert again["metrics"] == full
    assert again["sessions"][1]["journal_repair"] == {"torn_bytes": 0, "corrupt_lines": [5, 10], "duplicate_lines": [21]}
    rows = [json.loads(line) for line in resumed.journal.path.read_text().splitlines()]  # every line parses
    keys = [(r["method"], r["sent_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(lines)
    assert (run.dir / "predictions.rejected").read_bytes() == damaged[4] + damaged[9] + lines[2]
