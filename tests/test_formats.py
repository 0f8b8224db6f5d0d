"""Declared coordinate formats: each reading of four numbers, checked against boxes computed by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from refbench import Box, BoxFormat, RefbenchError


def decode(values, width=200, height=100, input_size=None, **declared):
    return BoxFormat(**declared).decode(values, width, height, input_size)


def test_pixels_and_corners():
    assert decode([40, 20, 100, 50], box_format="xyxy", scale="pixels") == Box(40, 20, 60, 30)
    assert decode([40, 20, 60, 30], box_format="xywh", scale="pixels") == Box(40, 20, 60, 30)


def test_normalised_and_the_0_1000_grid_scale_by_the_frame():
    assert decode([0.2, 0.2, 0.5, 0.5], box_format="xyxy", scale="normalised") == Box(40, 20, 60, 30)
    assert decode([200, 200, 500, 500], box_format="xyxy", scale="0-1000") == Box(40, 20, 60, 30)
    assert decode([0.2, 0.2, 1.5, 0.5], box_format="xyxy", scale="normalised") == "outside_unit_range"


def test_a_grid_of_bins_with_their_centres():
    # 1000 bins, a value is the bin's centre: (v + 0.5) / 1000 of the side
    got = decode([199.5, 199.5, 499.5, 499.5], box_format="xyxy", scale="grid", grid=1000, grid_offset=0.5)
    assert got.xywh == pytest.approx((40, 20, 60, 30))
    assert decode([0, 0, 1025, 10], box_format="xyxy", scale="grid", grid=1024) == "outside_unit_range"


def test_y_first():
    # y_min, x_min, y_max, x_max on a 1024 grid: x 40..100 of 200, y 20..50 of 100
    got = decode([204.8, 204.8, 512, 512], box_format="xyxy", scale="grid", grid=1024, order="yx")
    assert got.xywh == pytest.approx((40, 20, 60, 30))
    got = decode([0.2, 0.3, 0.5, 0.6], box_format="xyxy", scale="normalised", order="yx")  # y 20..50, x 60..120
    assert got.xywh == pytest.approx((60, 20, 60, 30))


def test_a_resized_input_given_per_call():
    fmt = BoxFormat(box_format="xyxy", scale="pixels", relative_to="resized")
    # the 200 x 100 image went in as 448 x 224: pixels of that input map back by 200/448
    got = fmt.decode([89.6, 44.8, 224, 112], 200, 100, input_size=(448, 224))
    assert got.xywh == pytest.approx((40, 20, 60, 30))
    with pytest.raises(RefbenchError, match="need its size"):
        fmt.decode([1, 1, 2, 2], 200, 100)


def test_letterboxed_centre():
    # 200 x 100 into 100 x 100, scale 0.5, 25 px bands top and bottom
    got = decode([20, 35, 50, 50], box_format="xyxy", scale="pixels", relative_to="letterboxed", input_size=(100, 100))
    assert got.xywh == pytest.approx((40, 20, 60, 30))


def test_boxes_outside_the_image_or_degenerate_are_no_answer():
    assert decode([150, 20, 260, 50], box_format="xyxy", scale="pixels") == "invalid_box"
    assert decode([40, 20, 40, 50], box_format="xyxy", scale="pixels") == "invalid_box"


def test_declarations_that_cannot_hold():
    with pytest.raises(ValidationError, match="grid is needed"):
        BoxFormat(box_format="xyxy", scale="grid")
    with pytest.raises(ValidationError, match="grid is needed"):
        BoxFormat(box_format="xyxy", scale="pixels", grid=10)
    with pytest.raises(ValidationError):
        BoxFormat(box_format="xyxy", scale="pixels", guess=True)
