"""What each ``refbench`` command does; :mod:`refbench.cli` parses the arguments and calls these."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

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
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 reports for all
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
                  + f"wall {record['timing']['wall_s']:.1f}s"
                  + (f", proposing {proposing:.1f}s" if (proposing := record["timing"].get("proposals_s", 0)) >= 0.05 else ""))


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .leaderboard import collect, render

    rows = collect(_store(args), args.benchmark, reported=not args.no_reported,
                   warn=lambda s: errors.print(f"[yellow]warning:[/] {escape(s)}", soft_wrap=True), latest=args.latest,
                   metric=args.metric)
    if args.format == "html":
        from .leaderboard_page import page

        text = page(rows, "refbench leaderboard" + (f": {args.benchmark}" if args.benchmark else ""), ci=args.ci)
    elif args.out and args.format == "table":
        raise RefbenchError("--out writes markdown, csv, json or html, not the terminal table",
                            "add --format html (or markdown, csv, json)")
    else:
        text = render(rows, args.format, console, wide=True if args.wide else None, ci=args.ci)
    if text is not None and args.out:
        from .files import write_atomic

        out = Path(args.out)
        if not out.parent.is_dir():
            raise RefbenchError(f"no folder {out.parent} for --out {out}", "create it or pick another path")
        write_atomic(out, text if text.endswith("\n") else text + "\n")
        console.print(f"wrote {out}", highlight=False)
    elif text is not None:
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
