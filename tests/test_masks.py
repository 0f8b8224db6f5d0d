"""Candidates' masks: COCO segmentations read and checked (pycocotools), SynthRef's detection
masks, the proposers that attach them, the mask prompters' pixels against references computed
another way (Pillow's composite, OpenCV), and every bad input answered in one line."""

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as coco_mask

from refbench import Box, RefbenchError, annotation_boxes, box_rle, decode_mask, mask_rle
from refbench.cli import main
from refbench.config import load_config
from refbench.masks import rle_total
from refbench.plugins import registry
from refbench.refer import load_items, locate
from refbench.results import Store, read_record
from refbench.run import run_benchmark

from visual_prompts.masks import BlurReverseMask, GrayscaleReverseMask, MaskShade, drawing_size

from conftest import bench_yaml

MASK_METHODS = "\n".join(f"  - {{id: {p}, prompter: {{plugin: {p}, short_side: null}}, scorer: {{plugin: clip, arch: synth-rn}}}}"
                         for p in ("mask_shade", "blur_reverse_mask", "grayscale_reverse_mask"))


def error_lines(capsys) -> list[str]:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return [x for x in err.splitlines() if x.startswith("error:")]


def _items(root, split="testA"):
    files, problems = locate(root, "synthref", "unc", root / "images")
    assert not problems
    return load_items(files, [split])


def _dets_proposer(root, masks):
    return registry().build("proposer", {"plugin": "detections", "path": str(root / "dets/synthref_unc_dets.json"),
                                         "masks": str(masks)}, "proposer")


# ---------------------------------------------------------------- reading segmentations


def test_polygons_and_rle_decode_to_the_same_region():
    square = [[2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 2.0, 9.0]]
    rle = mask_rle(square, 16, 20, "annotation 1")
    mask = decode_mask(rle)
    assert mask.shape == (16, 20) and abs(int(mask.sum()) - 60) <= 12  # 10 x 6, rasterised by pycocotools
    raw = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    text = {"size": [16, 20], "counts": raw["counts"].decode()}  # as MAttNet's JSON holds it
    assert (decode_mask(mask_rle(text, 16, 20, "x")) == mask).all()
    runs, value, count = [], False, 0  # uncompressed RLE, column-major, starting with background
    for v in mask.T.ravel():
        if bool(v) != value:
            runs.append(count)
            value, count = bool(v), 0
        count += 1
    runs.append(count)
    assert (decode_mask(mask_rle({"size": [16, 20], "counts": runs}, 16, 20, "x")) == mask).all()
    box = decode_mask(box_rle(2, 3, 10, 6, 16, 20))
    assert box.sum() == 60 and box[3:9, 2:12].all()


def test_rle_total_reads_pycocotools_strings_and_refuses_broken_ones():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = coco_mask.encode(np.asfortranarray(m))["counts"]
        assert rle_total(counts) == h * w
        assert rle_total(counts[:-1] + b"\x7f") is None  # a character out of the alphabet
    assert rle_total(b"zzzz") is None  # pycocotools decodes this without complaint; its characters are out of the alphabet


@pytest.mark.parametrize("segmentation, message", [
    ([[1.0, 1.0, 5.0, 5.0]], "polygon 0 has 2 points; a polygon needs at least 3"),
    ([[1.0, 1.0, 5.0, 5.0, 3.0]], "polygon 0 has 2 points"),
    ([], "empty segmentation"),
    ([[1.0, 1.0, 5.0, float("nan"), 3.0, 3.0]], "non-finite"),
    ([["2", "2", "8", "2", "8", "9"]], "non-numeric"),
    ([[[2], [2], [8], [2], [8], [9]]], "non-numeric"),
    ({"size": [8, 8], "counts": [3, 4]}, r"RLE of size \[8, 8\].*expected \[16, 20\]"),
    ({"size": [16, 20], "counts": [3, 4]}, "run lengths do not cover"),
    ({"size": [16, 20], "counts": "zz"}, "corrupt compressed RLE"),
    ({"size": [16, 20], "counts": "0é"}, "corrupt compressed RLE"),
    ({"size": ["16px", 20], "counts": [320]}, r"RLE of size \['16px', 20\]"),
    ("oops", "neither polygons nor RLE"),
])
def test_bad_segmentations_name_the_annotation(segmentation, message):
    with pytest.raises(RefbenchError, match=message) as info:
        mask_rle(segmentation, 16, 20, "annotation 42")
    assert str(info.value).startswith("annotation 42: ") and "\n" not in str(info.value)


