"""`refbench show`: cards re-scored with the run's components, filters, the PNG grid, bad input, and
the page opened in a headless Chromium with every image loaded."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from refbench.cli import main
from refbench.results import Store
from refbench.show import show

from conftest import bench_yaml

METHODS = """  - {id: largest, scorer: {plugin: largest}}
  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn}}
  - {id: mix, combine: {plugin: mean_logits, of: [largest, clip]}}"""


@pytest.fixture(scope="module")
def run(synth_root, tmp_path_factory):
    """A completed tiny run (testA) and its results folder."""
    folder = tmp_path_factory.mktemp("show")
    config = folder / "bench.yaml"
    config.write_text(bench_yaml(synth_root, METHODS, splits="[testA]"))
    results = folder / "res"
    assert main(["run", str(config), "--results", str(results), "-q"]) == 0
    run_id = next(results.iterdir()).name
    return results, run_id


def journal(results: Path, run_id: str, method: str) -> list[dict]:
    lines = (results / run_id / "predictions.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["method"] == method]


def test_cards_carry_probabilities_and_agree_with_the_journal(run, tmp_path):
    results, run_id = run
    for method, note in (("clip", "views by clip's prompter"), ("mix", "views by clip's prompter"),
                         ("largest", "candidates drawn on the image")):
        out, cards = show(Store(results), run_id[-6:], tmp_path / f"{method}.html", method=method, n=6, k=3)
        assert len(cards) == 6 and [c.record["sent_id"] for c in cards] == sorted(c.record["sent_id"] for c in cards)
        for c in cards:
            assert c.record["method"] == method and c.agrees, (method, c.record["sent_id"], c.choice)
            assert c.probs.sum() == pytest.approx(1.0) and len(c.probs) == c.record["candidates"]
            assert len(c.thumbs) == min(3, len(c.probs)) and c.note.startswith(note)
            assert [t[2] for t in c.thumbs].count(True) <= 1  # the journal's choice, framed when in the top k
        page = html.unescape(out.read_text())
        assert page.count("<article") == 6 and "equal the journal's for 6 of 6 phrases" in page
        assert f"{method}: accuracy % per phrase type (whiskers: 95% intervals)" in page and run_id in page


def test_filters_and_seeded_sample(run, tmp_path, capsys):
    results, run_id = run
    records = journal(results, run_id, "clip")
    misses = [r for r in records if not r["hit"] and r["phrase_type"] == "location"]
    assert misses, "the untrained CLIP misses some location phrases"
    out = tmp_path / "misses.html"
    assert main(["show", run_id, "--results", str(results), "--method", "clip", "--only", "misses", "--type", "location",
                 "--n", "3", "--out", str(out)]) == 0
    assert "re-scored choices equal the journal's" in capsys.readouterr().out
    page = html.unescape(out.read_text())
    shown = [int(s) for s in re.findall(r"data-sent-id=(\d+)", page)]
    assert len(shown) == min(3, len(misses)) and set(shown) <= {r["sent_id"] for r in misses}
    assert f"filters: misses, type location; {len(shown)} of {len(misses)} matching" in page
    again = [c.record["sent_id"] for c in show(Store(results), run_id, tmp_path / "b.html", "clip", "misses", "location", 3)[1]]
    other = [c.record["sent_id"] for c in show(Store(results), run_id, tmp_path / "c.html", "clip", None, None, 5, seed=1)[1]]
    assert again == shown and other != [r["sent_id"] for r in sorted(records, key=lambda r: r["sent_id"])[:5]]
    _, hits = show(Store(results), run_id, tmp_path / "d.html", "largest", "hits", n=100)
    assert hits and all(c.record["hit"] for c in hits) and len(hits) == sum(r["hit"] for r in journal(results, run_id, "largest"))


def test_png_grid(run, tmp_path):
    results, run_id = run
    out = tmp_path / "grid.png"
    assert main(["show", run_id, "--results", str(results), "--method", "mix", "--n", "5", "--k", "2", "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 4 * 256 and im.height > 2 * 256


def test_a_choice_that_differs_from_the_journal_is_shown_and_missing_intervals_are_named(run, tmp_path):
    results, run_id = run
    copy = tmp_path / "res"
    shutil.copytree(results / run_id, copy / run_id)
    path = copy / run_id / "predictions.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    target = next(r for r in sorted(lines, key=lambda r: r["sent_id"]) if r["method"] == "largest" and r["candidates"] > 1)
    target["chosen"] = (target["chosen"] + 1) % target["candidates"]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    record = json.loads((copy / run_id / "run.json").read_text())
    for t in record["metrics"]["largest"]["phrase_types"].values():
        del t["ci95"]  # as in runs made before intervals were recorded
    (copy / run_id / "run.json").write_text(json.dumps(record))
    out, cards = show(Store(copy), run_id, tmp_path / "x.html", "largest", n=1000)
    wrong = [c for c in cards if not c.agrees]
    assert [c.record["sent_id"] for c in wrong] == [target["sent_id"]]
    page = html.unescape(out.read_text())
    assert f"differs from the journal's #{target['chosen']}" in page and f"differ for sent_id {target['sent_id']}" in page
    assert "largest: accuracy % per phrase type (no intervals recorded in this run)" in page


@pytest.mark.parametrize("argv, words", [
    (["nope"], "no run 'nope'"),
    (["RUN", "--method", "foo"], "has no method 'foo'; its methods: largest, clip, mix"),
    (["RUN", "--type", "colour"], "has no phrases of type 'colour'; its types: attribute"),
    (["RUN", "--n", "0"], "--n 0 is not positive"),
])
def test_bad_input_is_one_line(run, tmp_path, capsys, argv, words):
    results, run_id = run
    argv = [run_id if a == "RUN" else a for a in argv]
    assert main(["show", *argv, "--results", str(results), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("error:") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.html").exists()


PROBE = ("<script>addEventListener('load', () => { document.title = 'IMAGES ' + [...document.images]"
         ".map(i => i.complete ? i.naturalWidth : -1).join(','); });</script>")


def test_page_renders_in_headless_chromium_with_every_image_loaded(run, tmp_path, chromium):
    results, run_id = run
    out, cards = show(Store(results), run_id, tmp_path / "page.html", "clip", n=4)
    probed = tmp_path / "probed.html"
    probed.write_text(out.read_text().replace("</body>", PROBE + "</body>"))
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120).stdout
    widths = [int(w) for w in re.search(r"<title>IMAGES ([-\d,]*)</title>", dom).group(1).split(",")]
    assert len(widths) == 1 + len(cards) + sum(len(c.thumbs) for c in cards)  # the chart, each image, each candidate
    assert all(w > 0 for w in widths), widths
    shot = tmp_path / "page.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1280,1400", out.as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        assert im.size == (1280, 1400) and len(im.convert("L").getcolors(1 << 16) or []) > 50  # not a blank page
