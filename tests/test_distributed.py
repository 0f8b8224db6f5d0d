"""`refbench run` under torchrun (gloo, CPU): the same metrics and predictions as one process, and a
rerun after a killed rank, a killed merge or a mismatched config."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refbench.config import load_config
from refbench.errors import RefbenchError
from refbench.results import Store, read_record
from refbench.run import run_benchmark
from refbench.run.distributed import agreement
from refbench.run.world import shard
from refbench.run.merge import merge, rank_files
from refbench.synth import SynthSpec, generate

from conftest import REPO, bench_yaml

# the shipped checkpoint: an untrained CLIP's near-ties flip with batch composition, which differs between a
# shard and the whole, as between a resumed run and an uninterrupted one
METHODS = f"""
  - {{id: random, scorer: {{plugin: random, seed: 0}}}}
  - {{id: largest, scorer: {{plugin: largest}}}}
  - {{id: clip, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {REPO}/checkpoints/synthref/synth-rn.safetensors}}}}
"""


def torchrun(ranks, cfg, results, **popen):
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
                             "-m", "refbench", "run", str(cfg), "--results", str(results), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def the_run(results):
    (run_dir,) = [p for p in Path(results).iterdir() if p.is_dir()]
    return run_dir


def predictions(run_dir):
    rows = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    keys = [(r["method"], r["sent_id"]) for r in rows]
    assert len(keys) == len(set(keys)), "a (method, phrase) appears twice"
    return {(r["method"], r["sent_id"], json.dumps(r["chosen"]), r["hit"]) for r in rows}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """80 SynthRef images, three methods, small batches; and the one-process run as the reference."""
    tmp = tmp_path_factory.mktemp("dist")
    generate(tmp / "data", SynthSpec(seed=11, images={"testA": 40, "testB": 40}))
    cfg = tmp / "b.yaml"
    cfg.write_text(bench_yaml(tmp / "data", METHODS) + "runner: {batch_size: 4}\n")
    reference = run_benchmark(load_config(cfg), Store(tmp / "one"))
    return cfg, reference.record["metrics"], predictions(reference.dir)


def test_two_ranks_equal_one_process(bench, tmp_path):
    cfg, metrics, rows = bench
    finish(torchrun(2, cfg, tmp_path / "r"))
    run_dir = the_run(tmp_path / "r")
    record = read_record(run_dir)
    assert record["status"] == "complete" and record["metrics"] == metrics
    assert predictions(run_dir) == rows
    assert not rank_files(run_dir)
    (session,) = record["sessions"]
    assert session["placement"]["ranks"] == 2 and [p["images"] for p in session["placement"]["per_rank"]] == [40, 40]
    assert session["merge"] == {"journals": 2, "duplicates_dropped": 0}


def rank_pid(parent, rank):
    """The process of ``rank`` among ``parent``'s descendants (torchrun's workers)."""
    todo = [parent]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            todo += [int(c) for c in task.read_text().split()]
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if pid != parent and f"RANK={rank}".encode() in env:
            return pid
    return None


def test_a_killed_rank_resumes_with_nothing_lost_or_doubled(bench, tmp_path):
    cfg, metrics, rows = bench
    proc = torchrun(2, cfg, tmp_path / "r")
    deadline, killed = time.time() + 90, False
    while time.time() < deadline and proc.poll() is None:
        journals = list((tmp_path / "r").glob("*/predictions.rank1.jsonl"))
        if journals and len(journals[0].read_bytes().splitlines()) >= 20:
            pid = rank_pid(proc.pid, 1)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = True
                break
        time.sleep(0.005)
    assert killed, "rank 1 finished before it could be killed"
    proc.communicate(timeout=90)
    assert proc.returncode != 0  # torchrun stops the other rank and fails
    run_dir = the_run(tmp_path / "r")
    assert read_record(run_dir)["status"] == "running" and rank_files(run_dir)
    with (run_dir / "predictions.rank1.jsonl").open("a") as f:  # as if the power went mid-write
        f.write('{"method": "clip", "sent_id": 12')

    err = finish(torchrun(2, cfg, tmp_path / "r"))
    assert "resuming run" in err and "torn last line" in err and "predictions.rank1.jsonl" in err
    assert the_run(tmp_path / "r") == run_dir
    record = read_record(run_dir)
    assert record["status"] == "complete" and record["metrics"] == metrics and len(record["sessions"]) == 2
    left = [p["images"] for p in record["sessions"][1]["placement"]["per_rank"]]
    assert max(left) - min(left) <= 1  # what remained is shared evenly
    assert predictions(run_dir) == rows and not rank_files(run_dir)


def test_a_rerun_completes_an_interrupted_merge(bench, tmp_path):
    """A merge killed before its rename leaves the rank journals, an older merged journal and a
    temporary file; a rerun, under torchrun or as one process, completes the same run."""
    cfg, metrics, rows = bench
    config = load_config(cfg)
    for results, relaunch in (("dist", True), ("one", False)):
        run = run_benchmark(config, Store(tmp_path / results))
        lines = run.journal.path.read_bytes().splitlines(keepends=True)
        record = read_record(run.dir)
        record.update(status="running", sessions=record["sessions"][:1])
        record.pop("metrics")
        (run.dir / "run.json").write_text(json.dumps(record))
        (run.dir / "predictions.rank0.jsonl").write_bytes(b"".join(lines[0::2]))
        (run.dir / "predictions.rank1.jsonl").write_bytes(b"".join(lines[1::2]))
        run.journal.path.write_bytes(b"".join(lines[: len(lines) // 3]))
        (run.dir / ".predictions.jsonl.x1y2.tmp").write_bytes(b"".join(lines[:7]) + lines[7][:9])
        if relaunch:
            finish(torchrun(2, cfg, tmp_path / results))
        else:
            run_benchmark(config, Store(tmp_path / results))
        again = read_record(run.dir)
        assert again["status"] == "complete" and again["metrics"] == metrics, results
        assert predictions(run.dir) == rows and not rank_files(run.dir)
        assert not list(run.dir.glob(".predictions.jsonl.*.tmp"))


def test_more_ranks_than_images(synth_root, tmp_path, write_config):
    """Three ranks, two images: one rank has nothing to do, and the run completes as one process's."""
    baselines = "  - {id: random, scorer: {plugin: random, seed: 0}}\n  - {id: largest, scorer: {plugin: largest}}\n"
    cfg = write_config(bench_yaml(synth_root, baselines, extra="runner: {limit: 2}"))
    reference = run_benchmark(load_config(cfg), Store(tmp_path / "one")).record["metrics"]
    finish(torchrun(3, cfg, tmp_path / "r"))
    record = read_record(the_run(tmp_path / "r"))
    assert record["metrics"] == reference
    assert [p["images"] for p in record["sessions"][0]["placement"]["per_rank"]] == [1, 1, 0]


