"""``refbench``: run benchmarks, show the leaderboard, list plugins, make SynthRef."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .errors import RefbenchError

console = Console()
errors = Console(stderr=True)


def _store(args: argparse.Namespace) -> Any:
    from .results import Store

    return Store(Path(args.results))


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config

    knobs = {"batch_size": args.batch_size, "workers": args.workers, "scoring": args.scoring, "limit": args.limit}
    config = load_config(args.config, runner={k: v for k, v in knobs.items() if v is not None})  # before importing torch
    from .run import run_benchmark

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                  TextColumn("{task.fields[phrases]} predictions"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=errors, disable=args.quiet) as bar:
        task = bar.add_task(config.name, total=None, phrases=0)

        def progress(done: int, total: int, written: int) -> None:
            bar.update(task, completed=done, total=total, phrases=written)

        run = run_benchmark(config, _store(args), Path(args.config), resume=args.resume, fresh=args.new,
                            progress=progress, announce=lambda s: errors.print(f"[yellow]{escape(s)}", soft_wrap=True))
    _print_run(run.record)
    console.print(f"saved [bold]{run.dir}[/]")
    return 0


def _print_run(record: dict[str, Any]) -> None:
    """Accuracy per split, then per phrase type: two tables, so each fits a narrow terminal."""
    from .tables import Col, hidden_note, show

    metrics = record["metrics"]
    splits = sorted({s for m in metrics.values() for s in m["splits"]})
    types = sorted({t for m in metrics.values() for t in m["phrase_types"]})
    several = len(splits) > 1
    cols = [Col("method"), *[Col(s, justify="right") for s in splits],
            *([Col("overall", justify="right", style="bold")] if several else []),
            Col("upper bound", justify="right", drop=1), Col("n", justify="right", drop=2)]
    rows = [(method, *[f"{m['splits'][s]['accuracy']:.2f}" if s in m["splits"] else "" for s in splits],
             *([f"{m['accuracy']:.2f}"] if several else []),
             "n/a" if m["upper_bound"] is None else f"{m['upper_bound']:.2f}", str(m["n"]))
            for method, m in metrics.items()]
    hidden = show(console, cols, rows, title=escape(f"{record['benchmark']} ({record['dataset_key']}): accuracy %, "
                                                    f"{record['protocol']['rule']}"))
    if types:
        rows = [(method, *[f"{m['phrase_types'][t]['accuracy']:.1f}" if t in m["phrase_types"] else "" for t in types])
                for method, m in metrics.items()]
        show(console, [Col("method"), *[Col(t, justify="right") for t in types]], rows, title="accuracy % per phrase type")
    note = hidden_note(hidden, "refbench leaderboard --wide")
    if note:
        console.print(note, highlight=False)
    chance = next((m["chance"] for m in metrics.values() if m["chance"] is not None), None)
    console.print((f"chance (uniform pick among candidates): {chance:.2f}%; " if chance is not None else "")
                  + f"wall {record['timing']['wall_s']:.1f}s")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import collect, render

    rows = collect(_store(args), args.benchmark, reported=not args.no_reported,
                   warn=lambda s: errors.print(f"[yellow]warning:[/] {escape(s)}", soft_wrap=True), latest=args.latest,
                   metric=args.metric)
    text = render(rows, args.format, console, wide=True if args.wide else None, ci=args.ci)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_specs, render

    first, second, result = compare_specs(_store(args), args.a, args.b, args.resamples, args.seed)
    sys.stdout.write(render(first, second, result, args.format) + "\n")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Fits the terminal (summaries cut with "…"; plugin, version, package hidden in that order when
    narrow); ``--wide``, or stdout piped without COLUMNS, shows every column in full (``refbench.tables``)."""
    from .plugins import registry
    from .tables import Col, hidden_note, show

    reg = registry()
    cols = [Col("kind"), Col("name", style="bold"), Col("plugin", drop=1), Col("package"), Col("version"),
            Col("summary", cut=True, min_width=12, drop=2)]
    rows = [(i.kind, i.name, i.plugin, i.package, i.version, i.summary) for i in reg.components()]  # .summary: no import
    note = hidden_note(show(console, cols, rows, title="refbench components", wide=True if args.wide else None))
    if note:
        console.print(note, highlight=False)
    for b in reg.broken:
        errors.print(f"[red]plugin {escape(repr(b.plugin))} ({escape(b.package)}, {escape(b.target)}) failed to load:[/] "
                     f"{escape(b.error)}", soft_wrap=True)
    missing = [(i, m) for i in reg.components() if (m := i.missing_module())]
    for info, module in missing:
        errors.print(f"[red]{info.kind} {escape(repr(info.name))} of plugin {escape(repr(info.plugin))} ({escape(info.package)}) "
                     f"names module {escape(module)}, which is not installed[/]", soft_wrap=True)
    return 1 if (reg.broken or missing) and args.strict else 0


