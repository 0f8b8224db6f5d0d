"""Tables fit the terminal: ids whole, free text cut with "…", the rest behind --wide; piped output is never cut."""

from __future__ import annotations

import io
import re
import shutil

import pytest
from rich.console import Console

from refbench import commands
from refbench.cli import main
from refbench.leaderboard import Row, _short_id, collect, render
from refbench.plugins import registry
from refbench.results import Store
from refbench.tables import Col, TableRow, layout, show

from conftest import COMMITTED_RUNS, REPO, committed_run

RUN_ID = re.compile(r"\d{8}-\d{6} [0-9a-f]{6}")  # the leaderboard's short run id
LONG = "A summary long enough that no eighty-column terminal can hold it beside the other columns, ever."


def console(width: int | None = 80) -> Console:
    return Console(width=width, file=io.StringIO(), color_system=None)


def lines_of(con: Console) -> list[str]:
    return con.file.getvalue().splitlines()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The committed runs' records, copied: the committed folder is only read."""
    root = tmp_path_factory.mktemp("results")
    for run_json in [committed_run(r) / "run.json" for r in COMMITTED_RUNS]:
        (root / run_json.parent.name).mkdir()
        shutil.copy(run_json, root / run_json.parent.name / "run.json")
    assert len(list(root.iterdir())) >= 2
    return root


@pytest.fixture
def terminal(monkeypatch):
    """The CLI's console as a terminal of ``width`` columns would make it (COLUMNS set, output captured)."""
    def make(width: int | None) -> None:
        if width is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", str(width))
        monkeypatch.setattr(commands, "console", Console(color_system=None))  # reads COLUMNS now, not at import

    return make


COLS = [Col("kind"), Col("name"), Col("package", drop=2), Col("version", drop=1), Col("summary", cut=True, min_width=20)]
ROWS = [("scorer", "a-rather-long-component-name", "refbench-some-plugin-package", "10.20.30", LONG),
        ("dataset", "refer", "refbench", "0.1.0", "Short.")]


def test_fit_keeps_ids_whole_cuts_text_and_hides_optional_columns():
    con = console(80)
    hidden = show(con, COLS, ROWS, title="components", wide=False)
    out = lines_of(con)
    assert max(map(len, out)) <= 80
    assert hidden == ["package"]  # version went first, then package; version alone fits again
    row = next(x for x in out if "scorer" in x)
    assert "a-rather-long-component-name" in row and "10.20.30" in row
    assert "…" in row and LONG not in "".join(out)
    assert "refbench-some-plugin-package" not in "".join(out)


def test_a_column_hidden_early_comes_back_when_it_fits():
    cols = [Col("id"), Col("a" * 10, drop=1), Col("b" * 50, drop=2), Col("c" * 10, drop=3)]
    table, hidden = layout(console(60), cols, [("x", "1", "2", "3")], wide=False)
    assert [c.header for c in table.columns] == ["id", "a" * 10, "c" * 10]  # b had to go too; then a fits again
    assert hidden == ["b" * 50]


def test_empty_columns_are_left_out_and_sections_kept():
    con = console(80)
    show(con, COLS[:2] + [Col("empty", drop=5)], [TableRow(("a", "b", "")), TableRow(("c", "d", ""), section=True)],
         wide=False)
    text = con.file.getvalue()
    assert "empty" not in text and "├" in text


def test_wide_shows_every_column_in_full_past_the_edge():
    con = console(80)
    assert show(con, COLS, ROWS, wide=True) == []
    out = lines_of(con)
    assert any(len(x) > 80 for x in out)
    text = "\n".join(out)
    assert LONG in text and "…" not in text and all(c.header in text for c in COLS)


def test_essentials_wider_than_the_terminal_stay_whole():
    con = console(30)
    show(con, [Col("name"), Col("summary", cut=True, drop=1)], [("x" * 40, LONG)], wide=False)
    assert "x" * 40 in con.file.getvalue() and "summary" not in con.file.getvalue()


