"""Exact views recomputed only where each box reaches are bit-identical to the full exact path."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from refbench import Box, RefbenchError

from clip_shaded import ClipScorer, GreenShade
from clip_shaded.views import (MAX_WEIGHTS, ExactViews, changed_rects, crop_offsets, first_pass_vertical, pillow_order,
                                pillow_pass, resized_size)

from conftest import PILLOW_13


class Shade(GreenShade):
    """GreenShade, declaring that it draws within its boxes."""

    draws_within_box = 0


class Halo(GreenShade):
    """Draws 3 pixels beyond each box as well, and declares it (the margin a prompter may declare):
    its own ``draw``, GreenShade's on grown boxes, from which its windows are drawn too."""

    draws_within_box = 3

    def draw(self, canvas):
        grown = canvas.boxes + canvas.boxes.new_tensor([-3, -3, 6, 6])
        return super().draw(dataclasses.replace(canvas, boxes=grown))


class Anywhere(GreenShade):
    """GreenShade that does not declare where it draws: the scorer keeps the full exact path."""

    draws_within_box = None


def changed_rect(box, margin, width, height):
    """:func:`changed_rects` for one box, written out with Python's math (the check of the vectorised one)."""
    grow = margin + 1
    x0 = min(max(math.floor(box.x) - grow, 0), width - 1)
    y0 = min(max(math.floor(box.y) - grow, 0), height - 1)
    x1 = min(max(math.ceil(box.x + box.w) + grow, x0 + 1), width)
    y1 = min(max(math.ceil(box.y + box.h) + grow, y0 + 1), height)
    return x0, y0, x1, y1


def reference(views, size):
    """The full exact path: torchvision's Resize (shortest side, bicubic) and CenterCrop on each view."""
    resize = transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(size)])
    return np.stack([np.asarray(resize(v)) for v in views]) if views else np.empty((0, size, size, 3), np.uint8)


def region_only(exact, image, boxes, prompter):
    """The region-only writer's views (written channels-first, as the scorer has them), as N x H x W x 3."""
    out = torch.zeros((len(boxes), 3, exact.size, exact.size), dtype=torch.uint8)
    assert exact.write(image, boxes, prompter, out.numpy())
    return out.numpy().transpose(0, 2, 3, 1)


def border_boxes(w, h):
    """Boxes on every border and corner, the whole image, outside it, and thin and sub-pixel ones."""
    return [Box(0, 0, w / 3, h / 3), Box(2 * w / 3, 2 * h / 3, w / 3, h / 3),  # top-left, bottom-right corners
            Box(2 * w / 3, 0, w / 3, h / 3), Box(0, 2 * h / 3, w / 3, h / 3),  # top-right, bottom-left corners
            Box(0, h / 4, w, h / 2), Box(w / 4, 0, w / 2, h),  # left and right, top and bottom edges
            Box(-5, -5, w + 10, h + 10), Box(0, 0, w, h),  # beyond the image, exactly the image
            Box(w - 0.4, h / 2, 7, 3), Box(-9, h / 2, 4, 3),  # right of the image, left of it
            Box(w / 2, h - 0.5, 3, 9), Box(w / 2, -12, 3, 4),  # below, above
            Box(w / 2 + 0.5, h / 2 + 0.5, 0.3, 0.2), Box(w / 3, h / 5, 1, h), Box(w / 5, h / 3, w, 1)]  # sub-pixel, thin


SIZES = [(128, 128), (640, 480), (480, 640), (66, 271), (271, 66), (333, 500), (500, 333), (199, 390), (1, 1),
         (1, 300), (300, 1), (3, 7), (64, 64), (63, 65), (65, 63), (2000, 17), (17, 2000), (100, 101), (230, 2000)]


