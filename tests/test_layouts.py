"""RefCOCO's download layouts (lmms-lab parquet, jxu124 parquet, MDETR JSON) read for real from SynthRef
written in each: the same benchmark gives the same predictions and metrics as refer's layout; rows
without a ref are excluded and counted; bad files are named in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refbench import RefbenchError
from refbench.builtins.datasets import ReferDataset
from refbench.builtins.jxu124 import Jxu124Dataset
from refbench.builtins.lmms_lab import LmmsLabDataset
from refbench.builtins.mdetr import MdetrDataset
from refbench.builtins.reconcile import SYNTH_BASE
from refbench.cli import main
from refbench.config import load_config
from refbench.plugins import registry
from refbench.results import Store, read_record
from refbench.run import run_benchmark

from conftest import REPO, TINY

SPLITS = ["val", "testA", "testB"]
METHODS = """
  - {id: random, scorer: {plugin: random, seed: 0}}
  - {id: largest, scorer: {plugin: largest}}
  - {id: oracle, scorer: {plugin: oracle}}
  - {id: crop-random, prompter: {plugin: crop}, scorer: {plugin: random, seed: 1}}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY SynthRef and its three download layouts, written through `refbench synth --layouts`."""
    root = tmp_path_factory.mktemp("layouts")
    args = ["synth", str(root), "--seed", str(TINY.seed), *[a for s, n in TINY.images.items() for a in (f"--{s}", str(n))],
            "--layouts", "-q"]
    assert main(args) == 0
    return root


def dataset_block(root: Path, layout: str, **extra: str) -> str:
    refs = f"{root}/synthref/refs(unc).p"
    common = f"dataset: synthref, splits: [{', '.join(SPLITS)}]"
    blocks = {
        "refer": f"plugin: refer, root: {root}, images: {root}/images",
        "lmms_lab": f"plugin: lmms_lab, root: {root}/lmms-lab/synthref, refs: '{refs}'",
        "jxu124": f"plugin: jxu124, root: {root}/jxu124/synthref/data, images: {root}/images, refs: '{refs}'",
        "mdetr": f"plugin: mdetr, root: {root}/mdetr, images: {root}/images, refs: '{refs}'",
    }
    more = "".join(f", {k}: {v}" for k, v in extra.items())
    return "{" + blocks[layout] + ", " + common + more + "}"


def run(root: Path, tmp: Path, layout: str, **extra: str) -> tuple[dict, list[dict]]:
    text = f"""
