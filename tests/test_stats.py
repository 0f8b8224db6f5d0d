"""Intervals, paired comparisons and the field's metrics, on hand-made data and through the CLI."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from refbench import Box, ImageItem, Ref
from refbench.cli import main
from refbench.config import ProtocolConfig, UncertaintyConfig
from refbench.metrics import summarize
from refbench.protocol import judge
from refbench.stats import accuracy_intervals, compare

from conftest import bench_yaml


def per_image(hits_per_image: list[list[bool]]) -> dict[tuple[str, int], list[int]]:
    return {("test", i): [len(h), sum(h)] for i, h in enumerate(hits_per_image)}


def test_bootstrap_resamples_images_so_correlated_phrases_widen_the_interval():
    rng = np.random.default_rng(1)
    outcome = rng.random(200) < 0.6  # 200 images; every phrase of an image shares its outcome
    clustered = per_image([[bool(o)] * 10 for o in outcome])
    independent = per_image([list(rng.random(10) < 0.6) for _ in range(200)])
    boot = UncertaintyConfig(resamples=2000, seed=0)
    wide = accuracy_intervals({"all": clustered}, boot)["all"]
    narrow = accuracy_intervals({"all": independent}, boot)["all"]
    wilson = accuracy_intervals({"all": clustered}, UncertaintyConfig(interval="wilson"))["all"]
    acc = 100 * outcome.mean()
    assert wide[0] < acc < wide[1]
    # 2000 phrases but only 200 independent draws: about sqrt(10) times Wilson's width
    assert 2.5 < (wide[1] - wide[0]) / (wilson[1] - wilson[0]) < 4.0
    assert (narrow[1] - narrow[0]) < 0.6 * (wide[1] - wide[0])
    k, n = int(outcome.sum()) * 10, 2000
    expected = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert wilson == pytest.approx([100 * expected.low, 100 * expected.high], abs=1e-3)
    assert accuracy_intervals({"all": clustered}, boot) == accuracy_intervals({"all": clustered}, boot)  # seeded
    assert accuracy_intervals({"all": clustered}, UncertaintyConfig(seed=5))["all"] != wide
    # a split's interval does not depend on the other splits in the run (images are drawn within their split)
    other = {("val", i): [3, 1] for i in range(50)}
    both = accuracy_intervals({"test": clustered, "all": {**clustered, **other}}, boot)
    assert both["test"] == wide and both["all"] != wide


def test_paired_comparison_counts_discordant_pairs_and_tests_them_exactly():
    rng = np.random.default_rng(2)
    a = {s: (("test", s // 5), bool(rng.random() < 0.8)) for s in range(500)}
    b = {s: (img, hit if rng.random() < 0.9 else not hit) for s, (img, hit) in a.items() if s % 7}  # B misses some phrases
    c = compare(a, b, resamples=1000, seed=0)
    shared = [s for s in a if s in b]
    only_a = sum(a[s][1] and not b[s][1] for s in shared)
    only_b = sum(b[s][1] and not a[s][1] for s in shared)
    assert (c.n, c.only_a, c.only_b) == (len(shared), only_a, only_b)
    assert c.mcnemar_p == pytest.approx(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert c.difference == pytest.approx(100 * (only_a - only_b) / len(shared))
    assert c.difference_ci95[0] < c.difference < c.difference_ci95[1]
    same = compare(a, a, resamples=200)
    assert (same.difference, same.difference_ci95, same.only_a, same.only_b, same.mcnemar_p) == (0, [0, 0], 0, 0, 1.0)
    with pytest.raises(ValueError):
        compare(a, {10**6: (("test", 0), True)})


def test_records_carry_the_thresholds_passed_and_centre_in_box():
    truth = Box(0, 0, 100, 100)
    item = ImageItem(1, __import__("pathlib").Path("x.jpg"), 400, 400,
                     (Ref(1, 1, 1, "the big red circle on the left", truth, "testA"), Ref(2, 1, 1, "red", truth, "testA")))
    # IoU of a 100x80 box inside the truth is 0.8; the second lies off the truth
    boxes = np.array([[0, 0, 100, 80], [150, 150, 60, 60]], dtype=float)
    logits = np.array([[1.0, 0.0], [0.0, 1.0]])
    first, second = judge(item, item.refs, boxes, logits, ProtocolConfig(iou_convention="continuous"), "m")
    assert first["passes"] == 6 and first["centre_in"] is True  # 0.50 ... 0.75 cleared; 0.80 > 0.80 is not
    assert judge(item, item.refs, boxes, logits, ProtocolConfig(iou_convention="continuous", comparison=">="), "m")[0]["passes"] == 7
    assert second["passes"] == 0 and second["centre_in"] is False and first["truth"] == [0, 0, 100, 100]
    m = summarize([first, second])["m"]
    assert m["acc_at"] == {"0.5": 50.0, "0.75": 50.0, "0.9": 0.0} and m["macc"] == 30.0 and m["centre_accuracy"] == 50.0
    assert list(m["sizes"]) == ["small"] and m["sizes"]["small"]["n"] == 2  # sqrt(100 * 100) = 100 < 128
    assert m["lengths"]["7+"]["n"] == 1 and m["lengths"]["1-3"]["n"] == 1


def test_size_buckets_follow_ref_l4():
    from refbench.metrics import length_bucket, size_bucket

    assert [size_bucket([0, 0, s, s]) for s in (127.9, 128, 200, 256, 256.1)] == ["small", "small", "medium", "medium", "large"]
    assert [length_bucket(" ".join("w" * n)) for n in (1, 3, 4, 6, 7, 12)] == ["1-3", "1-3", "4-6", "4-6", "7+", "7+"]


def test_compare_and_leaderboard_intervals_through_the_cli(synth_root, tmp_path, capsys, write_config):
    methods = "  - {id: random, scorer: {plugin: random}}\n  - {id: largest, scorer: {plugin: largest}}"
    results = str(tmp_path / "res")
    assert main(["run", str(write_config(bench_yaml(synth_root, methods))), "--results", results, "-q"]) == 0
    plus = bench_yaml(synth_root, methods, name="plus").replace("dataset: synthref,", "dataset: synthref+,")
    assert main(["run", str(write_config(plus, "plus.yaml")), "--results", results, "-q"]) == 0
    capsys.readouterr()
    run_a = next(p.name for p in (tmp_path / "res").iterdir() if "-tiny-" in p.name)
    digest = run_a.rsplit("-", 1)[1]
    assert main(["compare", f"{digest}:random", "largest", "--results", results]) == 0
    out = capsys.readouterr().out
    assert "phrases both evaluated: " in out and "McNemar exact p = " in out and "95% interval [" in out
    assert main(["compare", f"{digest}:random", "largest", "--results", results, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n"] == 170 and data["a"] == f"{run_a}:random" and data["only_a"] + data["only_b"] > 0
    record = json.loads((tmp_path / "res" / run_a / "run.json").read_text())
    assert record["uncertainty"]["resamples"] == 2000 and len(record["metrics"]["random"]["ci95"]) == 2
    for argv, words in ((["nope:random", "largest"], "no run 'nope'"), ([f"{digest}:random", "oracle"], "has no method 'oracle'"),
                        ([f"{digest}:random", "plus:largest"], "differ in data"), (["2026:random", "largest"], "names 2 runs")):
        assert main(["compare", *argv, "--results", results]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    assert main(["leaderboard", "--results", results, "--benchmark", "synthref/unc", "--ci", "range"]) == 0
    out = capsys.readouterr().out
    lo, hi = record["metrics"]["random"]["splits"]["testA"]["ci95"]
    assert f"[{lo:.2f}, {hi:.2f}]" in out and "95% intervals ([low, high]): bootstrap over images, 2000 resamples" in out
    assert main(["leaderboard", "--results", results, "--metric", "acc@0.75", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("dataset,benchmark,method,metric,") and all(",acc@0.75," in r for r in rows[1:])
    assert main(["leaderboard", "--results", results, "--metric", "f1"]) == 2
    assert "unknown metric 'f1'" in capsys.readouterr().err


def test_old_records_and_single_images_get_no_misleading_figures():
    new = {"method": "m", "split": "testA", "phrase_type": "", "text": "a b", "hit": True, "oracle": True, "chance": 0.5,
           "iou": 0.9, "truth": [0, 0, 10, 10], "passes": 9, "centre_in": True}
    old = {k: v for k, v in new.items() if k not in ("truth", "passes", "centre_in")}
    mixed = summarize([{**new, "sent_id": 1, "image_id": 1}, {**old, "sent_id": 2, "image_id": 2}], UncertaintyConfig())["m"]
    assert mixed["sizes"] == {} and mixed["lengths"] == {} and "acc_at" not in mixed  # not over half the records
    assert mixed["ci95"] is not None
    alone = summarize([{**new, "sent_id": 1, "image_id": 1, "split": "val"}], UncertaintyConfig())["m"]
    assert alone["ci95"] is None and alone["splits"]["val"]["ci95"] is None  # one image: no spread to show