@pytest.mark.parametrize("size", [64, 224, 8, 2])
def test_region_only_views_are_bit_identical_to_the_full_path(size):
    rng = np.random.default_rng(size)
    exact = ExactViews(size)
    shapes = SIZES + [tuple(int(v) for v in rng.integers(1, 500, 2)) for _ in range(8 if size > 64 else 30)]
    orders = set()
    for i, (w, h) in enumerate(shapes):
        rw, rh = resized_size(w, h, size)
        if max(w * rw, h * rh) > MAX_WEIGHTS:  # 17x2000 and 2000x17 at 64 and 224: the reference path
            assert exact.geometry(w, h) is None
            continue
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        boxes = border_boxes(w, h) + [Box(*(float(v) for v in rng.uniform([-w / 4, -h / 4, 0, 0], [w, h, w, h])))
                                      for _ in range(int(rng.integers(0, 12)))]
        boxes = boxes if i % 3 else boxes[: int(rng.integers(0, 3))]  # some images with 0-2 boxes
        options = dict(alpha=float(rng.choice([0.3, 0.5, 1.0])), outline=int(rng.integers(0, 4)),
                       colour=tuple(int(c) for c in rng.integers(0, 256, 3)))
        for prompter in (Shade(Shade.Options(**options)), Halo(Halo.Options(**options))):
            got = region_only(exact, image, boxes, prompter)
            assert np.array_equal(got, reference(prompter.render(image, boxes), size)), (w, h, size, type(prompter).__name__)
        geometry = exact.geometry(w, h)
        assert geometry is not None  # every other size here takes the region-only path
        if PILLOW_13:  # its order: vertical first when the height loses more than twice as many pixels as the width
            assert geometry.flip == (0 < h - rh and 2 * (w - rw) < h - rh)
        orders.add(geometry.flip)
    assert orders == {False, True} or size == 2 or not PILLOW_13  # both orders of passes are exercised


def test_boxes_on_a_grid_of_positions_and_scales():
    """Every position and size of a box along each border of images that Pillow resizes by a
    non-dyadic scale (5/3, 640/298...), against one resize per view."""
    exact = ExactViews(64)
    for w, h in [(107, 80), (80, 107), (640, 480), (97, 64)]:
        image = Image.fromarray(np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8))
        boxes = [Box(x, y, bw, bh) for x in (0, 1, 2.5, w / 2, w - 9, w - 3) for y in (0, 3, h - 5)
                 for bw, bh in ((1, 1), (4, 9), (9, 4))]
        assert np.array_equal(region_only(exact, image, boxes, Shade()), reference(Shade().render(image, boxes), 64))