def test_an_empty_mask_becomes_its_box():
    from refbench.masks import with_mask

    flat = [[2.0, 2.0, 8.0, 2.0, 14.0, 2.0]]  # three collinear points: no area
    box = with_mask(Box(2, 3, 10, 6), flat, 16, 20, "annotation 1")
    assert (decode_mask(box.mask) == decode_mask(box_rle(2, 3, 10, 6, 16, 20))).all()
    kept = with_mask(Box(2, 3, 10, 6), [[2.0, 3.0, 12.0, 3.0, 12.0, 9.0]], 16, 20, "annotation 2")
    assert 0 < decode_mask(kept.mask).sum() < 60


# ---------------------------------------------------------------- where masks come from


def test_gt_masks_are_the_annotations_polygons(synth_root):
    item = _items(synth_root)[0]
    boxes = annotation_boxes(item)
    assert [b.xywh for b in boxes] == [a.box.xywh for a in item.annotations]
    instances = json.loads((synth_root / "synthref/instances.json").read_text())
    area = {a["id"]: a["area"] for a in instances["annotations"]}
    for ann, box in zip(item.annotations, boxes):
        mask = decode_mask(box.mask)
        ys, xs = np.nonzero(mask)
        assert abs(mask.sum() - area[ann.id]) <= 0.1 * area[ann.id] + 8  # the polygon's area, rasterised
        assert xs.min() >= box.x - 1 and xs.max() <= box.x + box.w and ys.min() >= box.y - 1 and ys.max() <= box.y + box.h
    plain = registry().build("proposer", {"plugin": "gt"}, "proposer").propose(item)
    assert all(b.mask is None for b in plain)
    assert all(b.mask is not None for b in registry().build("proposer", {"plugin": "gt", "masks": True}, "proposer").propose(item))


def test_synthref_detection_masks_lie_in_their_boxes(synth_root):
    dets = json.loads((synth_root / "dets/synthref_unc_dets.json").read_text())
    masks = json.loads((synth_root / "dets/synthref_unc_masks.json").read_text())
    assert [m["det_id"] for m in masks] == [d["det_id"] for d in dets]
    assert (synth_root / "dets/synthref+_unc_masks.json").read_bytes() == (synth_root / "dets/synthref_unc_masks.json").read_bytes()
    for det, entry in zip(dets, masks):
        mask = decode_mask(mask_rle(entry["rle"], 128, 128, "m"))
        x, y, w, h = det["box"]
        ys, xs = np.nonzero(mask)
        assert len(xs) > 0 and xs.min() >= int(x) and xs.max() <= x + w and ys.min() >= int(y) and ys.max() <= y + h
    proposer = _dets_proposer(synth_root, synth_root / "dets/synthref_unc_masks.json")
    item = _items(synth_root)[0]
    boxes = proposer.propose(item)
    assert boxes and all(b.mask is not None for b in boxes)
    assert proposer.describe()["masks"]["sha256"]


def test_masks_are_added_to_a_data_set_written_without_them(synth_root, tmp_path):
    from conftest import TINY
    from refbench.synth import generate

    root = tmp_path / "old"
    shutil.copytree(synth_root, root)
    for variant in ("synthref", "synthref+"):
        (root / f"dets/{variant}_unc_masks.json").unlink()
    generate(root, TINY)
    assert (root / "dets/synthref_unc_masks.json").read_bytes() == (synth_root / "dets/synthref_unc_masks.json").read_bytes()


def test_coco_results_with_segmentation_match_by_position(synth_root, tmp_path):
    dets = json.loads((synth_root / "dets/synthref_unc_dets.json").read_text())
    masks = json.loads((synth_root / "dets/synthref_unc_masks.json").read_text())
    results = [{"image_id": d["image_id"], "category_id": d["category_id"], "bbox": d["box"], "score": d["score"],
                "segmentation": m["rle"]} for d, m in zip(dets, masks)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    proposer = registry().build("proposer", {"plugin": "detections", "path": str(path), "masks": str(path)}, "proposer")
    reference = _dets_proposer(synth_root, synth_root / "dets/synthref_unc_masks.json")
    for item in _items(synth_root):
        a, b = proposer.propose(item), reference.propose(item)
        assert [x.xywh for x in a] == [x.xywh for x in b]
        assert all((decode_mask(x.mask) == decode_mask(y.mask)).all() for x, y in zip(a, b))


def test_masks_matched_by_position_must_lie_in_their_boxes(synth_root, tmp_path):
    dets = json.loads((synth_root / "dets/synthref_unc_dets.json").read_text())
    masks = json.loads((synth_root / "dets/synthref_unc_masks.json").read_text())
    first = [i for i, d in enumerate(dets) if d["image_id"] == dets[0]["image_id"]]
    order = list(range(len(masks)))
    order[first[0]], order[first[-1]] = order[first[-1]], order[first[0]]  # two masks of one image swapped
    shuffled = [{"image_id": masks[i]["image_id"], "segmentation": masks[i]["rle"]} for i in order]
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(shuffled))
    item = next(it for it in _items(synth_root, "train") if it.image_id == dets[0]["image_id"])
    with pytest.raises(RefbenchError, match=rf"the mask matched to detection \d+ \(image {item.image_id}, its detection #0\) lies mostly outside its box"):
        _dets_proposer(synth_root, path).propose(item)


