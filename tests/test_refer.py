import json
import os
import pickle
from pathlib import Path

import pytest

from refbench import RefbenchError
from refbench.refer import ReferFiles, load_detections, load_items, load_refs_pickle, select_split


def files(root: Path, dataset: str = "synthref") -> ReferFiles:
    return ReferFiles(root / dataset / "refs(unc).p", root / dataset / "instances.json", root / "images")


def test_items_follow_the_refs_and_instances(synth_root):
    with open(synth_root / "synthref" / "refs(unc).p", "rb") as f:
        raw = pickle.load(f)  # our own generated file: safe to read with pickle here
    inst = json.loads((synth_root / "synthref" / "instances.json").read_text())
    anns = {a["id"]: a for a in inst["annotations"]}
    items = load_items(files(synth_root), ["testA"])
    refs = [r for r in raw if "A" in r["split"]]
    assert sum(len(i.refs) for i in items) == sum(len(r["sentences"]) for r in refs)
    by_sent = {r.sent_id: (r, i) for i in items for r in i.refs}
    for ref in refs:
        for sent in ref["sentences"]:
            got, item = by_sent[sent["sent_id"]]
            assert got.text == sent["sent"] and got.ref_id == ref["ref_id"] and got.split == "testA"
            assert list(got.box.xywh) == pytest.approx(anns[ref["ann_id"]]["bbox"])
            assert item.image_id == ref["image_id"] and item.path.is_file()
            assert got.phrase_type == sent["phrase_type"]
    # every annotated object of the image is offered (the gt proposer and training use them)
    for item in items:
        assert {a.id for a in item.annotations} == {a["id"] for a in inst["annotations"] if a["image_id"] == item.image_id}


def test_split_semantics_are_refers():
    refs = [{"split": s} for s in ("train", "val", "testA", "testB", "testAB", "testC")]
    pick = lambda s: [r["split"] for r in select_split(refs, s)]
    assert pick("testA") == ["testA", "testAB"]
    assert pick("testB") == ["testB", "testAB"]
    assert pick("test") == ["testA", "testB", "testAB", "testC"]
    assert pick("testAB") == ["testAB"]
    assert pick("train") == ["train"]
    with pytest.raises(RefbenchError, match="unknown split 'tset'"):
        select_split(refs, "tset")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_pickle",))


def test_hostile_pickle_is_refused_and_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1, "payload": _Boom()}]))
    with pytest.raises(RefbenchError, match=r"refusing to load global 'posix.system'|refusing to load global 'os.system'"):
        load_refs_pickle(path)
    assert not (tmp_path / "pwned_by_pickle").exists()


def test_corrupt_and_wrong_shaped_pickles(tmp_path):
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 1}])[:-5])
    with pytest.raises(RefbenchError, match="corrupt refs pickle"):
        load_refs_pickle(path)
    path.write_bytes(pickle.dumps({"not": "a list"}))
    with pytest.raises(RefbenchError, match="not a refs file"):
        load_refs_pickle(path)
    path.write_bytes(pickle.dumps([{"ref_id": 1, "image_id": 2}]))
    with pytest.raises(RefbenchError, match="lacks ann_id, split, sentences"):
        load_refs_pickle(path)


def test_detections_file_is_read_per_image(synth_root, tmp_path):
    dets = json.loads((synth_root / "dets" / "synthref_unc_dets.json").read_text())
    by_image = load_detections(synth_root / "dets" / "synthref_unc_dets.json")
    assert sum(len(v) for v in by_image.values()) == len(dets)
    first = dets[0]
    assert any(list(b.xywh) == pytest.approx(first["box"]) and b.score == pytest.approx(first["score"])
               for b in by_image[first["image_id"]])
    bad = tmp_path / "dets.json"
    bad.write_text('[{"box": [1, 2, 3], "image_id": 1}]')
    with pytest.raises(RefbenchError, match="detection #0"):
        load_detections(bad)
    bad.write_text("[{")
    with pytest.raises(RefbenchError, match="corrupt detections file"):
        load_detections(bad)
