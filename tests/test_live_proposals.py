"""The live proposers: torchvision's detectors (real architectures, random weights saved to a .pth and
loaded as a user's file is), SAM masks from a tiny SamModel, the on-disk cache, the MAttNet export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refbench import RefbenchError, build_component, decode_mask
from refbench.cli import main

from conftest import REPO, bench_yaml

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from live_models.export_dets import export  # noqa: E402
from live_models.export_dets import main as export_main  # noqa: E402
from live_models.tiny.detector import build as build_detector  # noqa: E402
from live_models.tiny.sam import build as build_sam  # noqa: E402

# Small inputs and few region proposals keep resnet50-FPN near 0.15 s per 128-px image on a CPU.
FAST = {"min_size": 128, "max_size": 128,
        "model_kwargs": {"rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 40, "box_detections_per_img": 12}}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("REFBENCH_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    """Random-weight state dicts of the two COCO detectors (and a second faster R-CNN), as a user's .pth files."""
    out = {}
    for name, seed in (("fasterrcnn_resnet50_fpn_v2", 0), ("maskrcnn_resnet50_fpn_v2", 0), ("fasterrcnn_resnet50_fpn_v2", 1)):
        folder = build_detector(tmp_path_factory.mktemp("weights"), seed, name)
        out[f"{name}-{seed}"] = folder / f"{name}.pth"
    return out


@pytest.fixture(scope="module")
def sam_folder(tmp_path_factory) -> Path:
    return build_sam(tmp_path_factory.mktemp("sam") / "tiny-sam")


@pytest.fixture(scope="module")
def items(synth_root):
    data = {"plugin": "refer", "root": str(synth_root), "dataset": "synthref", "split_by": "unc", "splits": ["testA"],
            "images": str(synth_root / "images")}
    return list(build_component("dataset", data, "dataset"))[:3]


def detector(weights: Path, cache: Path, model: str = "fasterrcnn_resnet50_fpn_v2", **options):
    spec = {"plugin": "torchvision_detector", "model": model, "weights": str(weights), "cache": str(cache), **FAST, **options}
    return build_component("proposer", spec, "proposer")


def test_boxes_threshold_count_and_the_cache(weights, items, tmp_path):
    full = detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path / "c")
    every = {it.image_id: full.propose(it) for it in items}
    assert (full.cache.hits, full.cache.misses) == (0, len(items)) and full.model is not None
    assert json.loads((full.cache.dir / "key.json").read_text())["model"] == "fasterrcnn_resnet50_fpn_v2"
    for it in items:
        boxes = every[it.image_id]
        assert 0 < len(boxes) <= 12 and all(b.mask is None and b.label for b in boxes)
        assert [b.score for b in boxes] == sorted((b.score for b in boxes), reverse=True)
        assert all(b.x >= 0 and b.y >= 0 and b.x + b.w <= it.width + 1e-3 and b.y + b.h <= it.height + 1e-3 for b in boxes)
    cut = float(np.median([b.score for boxes in every.values() for b in boxes]))
    # score_threshold (from torchvision's 0.05 up) and max_count filter the cached output: same key, no
    # model call, not even a load
    again = detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path / "c", score_threshold=cut, max_count=3)
    assert again.cache.dir == full.cache.dir
    for it in items:
        assert again.propose(it) == [b for b in every[it.image_id] if b.score >= cut][:3]
    assert (again.cache.hits, again.cache.misses) == (len(items), 0) and again.model is None
    assert f"{len(items)} of {len(items)} images reused" in again.report()


def test_the_key_follows_weights_and_output_options(weights, tmp_path):
    base = detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path)
    dirs = {base.cache.dir,
            detector(weights["fasterrcnn_resnet50_fpn_v2-1"], tmp_path).cache.dir,  # other weights, same name
            detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path, min_size=96).cache.dir,
            detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path, score_threshold=0.01).cache.dir,  # below 0.05
            detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path, model_kwargs={"box_nms_thresh": 0.3}).cache.dir,
            detector(weights["maskrcnn_resnet50_fpn_v2-0"], tmp_path, model="maskrcnn_resnet50_fpn_v2").cache.dir}
    assert len(dirs) == 6
    assert detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path, score_threshold=0.3, max_count=5).cache.dir == base.cache.dir
    from refbench import sha256
    assert base.cache.key["weights_sha256"] == sha256(weights["fasterrcnn_resnet50_fpn_v2-0"])
    assert not base.cache.dir.exists()  # a key folder appears with its first entry