# ---------------------------------------------------------------- bad input, through the CLI


def _broken_masks(root, tmp_path, change):
    masks = json.loads((root / "dets/synthref_unc_masks.json").read_text())
    change(masks)
    path = tmp_path / "masks.json"
    path.write_text(json.dumps(masks))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop(), r"holds \d+ masks for \d+ detections"),
    (lambda m: m[3].update(det_id=10**6), r"detection 4 \(image \d+\) has no mask in"),
    (lambda m: m[3].update(image_id=m[3]["image_id"] + 1), r"detection 4 is on image \d+ in the detections but on image \d+ in"),
    (lambda m: m[0].update(rle={"size": [64, 64], "counts": m[0]["rle"]["counts"]}), r"mask of detection 1 \(image 1\): RLE of size"),
    (lambda m: m[0].update(rle={"size": [128, 128], "counts": "zz"}), r"mask of detection 1 \(image 1\): corrupt compressed RLE"),
    (lambda m: m[0].pop("rle"), r"mask #0 is not"),
])
def test_masks_that_do_not_match_the_detections_are_one_line(synth_root, tmp_path, write_config, capsys, change, message):
    masks = _broken_masks(synth_root, tmp_path, change)
    proposer = f"{{plugin: detections, path: {synth_root}/dets/synthref_unc_dets.json, masks: {masks}}}"
    splits = "[train, val, testA, testB]"  # every image, so image 1 is proposed
    config = write_config(bench_yaml(synth_root, MASK_METHODS, proposer=proposer, splits=splits))
    assert main(["validate", str(config)]) == 2
    (line,) = error_lines(capsys)
    assert __import__("re").search(message, line), line
    assert main(["run", str(config), "--results", str(tmp_path / "results"), "--quiet"]) == 2
    assert error_lines(capsys) and not (tmp_path / "results").exists()