def test_ranks_with_different_configs_stop_alike_before_any_run(synth_root, tmp_path, write_config):
    """Two ranks started by hand, as torchrun starts them, on configs that differ in a seed."""
    configs = [write_config(bench_yaml(synth_root, f"  - {{id: random, scorer: {{plugin: random, seed: {s}}}}}\n"), f"{s}.yaml")
               for s in (0, 1)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-m", "refbench", "run", str(cfg), "--results", str(tmp_path / "r"), "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r, cfg in enumerate(configs)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2
        (line,) = [x for x in err.splitlines() if x.strip()]
        assert line.startswith("error: torchrun ranks disagree on the config: rank 0 has"), line
    assert not list((tmp_path / "r").glob("*"))  # no run folder, nothing to merge


def test_agreement_names_the_odd_ranks():
    assert agreement([("a", "x")] * 3) is None
    problem = agreement([("a", "x"), ("a", "x"), ("b", "x")])
    assert "config" in str(problem) and "rank 2 b" in str(problem)
    assert "data or model weights" in str(agreement([("a", "x"), ("a", "y")]))


def test_shards_cover_every_image_once():
    class Item:
        def __init__(self, image_id):
            self.image_id = image_id

    items = [Item(i) for i in (5, 3, 9, 1, 7)]
    shards = [shard(items, r, 3) for r in range(3)]
    assert [[it.image_id for it in s] for s in shards] == [[1, 7], [3, 9], [5]]
    assert shard(items[:1], 2, 3) == []


def test_a_merge_with_a_missing_phrase_replaces_nothing(tmp_path):
    (tmp_path / "predictions.jsonl").write_text('{"method": "m", "sent_id": 1}\n')
    (tmp_path / "predictions.rank0.jsonl").write_text('{"method": "m", "sent_id": 1}\n{"method": "m", "sent_id": 2}\n')
    with pytest.raises(RefbenchError, match="1 .method, phrase. pairs missing and 0 not in this benchmark"):
        merge(tmp_path, {("m", 1), ("m", 2), ("m", 3)})
    assert (tmp_path / "predictions.jsonl").read_text() == '{"method": "m", "sent_id": 1}\n'
    assert merge(tmp_path, {("m", 1), ("m", 2)}) == {"journals": 2, "predictions": 2, "duplicates_dropped": 1}
