from pathlib import Path

import numpy as np
import pytest

from refbench import Box, ImageItem, Ref, RefbenchError
from refbench.config import ProtocolConfig
from refbench.protocol import judge, summarize


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
