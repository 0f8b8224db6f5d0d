from pathlib import Path

import numpy as np
import pytest

from refbench import Box, ImageItem, Ref, RefbenchError
from refbench.config import ProtocolConfig
from refbench.metrics import summarize
from refbench.protocol import judge


def item(*truths: Box) -> ImageItem:
    refs = tuple(Ref(sent_id=i, ref_id=i, ann_id=i, text=f"p{i}", box=b, split="testA", phrase_type="attribute")
                 for i, b in enumerate(truths))
    return ImageItem(image_id=1, path=Path("x.jpg"), width=100, height=100, refs=refs)


def test_judge_counts_hits_oracle_and_chance():
    it = item(Box(0, 0, 10, 10), Box(50, 50, 20, 20))
    boxes = np.array([[0, 0, 10, 10], [50, 50, 20, 19], [80, 0, 10, 10]], dtype=float)
    logits = np.array([[0.1, 0.9, 0.0],   # picks box 1: wrong for phrase 0
                       [0.0, 0.5, 0.5]])  # tie between 1 and 2: first wins -> right
    recs = judge(it, it.refs, boxes, logits, ProtocolConfig(), "m")
    assert [r["hit"] for r in recs] == [False, True]
    assert [r["oracle"] for r in recs] == [True, True]
    assert [r["chosen"] for r in recs] == [1, 1]
    assert recs[0]["chance"] == pytest.approx(1 / 3)
    m = summarize(recs)["m"]
    assert m["accuracy"] == 50.0 and m["upper_bound"] == 100.0 and m["n"] == 2
    assert m["splits"]["testA"]["n"] == 2 and m["phrase_types"]["attribute"]["accuracy"] == 50.0


def test_empty_proposals_error_or_miss():
    it = item(Box(0, 0, 10, 10))
    with pytest.raises(RefbenchError, match="no candidate boxes.*empty_proposals: miss"):
        judge(it, it.refs, np.zeros((0, 4)), None, ProtocolConfig(), "m")
    recs = judge(it, it.refs, np.zeros((0, 4)), None, ProtocolConfig(empty_proposals="miss"), "m")
    assert recs[0]["hit"] is False and recs[0]["oracle"] is False and recs[0]["chosen"] is None


def test_bad_logits_are_refused():
    it = item(Box(0, 0, 10, 10))
    boxes = np.array([[0, 0, 10, 10]], dtype=float)
    with pytest.raises(RefbenchError, match="shape"):
        judge(it, it.refs, boxes, np.zeros((2, 1)), ProtocolConfig(), "m")
    with pytest.raises(RefbenchError, match="non-finite"):
        judge(it, it.refs, boxes, np.array([[np.nan]]), ProtocolConfig(), "m")


def test_many_images_judged_together_equal_each_phrase_judged_by_hand():
    from refbench import iou_matrix
    from refbench.protocol import judge_many

    rng = np.random.default_rng(5)
    cases = []
    for image in range(30):
        n_refs, n_boxes = int(rng.integers(0, 4)), int(rng.integers(0, 12))
        truths = [Box(*(float(v) for v in rng.uniform([0, 0, 5, 5], [60, 60, 40, 40]))) for _ in range(n_refs)]
        refs = tuple(Ref(sent_id=100 * image + i, ref_id=i, ann_id=i, text="p", box=b, split="testA", phrase_type="")
                     for i, b in enumerate(truths))
        it = ImageItem(image_id=image, path=Path(f"{image}.jpg"), width=100, height=100, refs=refs)
        near = [b for t in truths for b in ([t.x + 2, t.y, t.w, t.h], [t.x, t.y, t.w / 2, t.h])]  # some hits, some misses
        boxes = np.array((near + rng.uniform([0, 0, 5, 5], [60, 60, 40, 40], (n_boxes, 4)).tolist())[:n_boxes]).reshape(-1, 4)
        logits = rng.integers(0, 3, (n_refs, len(boxes))).astype(float)  # small integers: many ties
        cases.append((it, refs, boxes, logits))
    protocol = ProtocolConfig(empty_proposals="miss")
    together = judge_many(cases, protocol, "m")
    assert sum(map(len, together)) == sum(len(refs) for _, refs, _, _ in cases)
    for (it, refs, boxes, logits), records in zip(cases, together):
        assert [r["sent_id"] for r in records] == [r.sent_id for r in refs]
        for ref, row, r in zip(refs, logits, records):
            if not len(boxes):
                assert r["chosen"] is None and not r["hit"] and not r["oracle"]
                continue
            ious = iou_matrix([ref.box.xywh], boxes)[0]
            chosen = int(np.flatnonzero(row == row.max())[0])
            assert (r["chosen"], r["hit"], r["oracle"]) == (chosen, bool(ious[chosen] > 0.5), bool((ious > 0.5).any()))
            assert r["chance"] == round(float(np.mean(ious > 0.5)), 6) and r["iou"] == round(float(ious[chosen]), 5)
            assert r["box"] == [round(v, 2) for v in boxes[chosen]] and r["candidates"] == len(boxes)
    records = [r for rs in together for r in rs]
    shuffled = [records[i] for i in rng.permutation(len(records))]  # workers and resumes interleave records
    assert summarize(shuffled) == summarize(records)
    assert summarize(records)["m"]["chance"] == pytest.approx(100 * np.mean([r["chance"] for r in records]), abs=1e-9)
    bad = [(it, refs, boxes, logits.copy()) for it, refs, boxes, logits in cases]
    k = next(i for i, c in enumerate(bad) if i >= 7 and c[3].size)  # a later image: the message names the right one
    bad[k][3][-1, -1] = np.inf
    with pytest.raises(RefbenchError, match=rf"non-finite logits for image {k}\b"):
        judge_many(bad, protocol, "m")


def test_sum_and_mean_of_logits():
    from refbench.builtins.combinators import MeanLogits, SumLogits

    a, b = np.array([[1.0, 3.0]]), np.array([[2.0, -1.0]])
    assert np.allclose(SumLogits(SumLogits.Options(of=["a", "b"])).combine([a, b]), [[3.0, 2.0]])
    assert np.allclose(SumLogits(SumLogits.Options(of=["a", "b"], weights=[2, 1])).combine([a, b]), [[4.0, 5.0]])
    assert np.allclose(MeanLogits(MeanLogits.Options(of=["a", "b"])).combine([a, b]), [[1.5, 1.0]])