def test_a_mask_prompter_without_masks_says_where_masks_come_from(synth_root, tmp_path, write_config, capsys):
    config = write_config(bench_yaml(synth_root, MASK_METHODS))
    assert main(["run", str(config), "--results", str(tmp_path / "results"), "--quiet"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 3 and all("draws candidates' masks, but image" in x and "masks: true" in x and "masks: FILE" in x
                                   for x in lines)
    assert not (tmp_path / "results").exists()
    missing = write_config(bench_yaml(synth_root, MASK_METHODS, proposer=f"{{plugin: detections, path: {synth_root}/dets/"
                                      "synthref_unc_dets.json, masks: nowhere.json}"), "missing.yaml")
    assert main(["validate", str(missing)]) == 2
    assert error_lines(capsys) == ["error: proposer: masks file not found: nowhere.json; use the masks file made with these "
                                   "detections (MAttNet's *_masks.json, or a COCO results file with segmentation)"]


@pytest.mark.parametrize("name, options, field", [
    ("blur_reverse_mask", {"std": 0}, "std"), ("mask_shade", {"alpha": 1.2}, "alpha"), ("mask_shade", {"outline": -1}, "outline"),
    ("grayscale_reverse_mask", {"weights": "bgr"}, "weights"), ("mask_shade", {"short_side": 0}, "short_side"),
])
def test_bad_mask_prompter_options_are_field_errors(name, options, field):
    with pytest.raises(RefbenchError, match=field):
        registry().build("prompter", {"plugin": name, **options}, "methods[0].prompter")


# ---------------------------------------------------------------- the prompters' pixels


def _case(seed=0, w=37, h=29):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    polys = [[[3, 4, 20, 2, 25, 20, 6, 24]], [[10, 10, 30, 12, 28, 27]], [[0, 0, 36, 0, 36, 28, 0, 28]]]
    boxes = [Box(0, 0, 1, 1, mask=mask_rle(p, h, w, "p")) for p in polys]
    return image, boxes


def test_blur_reverse_mask_is_pillows_blur_composited_outside_the_mask():
    image, boxes = _case()
    pil = Image.fromarray(image)
    for std in (2.0, 100.0):
        views = BlurReverseMask(BlurReverseMask.Options(std=std, short_side=None)).render(pil, boxes)
        blurred = pil.filter(ImageFilter.GaussianBlur(std))
        for view, box in zip(views, boxes):
            mask = Image.fromarray(decode_mask(box.mask).astype(np.uint8) * 255)
            assert np.array_equal(np.asarray(view), np.asarray(Image.composite(pil, blurred, mask)))


def test_grayscale_reverse_mask_uses_fgvps_opencv_grey():
    image, boxes = _case(1)
    views = GrayscaleReverseMask(GrayscaleReverseMask.Options(short_side=None)).render(Image.fromarray(image), boxes)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # FGVP's call, on RGB pixels
    for view, box in zip(views, boxes):
        mask = decode_mask(box.mask)
        expected = np.where(mask[..., None], image, grey[..., None])
        assert np.array_equal(np.asarray(view), expected)
    luma = GrayscaleReverseMask(GrayscaleReverseMask.Options(short_side=None, weights="luma")).render(Image.fromarray(image), boxes[:1])
    outside = ~decode_mask(boxes[0].mask)
    assert np.array_equal(np.asarray(luma[0])[outside][:, 0], np.asarray(Image.fromarray(image).convert("L"))[outside])


def test_mask_shade_is_opencvs_blend_with_an_inner_outline():
    image, boxes = _case(2)
    prompter = MaskShade(MaskShade.Options(short_side=None))
    for view, box in zip(prompter.render(Image.fromarray(image), boxes), boxes):
        mask = decode_mask(box.mask)
        tinted = cv2.addWeighted(np.full_like(image, (0, 255, 0)), 0.5, image, 0.5, 0.0)  # FGVP's blend
        eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2, borderType=cv2.BORDER_CONSTANT,
                           borderValue=0).astype(bool)
        expected = np.where(mask[..., None], tinted, image)
        expected[mask & ~eroded] = (255, 0, 0)
        diff = np.abs(np.asarray(view).astype(int) - expected)
        assert diff.max() <= 1  # OpenCV rounds x.5 half-up, numpy to even


def test_fgvp_draws_at_a_short_side_of_384():
    assert drawing_size(640, 480, 384) == (512, 384) and drawing_size(333, 500, 384) == (384, 577)
    assert drawing_size(128, 128, None) == (128, 128)
    image, boxes = _case(3)
    views = MaskShade().render(Image.fromarray(image), boxes)
    assert all(v.size == drawing_size(37, 29, 384) for v in views)
    big = np.asarray(views[0])
    assert (np.abs(big.astype(int) - np.asarray(Image.fromarray(image).resize(big.shape[1::-1], Image.BILINEAR))).max(axis=2) == 0).any()
    # every view is the bilinearly resized image except exactly where the bilinearly resized mask covers anything
    size = drawing_size(37, 29, 384)
    resized = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    for view, box in zip(views, boxes):
        support = np.asarray(Image.fromarray(decode_mask(box.mask).astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 0
        assert np.array_equal((np.asarray(view) != resized).any(axis=2), support)


# ---------------------------------------------------------------- a run


def test_mask_prompters_run_on_gt_and_detection_masks(synth_root, tmp_path, write_config, monkeypatch):
    import visual_prompts.masks as drawn

    decoded = []
    decode = drawn.decode_mask
    monkeypatch.setattr(drawn, "decode_mask", lambda rle: decoded.append(rle) or decode(rle))
    for proposer in ("{plugin: gt, masks: true}",
                     f"{{plugin: detections, path: {synth_root}/dets/synthref_unc_dets.json, "
                     f"masks: {synth_root}/dets/synthref_unc_masks.json}}"):
        config = write_config(bench_yaml(synth_root, MASK_METHODS, proposer=proposer, splits="[testA]",
                                         extra="runner: {batch_size: 64, workers: 0}"))
        run = run_benchmark(load_config(config), Store(tmp_path / "r"))
        record = read_record(run.dir)
        assert set(record["metrics"]) >= {"mask_shade", "blur_reverse_mask", "grayscale_reverse_mask"}
        assert len(decoded) == 3 * record["sessions"][0]["views"] > 0  # each of the three prompters drew every candidate from its mask
        decoded.clear()
        if "gt" in proposer:  # every annotated box is a candidate: the truth is always among them
            assert all(m["upper_bound"] == 100.0 for k, m in record["metrics"].items())
