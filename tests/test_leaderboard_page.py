"""``refbench leaderboard --format html``: one self-contained page, its tables equal to the
leaderboard's rows, its plot drawn per split, and the page opened in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from refbench.cli import main
from refbench.leaderboard import collect
from refbench.leaderboard_page import SPLIT_COLOURS
from refbench.results import Store

from conftest import COMMITTED_RUNS, committed_run


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Copies of the committed runs' records: the committed folder is only read."""
    root = tmp_path_factory.mktemp("results")
    for run_id in COMMITTED_RUNS:
        (root / run_id).mkdir()
        shutil.copy(committed_run(run_id) / "run.json", root / run_id / "run.json")
    return root


class Cells(HTMLParser):
    """Each table's rows as lists of cell texts, and every image's source."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        if tag in ("script", "link") or (attrs.get("src") or "").startswith("http"):
            self.external.append(tag)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None


def write_page(results, tmp_path, *extra):
    out = tmp_path / "board.html"
    assert main(["leaderboard", "--results", str(results), "--format", "html", "--out", str(out), *extra]) == 0
    return out


def test_the_page_holds_every_row_with_its_interval(results, tmp_path):
    out = write_page(results, tmp_path, "--benchmark", "synthref/unc", "--no-reported")
    parsed = Cells()
    parsed.feed(out.read_text())
    rows = collect(Store(results), "synthref/unc", reported=False)
    assert parsed.external == [] and all(src.startswith("data:image/png;base64,") for src in parsed.images)
    assert len(parsed.tables) == len(parsed.images) == 1  # one data set and rule: one table, one plot
    head, *body = parsed.tables[0]
    assert head[:2] == ["benchmark", "method"] and len(body) == len(rows)
    shown = {(cells[0], cells[1]): cells for cells in body}
    for r in rows:
        cells = shown[(r.benchmark, r.method)]
        for split, value in r.splits.items():
            lo, hi = r.ci[split]
            assert cells[head.index(split)] == f"{value:.2f} ± {(hi - lo) / 2:.2f}"


def test_the_plot_draws_each_split_in_its_colour(results, tmp_path):
    out = write_page(results, tmp_path, "--benchmark", "synthref_testB", "--no-reported")
    (src,) = re.findall(r"src='data:image/png;base64,([^']+)'", out.read_text())
    with Image.open(io.BytesIO(base64.b64decode(src))) as plot:
        colours = {c for _, c in plot.convert("RGB").getcolors(1 << 20)}
    assert SPLIT_COLOURS[0] in colours  # testB, the only split
    assert SPLIT_COLOURS[1] not in colours
    both = write_page(results, tmp_path, "--benchmark", "synthref_baselines", "--no-reported")
    (src,) = re.findall(r"src='data:image/png;base64,([^']+)'", both.read_text())
    with Image.open(io.BytesIO(base64.b64decode(src))) as plot:
        colours = {c for _, c in plot.convert("RGB").getcolors(1 << 20)}
    assert set(SPLIT_COLOURS[:3]) <= colours  # val, testA, testB


@pytest.mark.parametrize("argv, words", [
    (["--format", "html", "--out", "{tmp}/missing/board.html"], "no folder"),
    (["--out", "{tmp}/board.html"], "--out writes markdown, csv, json or html"),
])
def test_bad_output_is_one_line_and_writes_nothing(results, tmp_path, capsys, argv, words):
    (tmp_path / "board.html").write_text("kept")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["leaderboard", "--results", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("error:") == 1 and "Traceback" not in err
    assert (tmp_path / "board.html").read_text() == "kept" and not (tmp_path / "missing").exists()


PROBE = ("<script>addEventListener('load', () => { document.title = 'PAGE ' + [...document.images]"
         ".map(i => i.complete ? i.naturalWidth : -1).join(',') + ' ROWS ' + document.querySelectorAll('tbody tr').length; });"
         "</script>")


def test_the_page_renders_in_headless_chromium(results, tmp_path, chromium):
    out = write_page(results, tmp_path)
    rows = collect(Store(results))
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120).stdout
    widths, shown = re.search(r"<title>PAGE ([-\d,]*) ROWS (\d+)</title>", dom).groups()
    widths = [int(w) for w in widths.split(",")]
    tables = len({r.dataset for r in rows})  # here each data set has one rule
    assert len(widths) == tables and all(w > 0 for w in widths), widths
    assert int(shown) >= len(rows)  # published rows join every table of their data set
    shot = tmp_path / "board.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,1400", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        assert im.size == (1280, 1400) and len(im.convert("L").getcolors(1 << 16) or []) > 50  # not a blank page
