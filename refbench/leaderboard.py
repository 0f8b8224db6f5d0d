"""The leaderboard: every completed run's methods beside published reference rows."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from importlib.resources import files
from typing import Callable

import yaml
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from .errors import RefbenchError
from .results import Store, read_record
from .tables import Col, TableRow, hidden_note, layout, wide_layout

SPLIT_ORDER = ["train", "val", "test", "testA", "testB", "testC"]


@dataclass
class Row:
    dataset: str
    benchmark: str
    method: str
    splits: dict[str, float]
    overall: float | None = None
    upper_bound: float | None = None
    n: int | None = None
    date: str = ""
    run_id: str = ""
    source: str = "run"  # "run" or "reported"
    citation: str = ""
    rule: str = ""  # the protocol's hit rule, e.g. "IoU(chosen, truth) > 0.5"; empty for published rows
    phrase_types: dict[str, float] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)  # split (or "overall") -> 95% interval; none for published rows
    interval: str = ""  # how the run made its intervals
    metric: str = "accuracy"


# --metric NAME -> (label, how to read it from a group's totals); intervals exist for accuracy only
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "accuracy": ("accuracy (%)", lambda t: t.get("accuracy")),
    "acc@0.5": ("ACC@0.5 (%)", lambda t: (t.get("acc_at") or {}).get("0.5")),
    "acc@0.75": ("ACC@0.75 (%)", lambda t: (t.get("acc_at") or {}).get("0.75")),
    "acc@0.9": ("ACC@0.9 (%)", lambda t: (t.get("acc_at") or {}).get("0.9")),
    "macc": ("mAcc over IoU 0.5:0.95 (%)", lambda t: t.get("macc")),
    "centre": ("centre-in-box accuracy (%)", lambda t: t.get("centre_accuracy")),
    "miou": ("mean IoU x 100", lambda t: None if t.get("mean_iou") is None else 100 * t["mean_iou"]),
}
CI_STYLES = ("pm", "range", "none")


def reported_rows() -> list[Row]:
    data = yaml.safe_load(files("refbench").joinpath("data/reported.yaml").read_text(encoding="utf-8"))
    return [Row(dataset=r["dataset"], benchmark="(reported)", method=r["method"], splits=dict(r["splits"]),
                source="reported", citation=r["citation"], run_id=r.get("proposals", "")) for r in data]


def run_rows(store: Store, warn: Callable[[str], None], metric: str = "accuracy") -> list[Row]:
    rows = []
    lacking: set[str] = set()
    for run_dir in store.run_dirs():
        try:
            rec = read_record(run_dir)
        except RefbenchError as exc:
            warn(f"skipping {run_dir.name}: {exc}")
            continue
        if rec.get("status") != "complete":
            continue
        try:
            limit = (rec.get("config", {}).get("runner") or {}).get("limit")
            benchmark = rec["benchmark"] + (f" (first {limit} images)" if limit else "")
            read = METRICS[metric][1]
            made = rec.get("uncertainty") or {}
            interval = (f"bootstrap over images, {made['resamples']} resamples" if "resamples" in made
                        else "Wilson, phrases as independent" if made.get("interval") == "wilson" else "")
            for method, m in rec["metrics"].items():
                if read(m) is None:
                    lacking.add(run_dir.name)  # recorded before this metric existed
                    continue
                intervals = {s: v["ci95"] for s, v in m["splits"].items() if metric == "accuracy" and v.get("ci95")}
                if metric == "accuracy" and m.get("ci95"):
                    intervals["overall"] = m["ci95"]
                rows.append(Row(
                    dataset=rec["dataset_key"], benchmark=benchmark, method=method,
                    splits={s: read(v) for s, v in m["splits"].items()}, overall=read(m),
                    upper_bound=m["upper_bound"] if metric == "accuracy" else None, n=m["n"], date=rec.get("finished", "")[:10], run_id=rec["run_id"],
                    rule=rec.get("protocol", {}).get("rule", ""),
                    phrase_types={t: read(v) for t, v in m.get("phrase_types", {}).items()}, ci=intervals,
                    interval=interval, metric=metric,
                ))
        except (KeyError, TypeError, AttributeError) as exc:
            warn(f"skipping {run_dir.name}: run.json lacks {exc}")
    if lacking:
        warn(f"{len(lacking)} run(s) recorded no {metric} and are left out (e.g. {sorted(lacking)[0]}); rerun them to get it")
    return rows


def collect(store: Store, benchmark: str | None = None, reported: bool = True,
            warn: Callable[[str], None] = lambda s: None, latest: bool = False, metric: str = "accuracy") -> list[Row]:
    """Rows for the leaderboard; ``benchmark`` filters by benchmark name or dataset key.

    ``latest`` keeps only the newest run of each (benchmark, method). ``metric`` (a key of
    :data:`METRICS`) is the number shown; published rows report accuracy only.
    """
    if metric not in METRICS:
        raise RefbenchError(f"unknown metric {metric!r}", f"use one of {', '.join(METRICS)}")
    reported = reported and metric == "accuracy"
    rows = run_rows(store, warn, metric)
    if latest:
        newest: dict[tuple[str, str], Row] = {}
        for r in rows:  # run ids sort by time
            if (r.benchmark, r.method) not in newest or r.run_id > newest[(r.benchmark, r.method)].run_id:
                newest[(r.benchmark, r.method)] = r
        rows = list(newest.values())
    if benchmark:
        rows = [r for r in rows if benchmark in (r.benchmark, r.dataset) or r.benchmark.startswith(benchmark + " (")]
    datasets = {r.dataset for r in rows} if benchmark else None
    if reported:
        rows += [r for r in reported_rows() if datasets is None or r.dataset in datasets or benchmark == r.dataset]
    return rows


def _splits(rows: list[Row]) -> list[str]:
    names = {s for r in rows for s in r.splits}
    return sorted(names, key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))


def _sort_key(r: Row) -> tuple:
    """Runs first, grouped by benchmark, best first; then the published rows."""
    main = r.overall if r.overall is not None else max(r.splits.values(), default=0.0)
    return (r.source != "run", r.benchmark if r.source == "run" else "", -main)


def _short_id(r: Row) -> str:
    """``<time>-<name>-<hash>`` without the name, which the benchmark column shows (full ids: --format json)."""
    stamp_and_name, _, digest = r.run_id.rpartition("-")
    return f"{stamp_and_name[:15]} {digest}" if r.run_id.startswith("20") and digest else r.run_id


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def _cell(r: Row, column: str, ci: str) -> str:
    """A number with its interval: ``88.33 ± 3.01`` (pm: half the interval's width) or ``88.33 [85.12, 91.13]``."""
    value = r.overall if column == "overall" else r.splits.get(column)
    interval = r.ci.get(column)
    if value is None or interval is None or ci == "none":
        return _fmt(value)
    lo, hi = interval
    return f"{value:.2f} ± {(hi - lo) / 2:.2f}" if ci == "pm" else f"{value:.2f} [{lo:.2f}, {hi:.2f}]"


def ci_note(rows: list[Row], ci: str) -> str | None:
    """What the intervals in a table are, and that published rows have none."""
    kinds = sorted({r.interval for r in rows if r.ci and r.interval})
    if ci == "none" or not kinds:
        return None
    shape = "± half the width; --ci range for the bounds" if ci == "pm" else "[low, high]"
    extra = "; none for published rows" if any(r.source == "reported" for r in rows) else ""
    return f"95% intervals ({shape}): {'; '.join(kinds)}{extra}"


def _groups(rows: list[Row]) -> dict[str, list[Row]]:
    """One table per data set and protocol rule: runs counted differently never share a table.
    Published rows join every table of their data set."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.source == "run":
            label = METRICS[r.metric][0]
            groups.setdefault(f"{r.dataset}: {label}, {r.rule}" if r.rule else f"{r.dataset}: {label}", []).append(r)
    for r in rows:
        if r.source != "run":
            titles = [t for t, g in groups.items() if g[0].dataset == r.dataset and g[0].source == "run"]
            for title in titles or [f"{r.dataset}: accuracy (%)"]:
                groups.setdefault(title, []).append(r)
    return groups


def render(rows: list[Row], fmt: str = "table", console: Console | None = None, wide: bool | None = None,
           ci: str = "pm") -> str | None:
    """``table`` prints rich tables (one per data set and protocol rule); other formats return text.

    Tables fit ``console.width`` (``wide=False``): benchmark, method, run ids and numbers are never
    wrapped or cut, citations are cut with "…", and the columns that do not fit (upper bound, n,
    run / source, benchmark, in that order) are hidden, with a line saying so; columns empty in
    every row (e.g. n for published rows) are left out. ``wide=True``
    shows every column in full, wider than the terminal if need be. ``wide=None`` (the CLI
    without ``--wide``): fit on a terminal or when COLUMNS is set, else wide, so piped output
    is never cut (see ``refbench.tables``); ``--format csv|json`` is the form to parse.
    ``ci`` shows each interval as ``pm`` (value ± half-width), ``range`` ([low, high]) or not at all
    (``none``); csv gives ``<split>_lo`` and ``<split>_hi`` columns, json the ``ci`` field.
    """
    groups = _groups(rows)
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        splits = _splits(rows)
        w = csv.writer(buf)
        columns = [*splits, "overall"]
        bounds = [f"{c}_{end}" for c in columns for end in ("lo", "hi")] if ci != "none" else []
        w.writerow(["dataset", "benchmark", "method", "metric", *columns, *bounds, "upper_bound", "n", "date", "run_id",
                    "source", "citation", "rule"])
        for r in rows:
            limits = [_fmt(r.ci[c][i]) if r.ci.get(c) else "" for c in columns for i in (0, 1)] if ci != "none" else []
            w.writerow([r.dataset, r.benchmark, r.method, r.metric, *[_fmt(r.splits.get(s)) for s in splits], _fmt(r.overall),
                        *limits, _fmt(r.upper_bound), r.n or "", r.date, r.run_id, r.source, r.citation, r.rule])
        return buf.getvalue()
    if fmt == "markdown":
        out = []
        for title, group in sorted(groups.items()):
            splits = _splits(group)
            head = ["benchmark", "method", *splits, "overall", "upper bound", "n", "date", "run / source"]
            out += [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for r in sorted(group, key=_sort_key):
                cells = [r.benchmark, r.method + (" *(reported)*" if r.source == "reported" else ""),
                         *[_cell(r, c, ci) for c in [*splits, "overall"]], _fmt(r.upper_bound),
                         str(r.n or ""), r.date, r.run_id if r.source == "run" else r.citation]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
            note = ci_note(group, ci)
            if note:
                out += [note, ""]
        return "\n".join(out)
    if fmt != "table":
        raise RefbenchError(f"unknown format {fmt!r}", "use table, markdown, csv or json")
    console = console or Console()
    if not rows:
        console.print("No completed runs yet: `refbench run benchmarks/synthref_testA.yaml`.")
    hidden: list[str] = []
    shown_ci = dropped_ci = False  # whether some table shows intervals; whether some table left them out to fit
    for title, group in sorted(groups.items()):
        splits = _splits(group)
        several = any(len(r.splits) > 1 for r in group)  # else "overall" repeats the split column
        ordered = sorted(group, key=_sort_key)
        ids = [_short_id(r) for r in ordered if r.source == "run"]
        cols = [Col("benchmark", style="cyan", drop=4), Col("method", style="bold"),
                *[Col(s, justify="right") for s in [*splits, *(["overall"] if several else [])]],
                Col("upper bound", justify="right", drop=1), Col("n", justify="right", drop=2),
                # run ids are never cut (the column is at least as wide as the widest); citations are
                Col("run / source", cut=True, min_width=max([12, *map(cell_len, ids)]), drop=3)]
        def table_rows(style: str) -> list[TableRow]:
            return [TableRow([r.benchmark, r.method + (" (reported)" if r.source == "reported" else ""),
                              *[_cell(r, c, style) for c in [*splits, *(["overall"] if several else [])]],
                              _fmt(r.upper_bound), str(r.n or ""),
                              _short_id(r) if r.source == "run" else r.citation.split(",")[0]],
                             style="dim" if r.source == "reported" else None,
                             section=r.source == "reported" and k > 0 and ordered[k - 1].source == "run")
                    for k, r in enumerate(ordered)]

        table, gone = layout(console, cols, table_rows(ci), escape(title), wide)
        if ci != "none" and table.width is not None and table.width > console.width and not wide_layout(console, wide):
            table, gone = layout(console, cols, table_rows("none"), escape(title), wide)  # numbers stay whole: intervals go
            dropped_ci = True
        else:
            shown_ci = shown_ci or any(r.ci for r in group)
        console.print(table, crop=False)
        hidden += gone
    order = ["benchmark", "method", *_splits(rows), "overall", "upper bound", "n", "run / source"]
    notes = [escape(ci_note(rows, ci) or "") if shown_ci else "",
             "95% intervals left out where they do not fit; --wide shows them" if dropped_ci else "",
             hidden_note(sorted(set(hidden), key=order.index))]
    for note in notes:
        if note:
            console.print(note, highlight=False)
    return None