def test_green_shade_draws_within_its_boxes():
    """The premise of ``draws_within_box = 0``: outside the rectangle the writer recomputes, a
    GreenShade view is its image, for any box and options."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        box = Box(*(float(v) for v in rng.uniform([-w, -h, 0, 0], [2 * w, 2 * h, w, h])))
        prompter = GreenShade(GreenShade.Options(alpha=float(rng.uniform(0, 1)), outline=int(rng.integers(0, 5))))
        (view,) = prompter.render(image, [box])
        x0, y0, x1, y1 = changed_rects([box], 0, w, h)[0].tolist()
        outside = np.ones((h, w), bool)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(np.asarray(view)[outside], np.asarray(image)[outside])


def test_geometry_follows_torchvision():
    for w, h in SIZES:
        for size in (8, 64, 224):
            resized = transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC)(Image.new("RGB", (w, h)))
            assert resized_size(w, h, size) == resized.size
            left, top = crop_offsets(*resized.size, size)
            assert transforms.CenterCrop(size)(resized).size == (size, size)
            noise = Image.fromarray(np.random.default_rng(w + h).integers(0, 256, (resized.height, resized.width, 3), dtype=np.uint8))
            assert np.array_equal(np.asarray(transforms.CenterCrop(size)(noise)),
                                  np.asarray(noise)[top : top + size, left : left + size])  # the crop torchvision takes


def test_changed_rect_covers_any_rounding_and_stays_in_the_image():
    for box, rect in [(Box(2.5, 3.5, 4, 0.01), (1, 2, 8, 5)), (Box(500, -50, 10, 10), (99, 0, 100, 1)),
                      (Box(-20, 40, 5, 500), (0, 39, 1, 100))]:
        assert tuple(changed_rects([box], 0, 100, 100)[0].tolist()) == rect
    assert tuple(changed_rects([Box(10, 10, 5, 5)], 3, 100, 100)[0].tolist()) == (6, 6, 19, 19)
    rng = np.random.default_rng(3)
    boxes = [Box(*(float(v) for v in rng.uniform([-50, -50, 0, 0], [150, 150, 80, 80]))) for _ in range(300)]
    boxes += [Box(3.0, 4.0, 0.0, 0.0), Box(99.5, 99.5, 0.2, 0.2), Box(-0.5, 2.5, 1.5, 0.5)]
    for margin in (0, 2):
        assert changed_rects(boxes, margin, 100, 90).tolist() == [list(changed_rect(b, margin, 100, 90)) for b in boxes]


def test_coefficients_reproduce_pillow_on_each_pass_alone():
    """Each pass on its own (one axis resized, the other kept: Pillow then runs that pass only)
    against Image.resize, reducing and enlarging, on noise and on the extremes 0 and 255."""
    rng = np.random.default_rng(5)
    for n_in, n_out in [(128, 64), (640, 298), (480, 224), (7, 64), (64, 7), (1, 5), (5, 1), (300, 299), (299, 300), (2000, 17)]:
        k = pillow_pass(n_in, n_out)
        assert k.weights.shape == (n_out, n_in) and (k.first < k.end).all()
        for pixels in (rng.integers(0, 256, (3, n_in, 3), dtype=np.uint8),
                       np.where(np.arange(n_in)[None, :, None] % 2 == 1, 255, 0).astype(np.uint8).repeat(3, 0).repeat(3, 2)):
            want = np.asarray(Image.fromarray(pixels).resize((n_out, 3), Image.Resampling.BICUBIC))
            sums = np.einsum("oi,yic->yoc", k.weights, pixels.astype(np.float64))
            assert np.array_equal(np.floor(np.clip(sums + 0.5, 0, 255.5)).astype(np.uint8), want), (n_in, n_out)


def test_sizes_whose_coefficients_lie_near_a_rounding_step_keep_the_reference_path():
    """569 -> 384 has a coefficient within 2^-26 of where C's (int) cast rounds the other way: a
    platform whose float arithmetic differs by an ulp could give Pillow another integer there."""
    assert pillow_pass(569, 384).near_tie and not pillow_pass(640, 384).near_tie
    exact = ExactViews(384)
    assert exact.geometry(569, 600) is None and exact.geometry(640, 600) is not None
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 569, 3), dtype=np.uint8))
    out = np.zeros((1, 3, 384, 384), np.uint8)
    assert not exact.write(image, [Box(10, 10, 50, 50)], Shade(), out) and not out.any()  # declined, nothing written


def test_green_shade_windows_are_its_views_cut():
    """GreenShade draws each window itself; the pixels are its full views' there, for any box,
    window and options (including boxes partly or wholly outside their windows)."""
    rng = np.random.default_rng(11)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        boxes = [Box(*(float(v) for v in rng.uniform([-w / 2, -h / 2, 0, 0], [w, h, w, h]))) for _ in range(int(rng.integers(1, 6)))]
        windows = []
        for _ in boxes:
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            windows.append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
        prompter = GreenShade(GreenShade.Options(alpha=float(rng.uniform(0, 1)), outline=int(rng.integers(0, 5)),
                                                 colour=tuple(int(c) for c in rng.integers(0, 256, 3))))
        views = prompter.render(image, boxes)
        for got, view, (x0, y0, x1, y1) in zip(prompter.render_windows(image, boxes, windows), views, windows):
            assert got.dtype == np.uint8 and np.array_equal(got, np.asarray(view)[y0:y1, x0:x1])


class Resizing(GreenShade):
    """Declares draws_within_box but draws its views at another size (a broken prompter)."""

    draws_within_box = 0

    def render(self, image, boxes):
        return [v.resize((v.width + 1, v.height)) for v in super().render(image, boxes)]


class Broken(GreenShade):
    """Its render_windows answers wrongly: ``how`` says in what way."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def render_windows(self, image, boxes, windows):
        patches = super().render_windows(image, boxes, windows)
        if self.how == "fewer":
            return patches[:-1]
        if self.how == "float":
            return [p.astype(np.float64) for p in patches]
        return [p[:, :-1] for p in patches]  # a column short


@pytest.mark.parametrize("how, message", [("fewer", "gave 1 windows for 2"), ("float", "gave float64"),
                                          ("short", r"gave uint8 \[\d+, \d+, 3\] for window")])
def test_a_wrong_answer_from_render_windows_is_one_line(scorer, how, message):
    image = Image.new("RGB", (80, 60), (10, 20, 30))
    with pytest.raises(RefbenchError, match=message) as err:
        scorer.prepare(image, [Box(5, 5, 20, 20), Box(30, 20, 30, 30)], Broken(how))
    assert "\n" not in str(err.value) and err.value.fix


