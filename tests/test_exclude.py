"""Cleaned splits: sent_id lists and Ref-L4 reviewed files, matched, counted and keyed apart."""

import json
import pickle

from refbench.cli import main

from conftest import bench_yaml

BASELINE = "  - {id: random, scorer: {plugin: random}}"


def with_exclude(root, paths) -> str:
    text = bench_yaml(root, BASELINE, splits="[testA, testB]")
    listed = ", ".join(str(p) for p in paths)
    return text.replace("images: ", f"exclude: [{listed}], images: ", 1)


def only_run(results) -> dict:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "run.json").read_text())
    record["sent_ids"] = {json.loads(x)["sent_id"] for x in (run_dir / "predictions.jsonl").read_text().splitlines()}
    return record


def test_a_sent_id_list_leaves_those_phrases_out_and_warns_about_absent_ones(synth_root, tmp_path, capsys, write_config):
    refs = pickle.load(open(synth_root / "synthref" / "refs(unc).p", "rb"))
    test_ids = [s["sent_id"] for r in refs if r["split"] in ("testA", "testB") for s in r["sentences"]]
    train_id = next(s["sent_id"] for r in refs if r["split"] == "train" for s in r["sentences"])
    dropped = test_ids[::5]
    listing = tmp_path / "bad_sentences.txt"
    listing.write_text("# sent_ids to leave out\n" + "\n".join(map(str, [*dropped, train_id, 10**9])) + "\n")
    assert main(["run", str(write_config(with_exclude(synth_root, [listing]))), "--results", str(tmp_path / "r"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: exclude: 2 entries match no phrase of the selected splits (bad_sentences.txt: 2); none of them is excluded" in err
    record = only_run(tmp_path / "r")
    assert record["sent_ids"] == set(test_ids) - set(dropped)  # exactly those, nothing else
    assert record["dataset_key"].startswith("synthref/unc-excl-")
    ex = record["data"]["dataset"]["exclude"]
    assert sum(ex["excluded_per_split"].values()) == len(dropped) and ex["unmatched"] == 2
    assert ex["files"][0]["kind"] == "sent_ids" and len(ex["files"][0]["sha256"]) == 64


def review_file(synth_root, bad_every: int = 3) -> tuple[dict, set[int]]:
    """A Ref-L4 reviewed file made from SynthRef's testA (one entry per sentence), with two
    entries that match nothing; returns it and the sent_ids it marks erroneous."""
    refs = [r for r in pickle.load(open(synth_root / "synthref" / "refs(unc).p", "rb")) if r["split"] == "testA"]
    images, annotations, bad = [], [], set()
    for r in refs:
        for s in r["sentences"]:
            entry = len(images) + 1
            quality = 0 if entry % bad_every == 0 else 1
            if quality == 0:
                bad.add(s["sent_id"])
            images.append({"id": entry, "original_id": r["image_id"], "caption": s["raw"], "file_name": "x.jpg",
                           "height": 128, "width": 128, "dataset_name": "refcoco"})
            annotations.append({"id": entry, "image_id": entry, "original_id": r["ann_id"], "bbox": [0, 0, 1, 1],
                                "caption_quality": quality, "category_id": 1})
    for entry, (image, ann, caption) in enumerate([(refs[0]["image_id"], 10**8, "no such object"),
                                                   (refs[0]["image_id"], refs[0]["ann_id"], "words nobody wrote")],
                                                  start=len(images) + 1):
        images.append({"id": entry, "original_id": image, "caption": caption})
        annotations.append({"id": entry, "image_id": entry, "original_id": ann, "bbox": [0, 0, 1, 1], "caption_quality": 0})
    return {"images": images, "annotations": annotations}, bad


def test_a_ref_l4_review_is_matched_by_image_ann_and_text(synth_root, tmp_path, capsys, write_config):
    review, bad = review_file(synth_root)
    path = tmp_path / "synthref_testA_reviewed.json"
    path.write_text(json.dumps(review))
    cfg = write_config(with_exclude(synth_root, [path]))
    assert main(["validate", str(cfg)]) == 0
    assert "2 entries match no phrase" in capsys.readouterr().err
    assert main(["run", str(cfg), "--results", str(tmp_path / "r"), "-q"]) == 0
    record = only_run(tmp_path / "r")
    assert record["dataset_key"].startswith("synthref/unc-l4clean-") and not (record["sent_ids"] & bad)
    ex = record["data"]["dataset"]["exclude"]
    assert ex["excluded_per_split"] == {"testA": len(bad)} and ex["files"][0]["kind"] == "ref-l4"
    assert ex["files"][0]["unmatched"] == 2 and ex["files"][0]["entries"] == len(review["images"])
    # cleaned and uncleaned runs never share a leaderboard table
    assert main(["run", str(write_config(bench_yaml(synth_root, BASELINE, splits="[testA, testB]"), "plain.yaml")),
                 "--results", str(tmp_path / "r"), "-q"]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(tmp_path / "r"), "--format", "markdown", "--no-reported"]) == 0
    titles = [x for x in capsys.readouterr().out.splitlines() if x.startswith("### ")]
    assert sorted(t.split(":")[0] for t in titles) == ["### synthref/unc", f"### {record['dataset_key']}"]


def test_bad_exclusion_files_are_one_line(synth_root, tmp_path, capsys, write_config):
    missing = tmp_path / "nowhere.txt"
    assert main(["validate", str(write_config(with_exclude(synth_root, [missing])))]) == 2
    assert "exclusion file not found" in capsys.readouterr().err
    junk = tmp_path / "junk.txt"
    junk.write_text("12\nnot-an-id\n")
    assert main(["run", str(write_config(with_exclude(synth_root, [junk]), "j.yaml")), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not a list of sent_ids nor a Ref-L4 reviewed file" in err and "Traceback" not in err