def test_piped_output_is_wide_unless_columns_is_set(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    con = console(None)  # a file, not a terminal, and no COLUMNS: nothing cut or hidden, one line a row
    assert not con.is_terminal
    assert show(con, COLS, ROWS) == []
    text = con.file.getvalue()
    assert LONG in text and "…" not in text
    monkeypatch.setenv("COLUMNS", "80")  # an explicit width is honoured even when piped
    con = console(None)
    assert show(con, COLS, ROWS) == ["package"]
    assert max(map(len, lines_of(con))) <= 80


def test_leaderboard_render_fits_80_columns(results):
    rows = collect(Store(results))
    con = console(80)
    assert render(rows, "table", con, wide=False) is None
    out = lines_of(con)
    assert max(map(len, out)) <= 80
    for r in rows:  # every method name appears whole on one line
        name = r.method + (" (reported)" if r.source == "reported" else "")
        assert any(f"│ {name} " in x for x in out), name
    shown = [x for x in out if "2026" in x]
    assert shown and all(RUN_ID.search(x) for x in shown)  # a run id is never broken
    assert out[-1].startswith("hidden to fit: ") and "--wide" in out[-1]


def test_leaderboard_wide_and_cut_citations():
    runs = [Row(dataset="d", benchmark="bench-with-a-long-name (first 100 images)", method="a-method-name-that-is-long",
                splits={"testA": 12.5, "testB": 50.0}, overall=31.25, upper_bound=90.0, n=1234, run_id=f"20260101-000000-b-{h}",
                source="run", rule="IoU > 0.5") for h in ("abcdef", "123456")]
    cite = "Someone et al. a citation much longer than the space that is left for it in a terminal"
    reported = Row(dataset="d", benchmark="(reported)", method="Published", splits={"testA": 80.0}, source="reported",
                   citation=cite)
    con = console(150)
    render([*runs, reported], "table", con, wide=False)
    out = lines_of(con)
    assert max(map(len, out)) <= 150
    assert "…" in next(x for x in out if "Published" in x)
    for r in runs:
        assert any(_short_id(r) in x and r.benchmark in x and r.method in x for x in out)
    con = console(80)
    render([*runs, reported], "table", con, wide=True)
    text = con.file.getvalue()
    assert cite.split(",")[0] in text and "upper bound" in text and "…" not in text


def test_cli_plugins_at_80_columns(terminal, capsys):
    terminal(80)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert max(map(len, out)) <= 80
    infos = registry().components()
    for info in infos:
        assert any(f"│ {info.kind} " in x and f" {info.name} " in x for x in out), info.name
    longest = max((i.summary for i in infos), key=len)
    if len(longest) > 40:  # cut with an ellipsis, or the whole column hidden (and said so)
        assert longest not in "\n".join(out)
        assert any("…" in x for x in out) or ("hidden to fit:" in out[-1] and "summary" in out[-1])
    terminal(80)
    assert main(["plugins", "--wide"]) == 0
    text = capsys.readouterr().out
    assert all(h in text for h in ("kind", "name", "plugin", "package", "version", "summary"))
    assert longest in text and "hidden" not in text


def test_cli_piped_plugins_are_never_cut(terminal, capsys):
    terminal(None)
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "hidden" not in out
    for info in registry().components():
        assert any(info.name in x and info.package in x and info.summary in x for x in out.splitlines())


def test_cli_leaderboard_at_80_columns_and_wide(terminal, capsys, results):
    terminal(80)
    assert main(["leaderboard", "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert max(map(len, out)) <= 80
    assert all(RUN_ID.search(x) for x in out if "2026" in x)
    terminal(80)
    assert main(["leaderboard", "--results", str(results), "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "upper bound" in wide and "run / source" in wide and "hidden" not in wide
    ids = {_short_id(r) for r in collect(Store(results)) if r.source == "run"}
    assert ids and all(i in wide for i in ids)
    terminal(80)  # the other formats are not tables: unchanged
    assert main(["leaderboard", "--results", str(results), "--format", "csv", "--wide"]) == 0
    assert capsys.readouterr().out.startswith("dataset,benchmark,method,")


def test_run_summary_fits(terminal, capsys, results):
    import json

    record = json.loads(next(results.glob("*baselines*/run.json")).read_text())
    terminal(60)
    commands._print_run(record)
    out = capsys.readouterr().out.splitlines()
    assert max(map(len, out)) <= 60
    assert all(any(f"│ {m} " in x for x in out) for m in record["metrics"])
    assert any("upper bound" in x and "leaderboard --wide" in x for x in out)


def test_reported_rows_parse_and_each_cites_its_source():
    from refbench.leaderboard import reported_rows

    rows = reported_rows()
    assert rows and all(r.citation and r.splits and all(0 < v < 100 for v in r.splits.values()) for r in rows)
    zoo = {(r.method, r.dataset) for r in rows}
    for method in ("ReCLIP (zero-shot)", "FGVP (zero-shot)", "red circle (zero-shot)", "red circle (FGVP's run)",
                   "CPT-adapted (ReCLIP's run)", "CPT-adapted (FGVP's run)"):
        assert {(method, d) for d in ("refcoco/unc", "refcoco+/unc", "refcocog/umd")} <= zoo, method
    assert all("Table" in r.citation or "README" in r.citation for r in rows if r.method.startswith(("ReCLIP", "FGVP", "red circle")))