def test_passes_too_long_for_a_dense_matrix_keep_the_reference_path(scorer):
    """17x2000 at 64 px: the long side grows to 7,529 pixels, a 15-million-entry matrix."""
    assert scorer.exact.geometry(17, 2000) is None
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (2000, 17, 3), dtype=np.uint8))
    boxes = [Box(2, 100, 10, 300), Box(0, 1500, 17, 400)]
    assert np.array_equal(scorer.prepare(image, boxes, Shade()).numpy().transpose(0, 2, 3, 1),
                          reference(Shade().render(image, boxes), 64))


def test_a_size_whose_order_of_passes_cannot_be_told_keeps_the_reference_path():
    # at 2 px, 25x66 comes out the same both ways round on both probe images (Pillow 12.1-13);
    # 25x67 does not: vertically first on Pillow 13, horizontally on 12.x
    assert pillow_order(25, 66, 2) is None and first_pass_vertical(25, 66, 2) is None
    assert ExactViews(2).geometry(25, 66) is None
    assert pillow_order(25, 67, 2) is PILLOW_13 and ExactViews(2).geometry(25, 67).flip is PILLOW_13


def test_a_prompter_whose_views_change_size_has_no_windows(scorer):
    image = Image.new("RGB", (80, 60), (10, 20, 30))
    with pytest.raises(RefbenchError, match="draws views of another size than the image"):
        scorer.prepare(image, [Box(5, 5, 20, 20)], Resizing())


@pytest.fixture(scope="module")
def scorer():
    return ClipScorer(ClipScorer.Options(arch="synth-rn"))


def test_the_scorer_takes_the_region_only_path_only_when_the_prompter_declares_it(scorer, monkeypatch):
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (90, 150, 3), dtype=np.uint8))
    boxes = border_boxes(150, 90)
    want = reference(Shade().render(image, boxes), 64)
    calls = []
    write = ExactViews.write
    monkeypatch.setattr(ExactViews, "write", lambda self, *a: calls.append(write(self, *a)) or calls[-1])
    for prompter, used in ((Shade(), True), (Anywhere(), False)):
        calls.clear()
        views = scorer.prepare(image, boxes, prompter)
        assert views.is_contiguous() and views.dtype == torch.uint8
        assert np.array_equal(views.numpy().transpose(0, 2, 3, 1), want) and any(calls) == used
    # images not in RGB, and sizes where neither order of passes reproduces Pillow, take the full path
    grey = image.convert("L")
    calls.clear()
    assert np.array_equal(scorer.prepare(grey, boxes, Shade()).numpy().transpose(0, 2, 3, 1),
                          reference(Shade().render(grey, boxes), 64))
    assert calls == []  # never offered to the region-only path
    declining = ExactViews(64)  # as if no size reproduced Pillow here
    monkeypatch.setattr(declining, "_check", lambda w, h: None)
    monkeypatch.setattr(scorer, "exact", declining)
    assert np.array_equal(scorer.prepare(image, boxes, Shade()).numpy().transpose(0, 2, 3, 1), want)
    assert calls == [False]  # offered, declined: the full path wrote the views


def test_an_image_without_boxes(scorer):
    image = Image.new("RGB", (80, 60), (10, 20, 30))
    assert scorer.prepare(image, [], Shade()).shape == (0, 3, 64, 64)


@pytest.mark.parametrize("budget", [1 << 20, 700])
def test_several_images_prepared_together_are_each_prepared_alone(scorer, monkeypatch, budget):
    """``prepare_many`` draws every image's windows on shared canvases (views of images of several
    sizes side by side, in several canvases when ``WINDOW_PIXELS`` is small): each image's views are
    those ``prepare`` gives it alone, and the full exact path's. Grey images, a size on the reference
    path and an image without boxes are among them."""
    import refbench.prompter
    from visual_prompts.prompters import CptShade

    monkeypatch.setattr(refbench.prompter, "WINDOW_PIXELS", budget)
    rng = np.random.default_rng(budget)
    images, boxes = [], []
    for k, (w, h) in enumerate([(150, 90), (640, 480), (66, 271), (17, 2000), (63, 65), (90, 150), (3, 7), (128, 128)]):
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        images.append(image.convert("L") if k == 4 else image)
        boxes.append([] if k == 6 else border_boxes(w, h)[: int(rng.integers(1, 16))]
                     + [Box(*(float(v) for v in rng.uniform([-w / 4, -h / 4, 0, 0], [w, h, w, h]))) for _ in range(3)])
    assert scorer.exact.geometry(17, 2000) is None
    for prompter in (Shade(Shade.Options(outline=2)), Halo(), CptShade()):
        together = scorer.prepare_many(images, boxes, prompter)
        assert len(together) == len(images)
        for image, b, views in zip(images, boxes, together):
            alone = scorer.prepare(image, b, prompter)
            assert views.shape == (len(b), 3, 64, 64) and torch.equal(views, alone), (image.size, type(prompter).__name__)
            assert np.array_equal(views.numpy().transpose(0, 2, 3, 1), reference(prompter.render(image, b), 64))


