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
    from .runner import run_benchmark

    knobs = {"batch_size": args.batch_size, "workers": args.workers, "scoring": args.scoring, "limit": args.limit}
    config = load_config(args.config, runner={k: v for k, v in knobs.items() if v is not None})
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
    metrics = record["metrics"]
    splits = sorted({s for m in metrics.values() for s in m["splits"]})
    types = sorted({t for m in metrics.values() for t in m["phrase_types"]})
    several = len(splits) > 1
    table = Table(title=f"{record['benchmark']} ({record['dataset_key']}): accuracy %, {record['protocol']['rule']}",
                  title_justify="left")
    table.add_column("method", no_wrap=True)
    for col in [*splits, *(["overall"] if several else []), "upper bound", "n"]:
        table.add_column(col, justify="right", no_wrap=True)
    for method, m in metrics.items():
        table.add_row(escape(method), *[f"{m['splits'][s]['accuracy']:.2f}" if s in m["splits"] else "" for s in splits],
                      *([f"[bold]{m['accuracy']:.2f}"] if several else []), f"{m['upper_bound']:.2f}", str(m["n"]))
    console.print(table)
    if types:
        by_type = Table(title="accuracy % per phrase type", title_justify="left")
        by_type.add_column("method", no_wrap=True)
        for t in types:
            by_type.add_column(t, justify="right", no_wrap=True)
        for method, m in metrics.items():
            by_type.add_row(escape(method), *[f"{m['phrase_types'][t]['accuracy']:.1f}" if t in m["phrase_types"] else ""
                                              for t in types])
        console.print(by_type)
    chance = next(iter(metrics.values()))["chance"]
    console.print(f"chance (uniform pick among candidates): {chance:.2f}%; wall {record['timing']['wall_s']:.1f}s")


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import collect, render

    rows = collect(_store(args), args.benchmark, reported=not args.no_reported,
                   warn=lambda s: errors.print(f"[yellow]warning:[/] {escape(s)}", soft_wrap=True), latest=args.latest)
    text = render(rows, args.format, console)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import registry

    reg = registry()
    table = Table(title="refbench components", title_justify="left")
    for col in ("kind", "name", "plugin", "package", "version", "summary"):
        table.add_column(col)
    for info in reg.components():
        doc = (info.cls.__doc__ or "").strip().splitlines()
        table.add_row(info.kind, escape(info.name), escape(info.plugin), escape(info.package), info.version,
                      escape(doc[0]) if doc else "")
    console.print(table)
    for b in reg.broken:
        errors.print(f"[red]plugin {escape(repr(b.plugin))} ({escape(b.package)}, {escape(b.target)}) failed to load:[/] "
                     f"{escape(b.error)}", soft_wrap=True)
    return 1 if reg.broken and args.strict else 0


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
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import build

    config = load_config(args.config)
    bench = build(config)
    console.print(f"{args.config}: ok ({len(bench.dataset)} images, methods: {', '.join(m.id for m in bench.methods)})")
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
    lb.set_defaults(handler=cmd_leaderboard)

    pl = sub.add_parser("plugins", help="list installed components")
    pl.add_argument("--strict", action="store_true", help="exit 1 if a plugin failed to load")
    pl.set_defaults(handler=cmd_plugins)

    s = sub.add_parser("synth", help="generate the SynthRef data set (RefCOCO's on-disk format)")
    s.add_argument("root", nargs="?", default="data/synthref")
    s.add_argument("--seed", type=int, default=0)
    for split in ("train", "val", "testA", "testB"):
        s.add_argument(f"--{split}", type=int, metavar="N", help=f"images in {split}")
    s.add_argument("--canvas", type=int, help="image side in pixels")
    s.add_argument("--objects", type=int, nargs=2, metavar=("MIN", "MAX"), help="objects per scene")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(handler=cmd_synth)

    v = sub.add_parser("validate", help="check a benchmark YAML, its plugins and its data without running it")
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
        errors.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        errors.print("interrupted: predictions so far are saved; rerun the same command to resume")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
