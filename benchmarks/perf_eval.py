"""Evaluation throughput: refbench's runner against the phrase-at-a-time loop and the raw encoder.

On a SynthRef split shaped like RefCOCO testA (750 images, ~7.5 phrases and ~10 candidates
per image), for each model:
  (a) the runner vs a phrase-at-a-time loop (same rendering, same model): speed ratio, and
      the predictions must be identical;
  (b) the runner's end-to-end views/s vs the raw encoder's views/s on pre-rendered tensors
      at the same batch size: efficiency ratio (each view path of --views: 'exact', 'resized'
      and 'device', with the others' agreement with the exact one). Whole runs and raw-encoder
      passes alternate, --repeats of each, and the ratio is best over best (and the median of
      the pairs): the machine's speed drifts by several percent between measurements. For
      'device' (workers only decode; views drawn and resized where the model runs) the raw
      encoder is the same model on pre-rendered views, and the drawing alone (no model) is
      timed too;
  (c) peak RSS of `refbench run` at 1x and 4x the images.

    python benchmarks/perf_eval.py                  # CPU, the tiny ResNet and ViT CLIPs
    python benchmarks/perf_eval.py --device cuda --arch ViT-B-32 --precision bf16 --batch-size 1024 --workers 12
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from refbench.config import load_config
from refbench.results import Store, read_record
from refbench.run import build, load_image, propose_all, run_benchmark, worker_count
from refbench.run.prepare import chunk_stream
from refbench.synth import SynthSpec, generate

REPO = Path(__file__).resolve().parent.parent
# RefCOCO testA: 750 images, 5,657 phrases; MAttNet's detections give ~10 boxes an image
SHAPE = dict(objects=(6, 8), false_positives=(2, 4), sentences_per_ref=(1, 3))


def dataset(root: Path, images: int) -> Path:
    generate(root, SynthSpec(seed=1, images={"testA": images}, **SHAPE))
    return root


def config_text(root: Path, method: str, batch: int, workers: int) -> str:
    return f"""
