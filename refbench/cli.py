"""``refbench``: run benchmarks, show the leaderboard, list plugins, make SynthRef (arguments here,
the work in :mod:`refbench.commands`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from rich.markup import escape

from .commands import (SYNTH_LAYOUTS, cmd_compare, cmd_leaderboard, cmd_plugins, cmd_run, cmd_synth, cmd_validate,
                       errors)
from .errors import RefbenchError


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
    lb.add_argument("--format", choices=["table", "markdown", "csv", "json", "html"], default="table",
                    help="html: one self-contained page with the tables and a plot of each accuracy's 95%% interval")
    lb.add_argument("--out", metavar="PATH", help="write the leaderboard here (atomically) instead of to stdout")
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