def test_torchvisions_own_weights_from_the_hub_cache(weights, items, tmp_path):
    hub = tmp_path / "torch" / "hub" / "checkpoints"  # TORCH_HOME is tmp_path / "torch"
    hub.mkdir(parents=True)
    (hub / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth").symlink_to(weights["fasterrcnn_resnet50_fpn_v2-0"])
    spec = {"plugin": "torchvision_detector", "cache": str(tmp_path / "c"), "max_count": 2, **FAST}
    default = build_component("proposer", spec, "proposer")
    assert default.describe()["weights"] == str(hub / "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth")
    from_file = detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path / "c", max_count=2)
    assert from_file.cache.dir == default.cache.dir  # the key is the file's hash, not its name
    assert len(default.propose(items[0])) == 2 and from_file.propose(items[0]) == default.propose(items[0])


def test_mask_rcnn_masks_and_the_mattnet_export(weights, items, tmp_path):
    live = detector(weights["maskrcnn_resnet50_fpn_v2-0"], tmp_path / "c", model="maskrcnn_resnet50_fpn_v2")
    proposed = {it.image_id: live.propose(it) for it in items}
    for it in items:
        assert all(b.mask["size"] == [it.height, it.width] and decode_mask(b.mask).any() for b in proposed[it.image_id])
    assert main(["export-dets", str(tmp_path / "c"), str(tmp_path / "dets.json"), "--masks", str(tmp_path / "masks.json")]) == 0
    rows = json.loads((tmp_path / "dets.json").read_text())
    assert set(rows[0]) == {"det_id", "box", "image_id", "category_id", "category_name", "score"}
    assert [r["det_id"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["category_name"] == torchvision.models.get_model_weights("maskrcnn_resnet50_fpn_v2").DEFAULT.meta["categories"]
               [r["category_id"]] for r in rows)
    cut = float(np.median([r["score"] for r in rows]))
    spec = {"plugin": "detections", "path": str(tmp_path / "dets.json"), "masks": str(tmp_path / "masks.json"),
            "min_score": cut, "max_per_image": 4}
    read = build_component("proposer", spec, "proposer")
    filtered = detector(weights["maskrcnn_resnet50_fpn_v2-0"], tmp_path / "c", model="maskrcnn_resnet50_fpn_v2",
                        score_threshold=cut, max_count=4)
    for it in items:
        mine, theirs = filtered.propose(it), read.propose(it)
        assert mine == theirs
        assert all(np.array_equal(decode_mask(a.mask), decode_mask(b.mask)) for a, b in zip(mine, theirs))


def sam(weights, sam_folder, cache, inner=None, **options):
    inner = inner or {"plugin": "torchvision_detector", "weights": str(weights["fasterrcnn_resnet50_fpn_v2-0"]),
                      "cache": str(cache), **FAST}
    spec = {"plugin": "sam_masks", "boxes": inner, "model": str(sam_folder), "cache": str(cache), "batch_size": 5, **options}
    return build_component("proposer", spec, "proposer")


def test_sam_masks_for_a_detectors_boxes(weights, sam_folder, items, tmp_path):
    first = sam(weights, sam_folder, tmp_path)
    got = {it.image_id: first.propose(it) for it in items}
    boxes = {it.image_id: first.inner.propose(it) for it in items}
    for it in items:
        assert got[it.image_id] == boxes[it.image_id]  # the detector's boxes, in order, more than one decoder batch
        assert len(got[it.image_id]) > 5
        assert all(b.mask["size"] == [it.height, it.width] for b in got[it.image_id])
    second = sam(weights, sam_folder, tmp_path)
    again = {it.image_id: second.propose(it) for it in items}
    assert second.model is None and second.inner.model is None  # neither model loaded: every image cached
    assert (second.cache.hits, second.cache.misses) == (len(items), 0)
    for it in items:
        assert all(np.array_equal(decode_mask(a.mask), decode_mask(b.mask)) for a, b in zip(got[it.image_id], again[it.image_id]))
    multi = sam(weights, sam_folder, tmp_path, multimask_output=True)
    assert multi.cache.dir != first.cache.dir and all(b.mask is not None for b in multi.propose(items[0]))


def test_a_run_with_mask_shade_over_sam_masks_of_a_detector(weights, sam_folder, synth_root, tmp_path, write_config, capsys):
    proposer = json.dumps({"plugin": "sam_masks", "model": str(sam_folder), "cache": str(tmp_path / "c"),
                           "boxes": {"plugin": "torchvision_detector", "weights": str(weights["fasterrcnn_resnet50_fpn_v2-0"]),
                                     "cache": str(tmp_path / "c"), "max_count": 6, **FAST}})
    methods = ("  - {id: mask-shade, prompter: {plugin: mask_shade, short_side: null}, "
               f"scorer: {{plugin: clip, checkpoint: {REPO}/checkpoints/synthref/synth-rn.safetensors}}}}")
    config = write_config(bench_yaml(synth_root, methods, splits="[testA]", proposer=proposer,
                                     extra="runner: {batch_size: 64, workers: 0, limit: 6}"))
    results = tmp_path / "results"
    assert main(["run", str(config), "--results", str(results), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "torchvision_detector cache: 0 of 6 images reused, 6 computed" in printed.err
    # the detector's and SAM's time is before the scoring wall, and recorded and printed apart from it
    (record,) = [json.loads((p / "run.json").read_text()) for p in results.iterdir() if (p / "run.json").is_file()]
    proposing = record["sessions"][-1]["proposals_s"]
    assert proposing > 0 and record["timing"]["proposals_s"] == proposing
    assert f"s, proposing {proposing:.1f}s" in printed.out
    assert main(["run", str(config), "--results", str(results), "--quiet", "--new"]) == 0
    err = capsys.readouterr().err
    assert "torchvision_detector cache: 6 of 6 images reused" in err and "sam_masks cache: 6 of 6 images reused" in err
    runs = sorted(p for p in results.iterdir() if (p / "run.json").is_file())
    rows = [json.loads(line) for line in (runs[-1] / "predictions.jsonl").read_text().splitlines()]
    assert rows and {r["method"] for r in rows} == {"mask-shade"}
    first, second = ([json.loads(line)["box"] for line in (r / "predictions.jsonl").read_text().splitlines()] for r in runs)
    assert first == second  # the cached masks give the same choices
    described = json.loads((runs[-1] / "run.json").read_text())["data"]["proposer"]
    assert described["boxes"]["cache"].startswith(str(tmp_path / "c")) and described["key"]["multimask_output"] is False


def test_bad_input_is_one_line(weights, sam_folder, synth_root, items, tmp_path, write_config, capsys):
    config = write_config(bench_yaml(synth_root, "  - {id: largest, scorer: {plugin: largest}}",
                                     proposer="{plugin: torchvision_detector, model: fasterrcnn_resnet50}"))
    assert main(["validate", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown torchvision detector 'fasterrcnn_resnet50'" in err
    assert "fasterrcnn_resnet50_fpn_v2" in err and "maskrcnn_resnet50_fpn_v2" in err
    # torchvision's own weights, not in the (empty) hub cache, offline
    with pytest.raises(RefbenchError, match=r"fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth .* not in the torch hub cache.*put it at "
                                            + str(tmp_path / "torch" / "hub" / "checkpoints")):
        build_component("proposer", {"plugin": "torchvision_detector"}, "proposer")
    # weights that are not the model's, and an unknown proposer inside sam_masks
    (tmp_path / "bad.pth").write_bytes(b"not a torch file")
    with pytest.raises(RefbenchError, match=r"bad.pth do not load as a torch state dict"):
        detector(tmp_path / "bad.pth", tmp_path / "c").propose(items[0])
    with pytest.raises(RefbenchError, match=r"do not fit maskrcnn_resnet50_fpn_v2"):
        detector(weights["fasterrcnn_resnet50_fpn_v2-0"], tmp_path / "c", model="maskrcnn_resnet50_fpn_v2").propose(items[0])
    with pytest.raises(RefbenchError, match=r"^proposer: boxes: unknown proposer 'torchvision_detektor'.*did you mean"):
        sam(weights, sam_folder, tmp_path / "c", {"plugin": "torchvision_detektor"})
    # inside a benchmark, the inner proposer's errors name both blocks, once each
    bad = write_config(bench_yaml(synth_root, "  - {id: largest, scorer: {plugin: largest}}", proposer=json.dumps(
        {"plugin": "sam_masks", "model": str(sam_folder), "boxes": {"plugin": "detections", "path": str(tmp_path / "none.json")}})),
        "inner.yaml")
    capsys.readouterr()
    assert main(["validate", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"error: proposer: boxes: detections file not found: {tmp_path / 'none.json'}")
    # a box reaching outside the image: refused, or clipped on request
    dets = tmp_path / "dets.json"
    it = items[0]
    dets.write_text(json.dumps([{"det_id": 1, "image_id": it.image_id, "box": [it.width - 20, 4, 40, 30], "score": 0.9},
                                {"det_id": 2, "image_id": it.image_id, "box": [2, 3, 20, 20], "score": 0.8}]))
    inner = {"plugin": "detections", "path": str(dets)}
    with pytest.raises(RefbenchError, match=rf"image {it.image_id} box 0 .* lies outside the .* image.*outside: clip"):
        sam(weights, sam_folder, tmp_path / "c", inner).propose(it)
    clipped = sam(weights, sam_folder, tmp_path / "c", inner, outside="clip").propose(it)
    assert (clipped[0].x, clipped[0].x + clipped[0].w) == (it.width - 20, it.width) and clipped[1].xywh == (2, 3, 20, 20)
    # a corrupt entry: counted and computed again; the export names it in one line
    entry = next(clipped_dir for clipped_dir in (tmp_path / "c" / "sam_masks").rglob(f"{it.image_id}-*.json"))
    entry.write_text('{"format": 1, "boxes": [[1, 2')
    again = sam(weights, sam_folder, tmp_path / "c", inner, outside="clip")
    assert again.propose(it) == clipped and (again.cache.corrupt, again.cache.misses) == (1, 1)
    assert "1 unreadable entry computed again" in again.report()
    assert json.loads(entry.read_text())["boxes"][0][0] == it.width - 20  # rewritten whole
    entry.write_text("not json")
    capsys.readouterr()
    assert export_main([str(entry.parent), str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable cache entry" in err and not (tmp_path / "out.json").exists()
    sam(weights, sam_folder, tmp_path / "c", inner, outside="clip", multimask_output=True).propose(it)  # a second key
    with pytest.raises(RefbenchError, match="holds 2 cached proposal sets"):
        export(tmp_path / "c" / "sam_masks", tmp_path / "out.json")
    assert main(["export-dets", str(tmp_path / "c"), str(tmp_path / "out.json")]) == 2
    assert "holds 2 cached proposal sets" in capsys.readouterr().err


def test_a_run_stops_in_one_line_at_a_sam_box_outside_the_image_and_loses_nothing(sam_folder, synth_root, tmp_path,
                                                                                    write_config, capsys):
    """`refbench run` over SAM masks of a detections file with a box outside its image: exit 2, one line
    naming the image, the box and the fix, no traceback; the stopped run is not marked complete, and
    a finished run in the same results folder is byte-identical afterwards."""
    data = {"plugin": "refer", "root": str(synth_root), "dataset": "synthref", "split_by": "unc", "splits": ["testA"],
            "images": str(synth_root / "images")}
    everything = list(build_component("dataset", data, "dataset"))
    bad = everything[1]
    dets = [{"det_id": k + 1, "image_id": it.image_id, "box": [2, 3, 20, 20], "score": 0.9} for k, it in enumerate(everything)]
    dets.append({"det_id": len(dets) + 1, "image_id": bad.image_id, "box": [bad.width - 20, 4, 40, 30], "score": 0.8})
    (tmp_path / "dets.json").write_text(json.dumps(dets))

    def bench(name: str, **options) -> Path:
        proposer = json.dumps({"plugin": "sam_masks", "model": str(sam_folder), "cache": str(tmp_path / "c"), **options,
                               "boxes": {"plugin": "detections", "path": str(tmp_path / "dets.json")}})
        return write_config(bench_yaml(synth_root, "  - {id: largest, scorer: {plugin: largest}}", name=name, splits="[testA]",
                                       proposer=proposer, extra="runner: {workers: 0, limit: 4}"), f"{name}.yaml")

    results = tmp_path / "results"
    assert main(["run", str(bench("clipped", outside="clip")), "--results", str(results), "-q"]) == 0
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["run", str(bench("outside")), "--results", str(results), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"image {bad.image_id} box 1" in err and "lies outside" in err and "outside: clip" in err
    assert {p: p.read_bytes() for p in before} == before
    stopped = [json.loads(p.read_text()) for p in results.glob("*/run.json") if p not in before]
    assert all(r["status"] != "complete" for r in stopped)
