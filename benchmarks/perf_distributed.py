"""One process against torchrun ranks: wall times of the same evaluation, and the merge's cost.

Runs one tiny CLIP method (clip-rn: green_shade + checkpoints/synthref/synth-rn.safetensors)
on SynthRef testA (150 images, the default `refbench synth` testA; seed 0, generated once
under data/perf/), detections proposer, --repeats times each (after one untimed run of each):
  1 process   `refbench run CONFIG --new -q`
  N ranks     `python -m torch.distributed.run --standalone --nproc-per-node N -m refbench run CONFIG --new -q`
and prints the medians of: the command's total wall time (fresh processes: imports, start-up,
the run, the merge, printing), the run's own wall time (run.json's session ``wall_s``: for
ranks, from the first image to the end of the merge on rank 0), each rank's scoring time and
the merge. The two runs' metrics must be equal, or the script fails.

Then the merge alone (refbench.run.merge.merge) and the metrics with the default image
bootstrap (refbench.metrics.summarize) at the size of RefCOCO+RefCOCO+/g val+test: 57,457
predictions of one method spread over 8 rank journals, made by repeating this run's records
under new sent_ids and image ids (about 5.8 phrases an image).

    python benchmarks/perf_distributed.py
    python benchmarks/perf_distributed.py --ranks 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "checkpoints" / "synthref" / "synth-rn.safetensors"
PHRASES = 57_457  # RefCOCO, RefCOCO+ and RefCOCOg val+test


def config_text(root: Path) -> str:
    return f"""
name: perf_distributed
seed: 0
dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [testA], images: {root}/images}}
proposer: {{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}
runner: {{batch_size: 256, workers: auto}}
methods:
  - {{id: clip-rn, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {CHECKPOINT}}}}}
"""


def timed_run(cmd: list[str], results: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stderr[-2000:]}")
    (record,) = results.glob("*/run.json")
    return wall, json.loads(record.read_text())


def median(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def offline(sample: Path, tmp: Path) -> None:
    """The merge and the metrics at full RefCOCO+/g size, from this run's records."""
    from refbench.metrics import summarize
    from refbench.run.merge import merge

    rows = [json.loads(x) for x in sample.read_text().splitlines()]
    run_dir = tmp / "merge"
    run_dir.mkdir()
    handles = [(run_dir / f"predictions.rank{k}.jsonl").open("w") for k in range(8)]
    for i in range(PHRASES):
        row = {**rows[i % len(rows)], "sent_id": i, "image_id": i * 10 // 58}
        handles[row["image_id"] % 8].write(json.dumps(row, separators=(",", ":")) + "\n")
    for h in handles:
        h.close()
    start = time.perf_counter()
    merged = merge(run_dir, {("clip-rn", i) for i in range(PHRASES)})
    merge_s = time.perf_counter() - start
    size = (run_dir / "predictions.jsonl").stat().st_size
    records = [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]
    start = time.perf_counter()
    summarize(records, None)
    plain_s = time.perf_counter() - start
    from refbench.config import BenchmarkConfig

    uncertainty = BenchmarkConfig.model_fields["uncertainty"].default
    start = time.perf_counter()
    summarize(records, uncertainty)
    boot_s = time.perf_counter() - start
    print(f"merge of 8 rank journals, {merged['predictions']:,} predictions ({size / 2**20:.1f} MiB): {merge_s:.3f} s "
          f"= {merged['predictions'] / merge_s:,.0f} predictions/s (fsync included)")
    print(f"metrics over them: {plain_s:.3f} s without intervals, {boot_s:.3f} s with the default image bootstrap")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", type=Path, default=REPO / "data" / "perf")
    args = p.parse_args()
    from refbench.synth import SynthSpec, generate

    root = args.data / "synthref_testA150"
    generate(root, SynthSpec(seed=0, images={"testA": 150}))
    tmp = Path(tempfile.mkdtemp(prefix="refbench-perf-dist-"))
    cfg = tmp / "perf.yaml"
    cfg.write_text(config_text(root))
    one = [sys.executable, "-m", "refbench", "run", str(cfg), "--new", "-q", "--results"]
    many = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ranks),
            "-m", "refbench", "run", str(cfg), "--new", "-q", "--results"]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; clip-rn on SynthRef testA (150 images)", flush=True)
    found: dict[str, dict[str, list[float]]] = {}
    metrics = {}
    for label, cmd in (("1 process", one), (f"{args.ranks} ranks", many)):
        walls: dict[str, list[float]] = {"total": [], "run": [], "ranks": [], "merge": []}
        for i in range(args.repeats + 1):
            results = tmp / f"{label.replace(' ', '')}{i}"
            wall, record = timed_run(cmd + [str(results)], results)
            session = record["sessions"][0]
            metrics[label] = record["metrics"]
            if i == 0:
                print(f"{label}: {session['images']} images, {session['views']} views, placement {session['placement']}",
                      flush=True)
                sample = next(results.glob("*/predictions.jsonl"))
                continue
            walls["total"].append(wall)
            walls["run"].append(session["wall_s"])
            walls["ranks"].append(max(session.get("rank_wall_s", [session["wall_s"]])))
            walls["merge"].append(session.get("merge_s", 0.0))
        found[label] = walls
    if len({json.dumps(m, sort_keys=True) for m in metrics.values()}) != 1:
        raise SystemExit("the metrics differ between 1 process and the ranks")
    print(f"metrics identical; accuracy {metrics['1 process']['clip-rn']['accuracy']:.2f}%")
    for label, walls in found.items():
        print(f"{label:>9}: command total {median(walls['total'])}; run {median(walls['run'])}; "
              f"slowest rank {median(walls['ranks'])}; merge {median(walls['merge'])}", flush=True)
    offline(sample, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
