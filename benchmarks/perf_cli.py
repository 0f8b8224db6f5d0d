"""CLI latency: wall time of `refbench` commands, each in a fresh process.

Median (min-max) of --repeats wall times (time.perf_counter around subprocess.run of the
venv's `refbench` executable), after one untimed call of each command to warm the OS file
cache, for:
  refbench --help                                   target <= 0.4 s
  refbench plugins                                  target <= 0.8 s
  refbench leaderboard  (the committed results/)    target <= 0.8 s
  refbench run CONFIG --new -q --results TMPDIR     one tiny CLIP method (clip-rn: green_shade +
      checkpoints/synthref/synth-rn.safetensors) on SynthRef testA (150 images, the default
      `refbench synth` testA; seed 0, generated once under data/perf/), detections proposer.
      Split into
        (a) `python -c "import torch, open_clip"` in a fresh process (its own median of repeats),
        (b) the run's own wall time, run.json's record["timing"]["wall_s"] (time inside the runner),
        (c) the rest: total - (a) - (b), i.e. refbench's own start-up and wind-down (importing the
            CLI, config, plugin discovery, building the data set, proposer and model, the run
            record, printing the tables).                    target for (c) <= 1 s

    python benchmarks/perf_cli.py
    python benchmarks/perf_cli.py --repeats 9 --skip run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REFBENCH = BIN / "refbench"
CHECKPOINT = REPO / "checkpoints" / "synthref" / "synth-rn.safetensors"
TARGETS = {"--help": 0.4, "plugins": 0.8, "leaderboard": 0.8, "run start-up (c)": 1.0}


def timed(cmd: list[str], check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of ``cmd`` in a fresh process (output captured, so the terminal costs nothing)."""
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if check and out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{tail}")
    return wall, out


def dataset(root: Path) -> Path:
    """SynthRef testA as `refbench synth` makes it by default (seed 0; a split's images do not
    depend on the other splits' sizes), without the 3,450 other images."""
    from refbench.synth import SynthSpec, generate

    generate(root, SynthSpec(seed=0, images={"testA": 150}))
    return root


def config_text(root: Path) -> str:
    return f"""
name: perf_cli
seed: 0
dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [testA], images: {root}/images}}
proposer: {{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}
protocol: {{iou: 0.5, comparison: ">", iou_convention: refer}}
runner: {{batch_size: 256, workers: auto}}
methods:
  - {{id: clip-rn, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {CHECKPOINT}}}}}
"""


def stats(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def line(label: str, values: list[float], target: float | None = None) -> bool | None:
    med, lo, hi = stats(values)
    text = f"{label:<34} median {med:6.3f} s  (min {lo:.3f}, max {hi:.3f}, n={len(values)})"
    ok = None
    if target is not None:
        ok = med <= target
        text += f"  target <= {target:g} s: {'meets' if ok else 'MISSES'}"
    print(text, flush=True)
    return ok


def versions() -> str:
    try:
        torch = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True, timeout=120).stdout.strip() or "?"
    except subprocess.TimeoutExpired:
        torch = "?"
    return f"Python {platform.python_version()}, torch {torch}, {os.cpu_count()} CPUs, refbench at {REFBENCH}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, choices=range(1, 51), metavar="1..50")
    p.add_argument("--data", type=Path, default=REPO / "data" / "perf")
    p.add_argument("--results", type=Path, default=REPO / "results", help="leaderboard input (default: the committed results/)")
    p.add_argument("--skip", nargs="*", default=[], choices=["help", "plugins", "leaderboard", "run"])
    args = p.parse_args()
    if not REFBENCH.exists():
        print(f"no refbench executable next to {sys.executable}: run this with the venv's python", file=sys.stderr)
        return 2
    print(versions(), flush=True)
    failed: list[str] = []
    verdicts: dict[str, bool | None] = {}

    simple = {"help": ("--help", [str(REFBENCH), "--help"]),
              "plugins": ("plugins", [str(REFBENCH), "plugins"]),
              "leaderboard": ("leaderboard", [str(REFBENCH), "leaderboard", "--results", str(args.results)])}
    for key, (label, cmd) in simple.items():
        if key in args.skip:
            continue
        try:
            timed(cmd)  # warm the file cache
            walls = [timed(cmd)[0] for _ in range(args.repeats)]
        except RuntimeError as exc:
            print(f"refbench {label}: FAILED: {exc}", flush=True)
            failed.append(label)
            continue
        verdicts[label] = line(f"refbench {label}", walls, TARGETS[label])

    if "run" not in args.skip:
        root = dataset(args.data / "synthref_testA150")
        tmp = Path(tempfile.mkdtemp(prefix="refbench-perf-cli-"))
        cfg = tmp / "perf_cli.yaml"
        cfg.write_text(config_text(root))
        imports = [sys.executable, "-c", "import torch, open_clip"]
        try:
            timed(imports)  # warm
            a = [timed(imports)[0] for _ in range(args.repeats)]
            a_med = statistics.median(a)
            totals, b, images = [], [], None
            for i in range(args.repeats + 1):  # the first run is the untimed warm-up
                results = tmp / f"results{i}"
                wall, _ = timed([str(REFBENCH), "run", str(cfg), "--new", "-q", "--results", str(results)])
                (record_path,) = results.glob("*/run.json")
                record = json.loads(record_path.read_text())
                if i == 0:
                    s = record["sessions"][0]
                    images = (s["images"], s.get("views"), record["metrics"]["clip-rn"]["n"], s.get("placement"),
                              record["metrics"]["clip-rn"]["accuracy"])
                    continue
                totals.append(wall)
                b.append(float(record["timing"]["wall_s"]))
        except (RuntimeError, ValueError, KeyError) as exc:
            print(f"refbench run: FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed.append("run")
        else:
            n_img, n_views, n_phrases, place, acc = images
            print(f"refbench run: clip-rn on SynthRef testA, {n_img} images, {n_views} views, {n_phrases} phrases, "
                  f"placement {place}, accuracy {acc:.2f}%", flush=True)
            line("refbench run, total", totals)
            line("  (a) import torch, open_clip", a)
            line("  (b) runner (run.json wall_s)", b)
            c = [t - a_med - x for t, x in zip(totals, b)]
            verdicts["run start-up (c)"] = line("  (c) rest: total - (a) - (b)", c, TARGETS["run start-up (c)"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    met = [k for k, v in verdicts.items() if v]
    missed = [k for k, v in verdicts.items() if v is False]
    print(f"targets met: {', '.join(met) or 'none'}; missed: {', '.join(missed) or 'none'}"
          + (f"; failed to run: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
