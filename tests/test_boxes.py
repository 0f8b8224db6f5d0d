import numpy as np
import pytest

from refbench import Box, RefbenchError, check_boxes, iou_matrix
from refbench.config import ProtocolConfig
from refbench.protocol import hits


def refer_compute_iou(box1, box2):
    """refer's computeIoU, transcribed as published, to check ours against."""
    inter_x1 = max(box1[0], box2[0])
    inter_y1 = max(box1[1], box2[1])
    inter_x2 = min(box1[0] + box1[2] - 1, box2[0] + box2[2] - 1)
    inter_y2 = min(box1[1] + box1[3] - 1, box2[1] + box2[3] - 1)
    if inter_x1 < inter_x2 and inter_y1 < inter_y2:
        inter = (inter_x2 - inter_x1 + 1) * (inter_y2 - inter_y1 + 1)
    else:
        inter = 0
    union = box1[2] * box1[3] + box2[2] * box2[3] - inter
    return float(inter) / union


def test_refer_convention_matches_refer_api_on_random_boxes():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(0, 50, (40, 2)), rng.uniform(1, 40, (40, 2))]
    b = np.c_[rng.uniform(0, 50, (30, 2)), rng.uniform(1, 40, (30, 2))]
    ours = iou_matrix(a, b, "refer")
    expected = np.array([[refer_compute_iou(x, y) for y in b] for x in a])
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_conventions_differ_as_documented():
    # with an overlap of more than one pixel in both axes the "+1"s cancel: same value
    a, b = [[0, 0, 10.5, 10]], [[5, 0, 10, 10]]
    assert iou_matrix(a, b, "continuous")[0, 0] == pytest.approx(55 / 150)
    assert iou_matrix(a, b, "refer")[0, 0] == pytest.approx(55 / 150)
    # overlapping by one pixel or less: refer's strict '<' counts no intersection
    assert iou_matrix([[0, 0, 10, 10]], [[9, 0, 10, 10]], "refer")[0, 0] == 0.0
    assert iou_matrix([[0, 0, 10, 10]], [[9, 0, 10, 10]], "continuous")[0, 0] == pytest.approx(10 / 190)


def test_comparison_at_exactly_the_threshold():
    half = iou_matrix([[0, 0, 10, 10]], [[0, 0, 5, 10]], "continuous")  # exactly 0.5
    assert half[0, 0] == 0.5
    assert not hits(half, ProtocolConfig(comparison=">", iou_convention="continuous"))[0, 0]
    assert hits(half, ProtocolConfig(comparison=">=", iou_convention="continuous"))[0, 0]


@pytest.mark.parametrize("box, words", [
    (Box(0, 0, 0, 5), "degenerate"),
    (Box(0, 0, 5, -1), "degenerate"),
    (Box(float("nan"), 0, 5, 5), "non-finite"),
    (Box(90, 90, 20, 20), "outside"),
])
def test_bad_boxes_are_named(box, words):
    with pytest.raises(RefbenchError, match=words):
        check_boxes([Box(1, 1, 3, 3), box], 100, 100, "image 7 candidates")
    check_boxes([Box(0, 0, 100.5, 100)], 100, 100, "ok")  # one pixel of overhang is tolerated