name: perf
dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [testA], images: {root}/images}}
proposer: {{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}
runner: {{batch_size: {batch}, workers: {workers}}}
methods:
  - {method}
"""


def method(args: argparse.Namespace, arch: str, views: str) -> str:
    ckpt = REPO / "checkpoints" / "synthref" / f"{arch}.safetensors"
    weights = f"checkpoint: {ckpt}" if ckpt.exists() and not args.random_init else f"arch: {arch}"
    return (f"{{id: m, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, {weights}, device: {args.device}, "
            f"precision: {args.precision}, views: {views}}}}}")


def run_once(cfg_path: Path, results: Path) -> tuple[dict, list[dict]]:
    run = run_benchmark(load_config(cfg_path), Store(results), fresh=True)
    record = read_record(run.dir)
    return record, [json.loads(x) for x in run.journal.path.read_text().splitlines()]


def phrase_loop(cfg_path: Path, limit: int | None) -> tuple[float, dict[int, int], int]:
    """The research code's shape: for every phrase, render and encode all its image's candidates."""
    bench = build(load_config(cfg_path))
    (m,) = bench.methods
    scorer, prompter = m.scorer, m.prompter
    items = list(bench.dataset)[:limit]
    chosen: dict[int, int] = {}
    start = time.perf_counter()
    with torch.inference_mode():
        for item in items:
            for ref in item.refs:
                boxes = bench.proposer.propose(item)
                views = scorer.prepare(load_image(item), boxes, prompter)
                logits = scorer.logits(scorer.encode_texts(scorer.prepare_texts([ref.text])), scorer.encode_views(views))
                chosen[ref.sent_id] = int(np.argmax(logits[0]))
    return time.perf_counter() - start, chosen, sum(len(i.refs) for i in items)


def preparation_only(cfg_path: Path) -> float:
    """Views/s of the preparation pipeline alone (decode, propose, render, tokenise, hand-over),
    with the config's workers and no model call: the most the runner can be fed."""
    config = load_config(cfg_path)
    bench = build(config)
    items = list(bench.dataset)
    start, n = time.perf_counter(), 0
    boxes = propose_all(items, bench.proposer, config.proposer.invalid).boxes
    for chunk in chunk_stream(items, boxes, bench.methods, config.runner.batch_size, worker_count(config.runner.workers)):
        n += sum(len(p.boxes) for p in chunk.images)
    return n / (time.perf_counter() - start)


def prepared_views(bench, views_wanted: int) -> list:
    """The first images' prepared views (at least ``views_wanted``), one entry per image."""
    (m,) = bench.methods
    prepared, n = [], 0
    for item in bench.dataset:
        boxes = bench.proposer.propose(item)
        prepared.append(m.scorer.prepare(load_image(item), boxes, m.prompter))
        n += len(boxes)
        if n >= views_wanted:
            break
    return prepared


def drawing_only(cfg_path: Path, batch: int, views_wanted: int, repeats: int) -> list[float]:
    """``views: device``: views/s of drawing, resizing and normalising alone (no model), on batches of
    ``batch`` views whose images are already on the model's device. One figure per repeat."""
    bench = build(load_config(cfg_path))
    (m,) = bench.methods
    scorer = m.scorer
    views = scorer.to_device(scorer.concat(prepared_views(bench, views_wanted)))
    batches = [views[i : i + batch] for i in range(0, len(views), batch)]
    cuda = scorer.device.type == "cuda"
    rates = []
    with torch.inference_mode():
        scorer.device_input(batches[0])  # warm-up
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            for b in batches:
                scorer.device_input(b)
            if cuda:
                torch.cuda.synchronize()
            rates.append(len(views) / (time.perf_counter() - t))
    return rates


class RawEncoder:
    """``encode_views`` alone, on views prepared beforehand, at the runner's batch size."""

    def __init__(self, cfg_path: Path, batch: int, views_wanted: int) -> None:
        bench = build(load_config(cfg_path))
        (m,) = bench.methods
        self.scorer, self.batch = m.scorer, batch
        self.views = torch.cat(prepared_views(bench, views_wanted))
        self.cuda = m.scorer.device.type == "cuda"
        if self.cuda:
            self.views = self.views.pin_memory()
        with torch.inference_mode():
            self.scorer.encode_views(self.views[:batch])  # warm-up

    def side_by_side(self, processes: int) -> float:
        """Views/s of ``processes`` single-threaded encoders at once (forked, started together, a
        pass each): all their views over the time from the first start to the last end. The raw
        encoder run the way the runner runs it when the workers score."""
        import multiprocessing as mp
        import queue

        ctx = mp.get_context("fork")
        start, out = ctx.Barrier(processes, timeout=120), ctx.Queue()

        def one() -> None:
            torch.set_num_threads(1)  # a forked process cannot use OpenMP's pool
            with torch.inference_mode():
                self.scorer.encode_views(self.views[: self.batch])  # warm-up
                start.wait()
                t = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
                self._pass()
                out.put((t, time.perf_counter()))

        procs = [ctx.Process(target=one, daemon=True) for _ in range(processes)]
        for p in procs:
            p.start()
        try:
            spans = [out.get(timeout=300) for _ in procs]
        except queue.Empty:
            raise SystemExit(f"side-by-side encoders did not finish (exit codes {[p.exitcode for p in procs]})") from None
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
        return processes * len(self.views) / (max(e for _, e in spans) - min(t for t, _ in spans))

    def _pass(self) -> None:
        for i in range(0, len(self.views), self.batch):
            self.scorer.encode_views(self.views[i : i + self.batch])

    def measure(self) -> float:
        """Views/s of one pass over the prepared views."""
        with torch.inference_mode():
            if self.cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            self._pass()
            if self.cuda:
                torch.cuda.synchronize()
            return len(self.views) / (time.perf_counter() - t)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def _rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process and its children (the runner's workers), MiB."""
    total = 0.0
    pids, seen = [str(pid)], set()
    while pids:
        p = pids.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS:")).split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                pids += (task / "children").read_text().split()
        except (OSError, StopIteration):
            continue
    return total


def rss_child(cfg_path: Path, results: Path, limit: int | None, mark: int) -> None:
    """Run the benchmark in this (fresh) process, sampling RSS after every chunk; print JSON."""
    import resource

    config = load_config(cfg_path, runner={"limit": limit} if limit else None)
    trace: list[tuple[int, float]] = []
    run_benchmark(config, Store(results), fresh=True, progress=lambda done, total, written: trace.append((done, _rss_mib())))
    streamed = [r for n, r in trace[1:]]  # after the data set is loaded and the first chunk is done
    print(json.dumps({"peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "first": trace[1][1] if len(trace) > 1 else None,
                      "at_mark": max((r for n, r in trace[1:] if n <= mark), default=None),
                      "streamed_max": max(streamed, default=None), "images": trace[-1][0]}))


def peak_rss(cfg_path: Path, results: Path, limit: int | None, mark: int) -> dict:
    """RSS figures of a benchmark run in a fresh process (see ``rss_child``)."""
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(cfg_path), str(results), str(limit or 0), str(mark)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=REPO / "data" / "perf")
    p.add_argument("--images", type=int, default=750)
    p.add_argument("--arch", nargs="+", default=["synth-rn", "synth-vit"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", default="auto", help="runner.workers: a number or auto")
    p.add_argument("--loop-images", type=int, default=None, help="run the slow phrase loop on the first N images only")
    p.add_argument("--raw-views", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=3, choices=range(1, 21), metavar="1..20",
                   help="(b): end-to-end runs and raw-encoder passes, interleaved")
    p.add_argument("--random-init", action="store_true", help="ignore shipped checkpoints (speed does not depend on weights)")
    p.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c"])
    p.add_argument("--views", nargs="+", default=["exact", "resized", "device"], choices=["exact", "resized", "device"],
                   help="view paths to compare (exact always runs: it is the reference)")
    p.add_argument("--rss-repeats", type=int, default=3)
    p.add_argument("--rss-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        cfg, results, limit, mark = args.rss_child
        rss_child(Path(cfg), Path(results), int(limit) or None, int(mark))
        return 0

    root = dataset(args.data / f"x{args.images}", args.images)
    tmp = Path(tempfile.mkdtemp(prefix="refbench-perf-"))
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else os.cpu_count()} "
          f"{'' if args.device.startswith('cuda') else 'CPUs'}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, workers {args.workers}, precision {args.precision}")
    report: dict = {}
    paths = ["exact"] + [v for v in args.views if v != "exact"]
    for arch in args.arch:
        cfgs = {}
        for views in paths:
            cfgs[views] = tmp / f"{arch}-{views}.yaml"
            cfgs[views].write_text(config_text(root, method(args, arch, views), args.batch_size, args.workers))
        runs = {}
        for views, cfg in cfgs.items():
            record, rows = run_once(cfg, tmp / "results")
            s = record["sessions"][0]
            runs[views] = (record, rows)
            print(f"[{arch}] runner, {views} views: {s['images']} images, {s['views']} views, "
                  f"{record['metrics']['m']['n']} phrases in {s['wall_s']:.2f}s = {s['views'] / s['wall_s']:.0f} views/s; "
                  f"accuracy {record['metrics']['m']['accuracy']:.2f}%")
        exact_rec, exact_rows = runs["exact"]
        entry: dict = {}
        for views in paths[1:]:
            rec, rows = runs[views]
            chosen = {r["sent_id"]: r["chosen"] for r in rows}
            agree = float(np.mean([chosen[r["sent_id"]] == r["chosen"] for r in exact_rows]))
            print(f"[{arch}] {views} vs exact views: {100 * agree:.2f}% same choice, accuracy "
                  f"{rec['metrics']['m']['accuracy']:.2f} vs {exact_rec['metrics']['m']['accuracy']:.2f}")
            entry["views_agreement" if views == "resized" else f"views_agreement_{views}"] = agree
        if "a" not in args.skip:
            loop_s, loop_chosen, loop_n = phrase_loop(cfgs["exact"], args.loop_images)
            runner_chosen = {r["sent_id"]: r["chosen"] for r in exact_rows}
            same = sum(runner_chosen[k] == v for k, v in loop_chosen.items())
            runner_per_phrase = exact_rec["sessions"][0]["wall_s"] / len(exact_rows)
            ratio = (loop_s / loop_n) / runner_per_phrase
            print(f"[{arch}] (a) phrase-at-a-time loop: {loop_n} phrases in {loop_s:.1f}s; runner {ratio:.1f}x faster per phrase; "
                  f"identical predictions: {same}/{loop_n}")
            entry.update(speedup=ratio, identical=same == loop_n)
        if "b" not in args.skip:
            best: dict[str, float] = {}
            for views in paths:
                # the raw encoder on pre-rendered views: for 'device', the exact path's (the same model, the same input size)
                raw = RawEncoder(cfgs["exact" if views == "device" else views], args.batch_size, args.raw_views)
                # interleaved, the same number of each: the machine's speed drifts by several percent
                raws, e2es, sides = [], [], []
                for r in range(args.repeats):
                    record = runs[views][0] if r == 0 else run_once(cfgs[views], tmp / "results")[0]
                    s = record["sessions"][0]
                    e2es.append(s["views"] / s["wall_s"])
                    raws.append(raw.measure())
                    where = s["placement"]
                    if where["scoring"] == "workers":
                        sides.append(raw.side_by_side(where["workers"]))
                del raw
                prep = preparation_only(cfgs[views])
                pairs = [e / r for e, r in zip(e2es, raws)]
                print(f"[{arch}] (b) {views}: raw encoder {_list(raws)} views/s, end to end {_list(e2es)} views/s "
                      f"({where['workers']} workers, scoring in {where['scoring']}); efficiency best/best {100 * max(e2es) / max(raws):.1f}%, "
                      f"median of pairs {100 * float(np.median(pairs)):.1f}% (preparation alone, no model, "
                      f"{worker_count(load_config(cfgs[views]).runner.workers) or 'no'} worker processes: {prep:.0f} views/s)")
                if sides:
                    print(f"[{arch}] (b) {views}: raw encoder run as the runner runs it, {where['workers']} single-threaded processes "
                          f"side by side: {_list(sides)} views/s; end to end / that: best/best {100 * max(e2es) / max(sides):.1f}%")
                    entry[f"efficiency_{views}_vs_side_by_side"] = max(e2es) / max(sides)
                entry[f"efficiency_{views}"] = max(e2es) / max(raws)
                best["raw"] = max(best.get("raw", 0.0), *raws)
                best[views] = max(e2es)
                entry[f"efficiency_{views}_pairs"] = pairs
                if views == "device":
                    draws = drawing_only(cfgs[views], args.batch_size, args.raw_views, args.repeats)
                    print(f"[{arch}] (b) device: drawing, resizing and normalising alone (images already on {args.device}, "
                          f"no model): {_list(draws)} views/s")
                    entry["device_drawing_views_per_s"] = max(draws)
            print(f"[{arch}] (b) best views/s: raw encoder {best['raw']:.0f}; end to end "
                  + ", ".join(f"{v} {best[v]:.0f} ({100 * best[v] / best['raw']:.1f}%)" for v in paths))
        report[arch] = entry
    if "c" not in args.skip:
        arch = args.arch[0]
        big = dataset(args.data / f"x{4 * args.images}", 4 * args.images)
        cfgs = {}
        for r in (root, big):
            cfgs[r] = tmp / f"rss-{r.name}.yaml"
            cfgs[r].write_text(config_text(r, method(args, arch, "resized"), args.batch_size, args.workers))
        rows = {"small files": [], "first": [], "all": []}
        for _ in range(args.rss_repeats):  # interleaved: the machine's state drifts between runs
            rows["small files"].append(peak_rss(cfgs[root], tmp / "rss-results", None, args.images))
            rows["first"].append(peak_rss(cfgs[big], tmp / "rss-results", args.images, args.images))
            rows["all"].append(peak_rss(cfgs[big], tmp / "rss-results", None, args.images))
        med = {k: {f: float(np.median([x[f] for x in v])) for f in ("peak", "first", "at_mark", "streamed_max")} for k, v in rows.items()}
        for k, v in rows.items():
            def mib(field: str) -> str:
                return ", ".join(f"{x[field]:.0f}" for x in v)

            print(f"(c) [{arch}] {k}: peak RSS {mib('peak')} MiB; while streaming: after the first chunk {mib('first')}, "
                  f"highest {mib('streamed_max')} MiB")
        growth = med["all"]["peak"] / med["first"]["peak"] - 1
        within = med["all"]["streamed_max"] / med["all"]["at_mark"] - 1
        print(f"(c) [{arch}] median peak RSS: {4 * args.images} images {med['all']['peak']:.0f} MiB vs first {args.images} of the same "
              f"files {med['first']['peak']:.0f} MiB: {100 * growth:+.1f}%; vs {args.images}-image files "
              f"{med['small files']['peak']:.0f} MiB: {100 * (med['all']['peak'] / med['small files']['peak'] - 1):+.1f}% "
              f"(adds 4x the annotation and detection files)")
        print(f"(c) [{arch}] within the {4 * args.images}-image run: highest RSS up to image {args.images} "
              f"{med['all']['at_mark']:.0f} MiB, over all {4 * args.images} {med['all']['streamed_max']:.0f} MiB: {100 * within:+.1f}%")
        tree = med["all"]["streamed_max"] / med["first"]["streamed_max"] - 1
        print(f"(c) [{arch}] main process and its workers together (the peak above is the main process's): highest RSS while "
              f"streaming, median: {4 * args.images} images {med['all']['streamed_max']:.0f} MiB vs first {args.images} "
              f"{med['first']['streamed_max']:.0f} MiB: {100 * tree:+.1f}%")
        report["rss_growth"] = growth
        report["rss_growth_with_workers"] = tree
        report["rss_growth_within_run"] = within
    print("summary:", json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