SYNTH_LAYOUTS = ("lmms-lab", "jxu124", "mdetr")  # refbench.synth.layouts.LAYOUTS, named here to keep --help light


def cmd_synth(args: argparse.Namespace) -> int:
    from .synth import SynthSpec, generate

    defaults = SynthSpec()
    images = dict(defaults.images)
    for split in images:
        value = getattr(args, split)
        if value is not None:
            images[split] = value
    spec = SynthSpec(seed=args.seed, images=images, canvas=defaults.canvas if args.canvas is None else args.canvas,
                     objects=tuple(args.objects) if args.objects else defaults.objects)
    with Progress(TextColumn("[bold]SynthRef"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=errors, disable=args.quiet) as bar:
        task = bar.add_task("synth", total=None)
        try:
            summary = generate(Path(args.root), spec, progress=lambda d, t: bar.update(task, completed=d, total=t))
        except FileExistsError as exc:
            raise RefbenchError(str(exc), "pick another folder or delete it") from None
        except (ValueError, RuntimeError) as exc:
            raise RefbenchError(f"cannot generate SynthRef: {exc}", "adjust the options (see refbench synth --help)") from None
    table = Table(title=f"SynthRef in {summary.root}", title_justify="left")
    table.add_column("variant")
    for split in summary.images:
        table.add_column(split, justify="right")
    table.add_row("images", *[str(v) for v in summary.images.values()])
    for variant, per_split in summary.sentences.items():
        table.add_row(f"{variant} phrases", *[str(per_split.get(s, 0)) for s in summary.images])
    console.print(table)
    for variant, types in summary.phrase_types.items():
        console.print(f"{variant}: " + ", ".join(f"{t} {n}" for t, n in types.items()))
    if args.layouts is not None:
        try:
            from .synth.layouts import write_layouts

            files = write_layouts(summary.root, args.layouts or SYNTH_LAYOUTS)
        except ImportError as exc:
            raise RefbenchError(f"cannot write the download layouts: {exc}", "pip install pyarrow") from None
        for layout in args.layouts or SYNTH_LAYOUTS:
            mine = [f for f in files if layout in f.parts]
            console.print(f"{layout}: {len(mine)} files in {escape(str(summary.root / layout))}", highlight=False)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem a run of the config would meet before its first image: names, options, files,
    checkpoints, settings this machine cannot run, splits, every proposal box, grounders'
    predictions, missing images."""
    from .config import load_config
    from .run.components import build_parts
    from .run.proposals import propose_for

    config = load_config(args.config)
    bench, problems = build_parts(config)
    proposals, items = None, []
    if bench.dataset is not None and (bench.proposer is not None or config.proposer is None):
        items = list(bench.dataset)[: config.runner.limit]
        try:
            proposals = propose_for(bench, items)
        except RefbenchError as exc:
            problems.append(exc)
        if any(m.uses_image for m in bench.methods):
            missing = [it for it in items if not it.path.is_file()]
            if missing:
                problems.append(RefbenchError(f"{len(missing)} of {len(items)} images not found, e.g. {missing[0].path}",
                                              "check dataset.images points at the folder holding the data set's images"))
    if problems:
        raise RefbenchError.many(problems)
    boxes = sum(len(b) for b in proposals.boxes.values()) if proposals else 0
    dropped = f"; would drop {proposals.describe_drops()}" if proposals and proposals.dropped else ""
    console.print(f"{escape(args.config)}: ok ({len(items)} images, {sum(len(i.refs) for i in items)} phrases, "
                  f"{boxes} proposal boxes{dropped}; methods: {escape(', '.join(m.id for m in bench.methods))})", soft_wrap=True)
    return 0


def parser() -> argparse.ArgumentParser:
    from .plugins import registry

    p = argparse.ArgumentParser(prog="refbench", description="Benchmark harness for referring-expression comprehension.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    results_default = os.environ.get("REFBENCH_RESULTS", "results")

    r = sub.add_parser("run", help="run a benchmark YAML (resumes an interrupted run of the same config)")
    r.add_argument("config")
    r.add_argument("--results", default=results_default, help="results folder (default: ./results, or $REFBENCH_RESULTS)")
    r.add_argument("--resume", metavar="RUN_ID", help="continue this interrupted run")
    r.add_argument("--new", action="store_true", help="start a fresh run even if an interrupted one exists")
    r.add_argument("--batch-size", type=int, help="views per encoder call")
    r.add_argument("--workers", type=int, help="background processes (0: all in this process)")
    r.add_argument("--scoring", choices=["auto", "main", "workers"],
                   help="where models run: the main process, or each worker on its own images (CPU models)")
    r.add_argument("--limit", type=int, metavar="N", help="only the first N images (recorded in the run's config)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(handler=cmd_run)

    lb = sub.add_parser("leaderboard", help="rich table over every completed run, with published reference rows")
    lb.add_argument("--results", default=results_default)
    lb.add_argument("--benchmark", help="only this benchmark name or data set key (e.g. synthref/unc)")
    lb.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    lb.add_argument("--latest", action="store_true", help="only the newest run of each benchmark and method")
    lb.add_argument("--no-reported", action="store_true", help="leave out published reference rows")
    lb.add_argument("--wide", action="store_true", help="every column in full, even if wider than the terminal")
    lb.add_argument("--metric", default="accuracy", metavar="NAME",
                    help="the number shown: accuracy (default), acc@0.5, acc@0.75, acc@0.9, macc, centre, miou")
    lb.add_argument("--ci", choices=["pm", "range", "none"], default="pm",
                    help="95%% intervals as value ± half-width (pm, default), [low, high] (range), or none")
    lb.set_defaults(handler=cmd_leaderboard)

    c = sub.add_parser("compare", help="two methods on the phrases both evaluated: accuracies, the difference with a "
                                       "paired bootstrap interval, McNemar's exact test")
    c.add_argument("a", metavar="A", help="RUN:METHOD (RUN: a run id or part of one, e.g. its hash)")
    c.add_argument("b", metavar="B", help="RUN:METHOD, or METHOD of A's run")
    c.add_argument("--results", default=results_default)
    c.add_argument("--format", choices=["text", "json"], default="text")
    c.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c.set_defaults(handler=cmd_compare)

    from .show import add_command as add_show  # argparse only: its work loads when it runs
    add_show(sub, results_default)

    pl = sub.add_parser("plugins", help="list installed components")
    pl.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed to load")
    pl.add_argument("--wide", action="store_true", help="every column in full, even if wider than the terminal")
    pl.set_defaults(handler=cmd_plugins)

    s = sub.add_parser("synth", help="generate the SynthRef data set (RefCOCO's on-disk format)")
    s.add_argument("root", nargs="?", default="data/synthref")
    s.add_argument("--seed", type=int, default=0)
    for split in ("train", "val", "testA", "testB"):
        s.add_argument(f"--{split}", type=int, metavar="N", help=f"images in {split}")
    s.add_argument("--canvas", type=int, help="image side in pixels")
    s.add_argument("--objects", type=int, nargs=2, metavar=("MIN", "MAX"), help="objects per scene")
    s.add_argument("--layouts", nargs="*", choices=SYNTH_LAYOUTS, metavar="LAYOUT",
                   help=f"also write these download layouts of the same data ({', '.join(SYNTH_LAYOUTS)}; none named: all)")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(handler=cmd_synth)

    v = sub.add_parser("validate", help="check a benchmark YAML, its plugins, data, weights and every proposal box, "
                                        "reporting every problem at once, without running it")
    v.add_argument("config")
    v.set_defaults(handler=cmd_validate)

    reg = registry()
    for impl in reg.manager.hook.refbench_add_commands.get_hookimpls():
        try:  # a plugin's broken command must not take the CLI down
            impl.function(subparsers=sub)
        except Exception as exc:
            reg.note_broken(reg.manager.get_name(impl.plugin) or "?", "refbench_add_commands", exc)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except RefbenchError as exc:
        if debug:
            raise
        for problem in exc.problems:  # one line each
            errors.print(f"[bold red]error:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted: predictions so far are saved; rerun the same command to resume")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