name: layouts
dataset: {dataset_block(root, layout, **extra)}
proposer: {{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}
runner: {{workers: 0}}
methods:
{METHODS}
"""
    path = tmp / f"{layout}.yaml"
    path.write_text(text)
    done = run_benchmark(load_config(path), Store(tmp / f"results-{layout}"))
    lines = [json.loads(x) for x in done.journal.path.read_text().splitlines()]
    return read_record(done.dir), sorted(lines, key=lambda p: (p["method"], p["sent_id"]))


def options(cls, **kw):
    return cls.Options(dataset="synthref", splits=SPLITS, **kw)


def test_four_layouts_give_identical_predictions_and_metrics(root, tmp_path):
    refer_record, refer_lines = run(root, tmp_path, "refer")
    assert len(refer_lines) == 4 * refer_record["metrics"]["random"]["n"] > 0
    for layout in ("lmms_lab", "jxu124", "mdetr"):
        record, lines = run(root, tmp_path, layout)
        assert record["dataset_key"] == refer_record["dataset_key"] == "synthref/unc", layout
        assert lines == refer_lines, layout  # every field: sent_id, text, phrase type, chosen box, IoU, hit
        assert record["metrics"] == refer_record["metrics"], layout
        data = record["data"]["dataset"]
        assert data["ids"] == "refer" and data["matched"] == data["rows"] > 0 and data["unmatched"] == 0, layout
        assert data["refer_refs_missing"] == 0 and all(len(h) == 64 for h in data["files"].values()), layout
    assert {"lmms_lab", "jxu124", "mdetr"} <= {i.name for i in registry().components() if i.kind == "dataset"}


def test_images_come_from_the_embedded_bytes(root, tmp_path):
    d = LmmsLabDataset(options(LmmsLabDataset, root=root / "lmms-lab" / "synthref", images=tmp_path / "img"))
    for item in d:
        assert item.path.parent == tmp_path / "img"
        assert item.path.read_bytes() == (root / "images" / item.path.name).read_bytes()
    again = LmmsLabDataset(options(LmmsLabDataset, root=root / "lmms-lab" / "synthref", images=tmp_path / "img"))
    assert [(i.path, i.width, i.height) for i in again] == [(i.path, i.width, i.height) for i in d]


def test_without_refs_ids_are_refers_only_where_the_layout_carries_them(root):
    refer = ReferDataset(options(ReferDataset, root=root, images=root / "images"))
    jxu = Jxu124Dataset(options(Jxu124Dataset, root=root / "jxu124" / "synthref", images=root / "images"))
    assert jxu.key() == "synthref/unc" and jxu.ids == "refer"
    strip = lambda ds: [(i.image_id, [(r.sent_id, r.ref_id, r.ann_id, r.text, r.box, r.split) for r in i.refs]) for i in ds]
    assert strip(jxu) == strip(refer)  # everything but SynthRef's phrase types, which only refer's refs carry

    lmms = LmmsLabDataset(options(LmmsLabDataset, root=root / "lmms-lab" / "synthref"))
    assert lmms.key() == "synthref/unc~lmms-lab-ids" and lmms.ids == "synthesised" and lmms.text == "raw"
    by_ann = {}
    for item in refer:
        for r in item.refs:
            by_ann.setdefault(r.ann_id, []).append(r)
    for item in lmms:
        for r in item.refs:
            k = r.sent_id - SYNTH_BASE - 100 * r.ann_id
            assert 0 <= k < 100 and by_ann[r.ann_id][k].text == r.text and r.ref_id == r.ann_id
    again = LmmsLabDataset(options(LmmsLabDataset, root=root / "lmms-lab" / "synthref"))
    assert [r.sent_id for i in again for r in i.refs] == [r.sent_id for i in lmms for r in i.refs]  # stable
    mdetr = MdetrDataset(options(MdetrDataset, root=root / "mdetr", images=root / "images"))
    assert mdetr.key() == "synthref/unc~mdetr-ids"
    with pytest.raises(RefbenchError, match="stores refer's 'raw' sentences only"):
        LmmsLabDataset(options(LmmsLabDataset, root=root / "lmms-lab" / "synthref", text="sent"))


def with_extra_val_rows(root: Path, out: Path) -> Path:
    """The lmms-lab val file plus 5 rows refer's refs do not hold: 3 unknown ann_ids, a testA
    object filed under val, and a val object with sentences refer does not have."""
    folder = out / "data"
    folder.mkdir(parents=True)
    src = root / "lmms-lab" / "synthref" / "data"
    for split in ("testA", "testB"):
        (folder / f"{split}-00000-of-00001.parquet").write_bytes((src / f"{split}-00000-of-00001.parquet").read_bytes())
    val = pq.read_table(src / "val-00000-of-00001.parquet")
    rows = val.to_pylist()
    testA = pq.read_table(src / "testA-00000-of-00001.parquet").to_pylist()
    extra = [dict(rows[k], question_id=str(900000 + k)) for k in range(3)]
    extra.append(dict(testA[0]))
    extra.append(dict(rows[5], answer=["the one nobody described"]))
    pq.write_table(pa.Table.from_pylist(rows + extra, schema=val.schema), folder / "val-00000-of-00001.parquet")
    return out


def test_unmatched_val_rows_are_excluded_counted_and_kept_apart(root, tmp_path, capsys):
    extended = with_extra_val_rows(root, tmp_path / "lmms")
    refs = root / "synthref" / "refs(unc).p"
    refer = ReferDataset(options(ReferDataset, root=root, images=root / "images"))
    d = LmmsLabDataset(options(LmmsLabDataset, root=extended, refs=refs))
    err = capsys.readouterr().err
    assert "lmms-lab: 5 of" in err and "excluded" in err and "val 5" in err
    assert d.tally.unmatched == 5 and d.tally.kept_unmatched == 0 and d.key() == "synthref/unc"
    assert d.tally.reasons == {"ann_id not in refs": 3, "other split": 1, "sentences differ": 1}
    assert [(i.image_id, i.refs) for i in d] == [(i.image_id, i.refs) for i in refer]  # the testA row still counts once
    assert d.describe()["unmatched"] == 5 and d.describe()["unmatched_by_split"] == {"val": 5}

    kept = LmmsLabDataset(options(LmmsLabDataset, root=extended, refs=refs, unmatched="keep"))
    # Kept: the 3 unknown objects; the other 2 are objects refer's rows already hold.
    assert kept.key() == "synthref/unc+lmms-lab-unmatched" and (kept.tally.kept_unmatched, kept.tally.duplicates) == (3, 2)
    extra = [r for i in kept for r in i.refs if r.sent_id >= SYNTH_BASE]
    assert {r.ann_id for r in extra} == {900000, 900001, 900002} and all(r.split == "val" for r in extra)
    assert [r for i in kept for r in i.refs if r.sent_id < SYNTH_BASE] == [r for i in refer for r in i.refs]

    # A run records the counts and ranks under refer's key.
    (tmp_path / "b.yaml").write_text(f"""
name: extra
dataset: {{plugin: lmms_lab, root: {extended}, refs: '{refs}', dataset: synthref, splits: [val]}}
proposer: {{plugin: gt}}
methods:
  - {{id: oracle, scorer: {{plugin: oracle}}}}
""")
    record = read_record(run_benchmark(load_config(tmp_path / "b.yaml"), Store(tmp_path / "r")).dir)
    assert record["dataset_key"] == "synthref/unc" and record["data"]["dataset"]["unmatched"] == 5
    assert record["metrics"]["oracle"]["n"] == sum(len(i.refs) for i in refer if i.refs[0].split == "val")


def test_a_file_missing_columns_is_named_in_one_line(root, tmp_path):
    table = pq.read_table(root / "lmms-lab" / "synthref" / "data" / "val-00000-of-00001.parquet")
    (tmp_path / "data").mkdir()
    pq.write_table(table.drop_columns(["answer", "bbox"]), tmp_path / "data" / "val-00000-of-00001.parquet")
    problems = LmmsLabDataset.check(LmmsLabDataset.Options(root=tmp_path, dataset="synthref", splits=["val", "testA"]))
    text = [str(p) for p in problems]
    assert len(text) == 2 and "missing columns answer, bbox; the lmms-lab layout has question_id" in text[0]
    assert "no testA-*.parquet" in text[1] and "its splits are: val" in text[1]
    jxu = Jxu124Dataset.check(Jxu124Dataset.Options(root=tmp_path, images=root / "images", dataset="synthref", splits=["val"]))
    assert len(jxu) == 1 and "missing columns ref_id, ann_id, image_id, split, sentences, bbox, raw_image_info" in str(jxu[0])


def test_boxes_in_the_other_format_are_refused_not_swapped(root, tmp_path):
    src = root / "lmms-lab" / "synthref" / "data" / "val-00000-of-00001.parquet"
    table = pq.read_table(src)
    xyxy = [[x, y, x + w, y + h] for x, y, w, h in table.column("bbox").to_pylist()]
    (tmp_path / "l" / "data").mkdir(parents=True)
    pq.write_table(table.set_column(table.schema.get_field_index("bbox"), "bbox", pa.array(xyxy, pa.list_(pa.float32()))),
                   tmp_path / "l" / "data" / "val-00000-of-00001.parquet")
    with pytest.raises(RefbenchError, match=r"val-00000-of-00001.parquet row \d+ \(question_id \d+, .*read as xywh "
                                            r"\(lmms-lab's format\).*beyond the 128x128 image.*looks like xyxy") as exc:
        LmmsLabDataset(LmmsLabDataset.Options(root=tmp_path / "l", dataset="synthref", splits=["val"], images=tmp_path / "i"))
    assert "\n" not in str(exc.value)

    src = root / "jxu124" / "synthref" / "data" / "validation-00000-of-00001.parquet"
    table = pq.read_table(src)
    xywh = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in table.column("bbox").to_pylist()]
    (tmp_path / "j").mkdir()
    pq.write_table(table.set_column(table.schema.get_field_index("bbox"), "bbox", pa.array(xywh, pa.list_(pa.float64()))),
                   tmp_path / "j" / "validation-00000-of-00001.parquet")
    with pytest.raises(RefbenchError, match=r"row \d+ \(ref_id \d+, ann_id \d+\): bbox .* read as xyxy \(jxu124's format\): "
                                            r"x2 < x1 or y2 < y1.*looks like xywh"):
        Jxu124Dataset(Jxu124Dataset.Options(root=tmp_path / "j", images=root / "images", dataset="synthref", splits=["val"]))


def test_embedded_image_bytes_that_do_not_decode_name_the_row(root, tmp_path):
    table = pq.read_table(root / "lmms-lab" / "synthref" / "data" / "testB-00000-of-00001.parquet")
    rows = table.to_pylist()
    rows[3]["image"] = {"bytes": rows[3]["image"]["bytes"][:200], "path": None}  # a truncated JPEG
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "data" / "testB-00000-of-00001.parquet")
    with pytest.raises(RefbenchError, match=rf"row 3 \(question_id {rows[3]['question_id']}, file_name "
                                            rf"{rows[3]['file_name']}\): embedded image does not decode"):
        LmmsLabDataset(LmmsLabDataset.Options(root=tmp_path, dataset="synthref", splits=["testB"]))


def test_jxu124_files_are_not_splits_and_mdetr_names_missing_files(root, tmp_path):
    # The file named "test" holds testA rows: rows are chosen by their own split column.
    testA = Jxu124Dataset(Jxu124Dataset.Options(root=root / "jxu124" / "synthref", images=root / "images",
                                                dataset="synthref", splits=["testA"]))
    assert {r.split for i in testA for r in i.refs} == {"testA"} and len(testA) == TINY.images["testA"]
    with pytest.raises(RefbenchError, match="no row in split 'testC'.*the rows' splits are: testA, testB, train, val"):
        Jxu124Dataset(Jxu124Dataset.Options(root=root / "jxu124" / "synthref", images=root / "images",
                                            dataset="synthref", splits=["testC"]))
    problems = MdetrDataset.check(MdetrDataset.Options(root=root / "mdetr", images=tmp_path / "none", dataset="synthref",
                                                       splits=["test"], refs=tmp_path / "refs(unc).p"))
    text = " | ".join(map(str, problems))
    assert len(problems) == 3 and "refs file not found" in text and "image folder not found" in text
    assert "finetune_synthref_test.json" in text and "its splits here are: testA, testB, train, val" in text


def test_listing_the_datasets_imports_no_pyarrow():
    code = ("import sys\nfrom refbench.cli import parser\nfrom refbench.plugins import registry\nparser()\n"
            "names = [i.name for i in registry().components() if i.kind == 'dataset']\n"
            "print(names, 'pyarrow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['refer', 'lmms_lab', 'jxu124', 'mdetr'] False"