def test_windows_of_several_images_are_each_images_views_cut(monkeypatch):
    """``render_windows_many`` over images of different sizes, boxes partly or wholly outside their
    images and windows anywhere: every window holds its image's full view there."""
    import refbench.prompter
    from visual_prompts.prompters import CptShade

    rng = np.random.default_rng(7)
    for budget in (1 << 20, 300):
        monkeypatch.setattr(refbench.prompter, "WINDOW_PIXELS", budget)
        images, boxes, windows = [], [], []
        for _ in range(6):
            h, w = (int(v) for v in rng.integers(1, 70, 2))
            images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
            boxes.append([Box(*(float(v) for v in rng.uniform([-w / 2, -h / 2, 0, 0], [w, h, w, h])))
                          for _ in range(int(rng.integers(0, 6)))])
            windows.append([])
            for _ in boxes[-1]:
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                windows[-1].append((x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))))
        for prompter in (Shade(Shade.Options(outline=3, alpha=0.3)), Halo(), CptShade()):
            got = prompter.render_windows_many(images, boxes, windows)
            for image, b, ws, patches in zip(images, boxes, windows, got):
                assert len(patches) == len(ws)
                for patch, view, (x0, y0, x1, y1) in zip(patches, prompter.render(image, b), ws):
                    assert patch.dtype == np.uint8 and np.array_equal(patch, np.asarray(view)[y0:y1, x0:x1])


def test_resized_views_of_several_images_are_each_prepared_alone():
    """``views: resized``: ``prepare_many`` draws the images of one scale in one batch (two images
    share each scale here, and one has a scale of its own); each image's views are ``prepare``'s."""
    from visual_prompts.prompters import CptShade, RedCircle

    scorer = ClipScorer(ClipScorer.Options(arch="synth-rn", views="resized"))
    rng = np.random.default_rng(3)
    images, boxes = [], []
    for w, h in [(150, 90), (90, 150), (200, 120), (120, 200), (77, 77), (128, 96)]:
        images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        boxes.append(border_boxes(w, h)[: int(rng.integers(0, 8))])
    scales = [max(64 / i.width, 64 / i.height) for i in images]
    assert len(set(scales)) == 4
    for prompter in (Shade(Shade.Options(outline=3)), CptShade(), RedCircle()):
        together = scorer.prepare_many(images, boxes, prompter)
        for image, b, views in zip(images, boxes, together):
            assert views.shape == (len(b), 3, 64, 64) and torch.equal(views, scorer.prepare(image, b, prompter))


def test_a_scorer_with_its_own_prepare_keeps_it_for_several_images():
    """A subclass of the clip scorer that draws its own views (overrides ``prepare``) gets them from
    ``prepare_many`` too, for exact and resized views."""

    class Blank(ClipScorer):
        def prepare(self, image, boxes, prompter):
            return torch.full((len(boxes), 3, self.size, self.size), 7, dtype=torch.uint8)

    images = [Image.new("RGB", (80, 60), (10, 20, 30)), Image.new("RGB", (60, 80), (40, 50, 60))]
    boxes = [[Box(5, 5, 20, 20)], [Box(1, 2, 30, 30), Box(10, 10, 5, 5)]]
    for views in ("exact", "resized"):
        got = Blank(Blank.Options(arch="synth-rn", views=views)).prepare_many(images, boxes, Shade())
        assert [tuple(v.shape) for v in got] == [(1, 3, 64, 64), (2, 3, 64, 64)] and all(bool((v == 7).all()) for v in got)
