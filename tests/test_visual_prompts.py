"""The visual-prompt zoo (plugins/visual_prompts) and green_shade's seed style: every prompter's
pixels against a reference computed another way (the source's own Pillow or OpenCV path, or a
per-pixel definition), option checks, and a run through the real runner."""

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from refbench import Box, RefbenchError
from refbench.config import load_config
from refbench.plugins import registry
from refbench.results import Store, read_record
from refbench.run import build, run_benchmark

from clip_shaded import GreenShade
from clip_shaded.prompter import jpeg_round_trip, seed_view
from visual_prompts import Blur, CptShade, GrayscaleOutside, RedCircle
from visual_prompts.prompters import box_pixels

from conftest import bench_yaml


def _random_case(rng, min_side=1, max_side=40, n_boxes=4):
    h, w = (int(v) for v in rng.integers(min_side, max_side, 2))
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = []
    for _ in range(n_boxes):
        x, y = rng.uniform([-1, -1], [w - 0.3, h - 0.3])  # on the image, up to a pixel past its edges
        low = [max(0.2, 0.3 - x), max(0.2, 0.3 - y)]
        boxes.append(Box(float(x), float(y), *(float(v) for v in rng.uniform(low, [w + 1 - x, h + 1 - y]))))
    return image, boxes


def _reclip_mask(box: Box, size: tuple[int, int]) -> np.ndarray:
    """ReCLIP's mask: ImageDraw's rectangle over (left, top, right, bottom), clamped to the image."""
    w, h = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([(max(box.x, 0), max(box.y, 0)), (min(box.x + box.w, w), min(box.y + box.h, h))], fill=255)
    return np.asarray(mask) > 0


# ---------------------------------------------------------------- the plugin


def test_prompters_are_registered_with_their_methods_templates():
    reg = registry()
    expected = {"blur": (Blur, "a photo of {}"), "red_circle": (RedCircle, "a photo of {}"),
                "cpt_shade": (CptShade, "{} is in red color."), "grayscale_outside": (GrayscaleOutside, "a photo of {}")}
    for name, (cls, template) in expected.items():
        built = reg.build("prompter", {"plugin": name}, "prompter")
        assert type(built) is cls and built.template == template
        assert reg.info("prompter", name).package == "refbench-visual-prompts"
    assert (Blur().options.radius, RedCircle().options.thickness, RedCircle().options.colour) == (100.0, 2.0, (255, 0, 0))
    assert CptShade().options.colour == (240, 0, 30) and CptShade().options.alpha == pytest.approx(127 / 255)


@pytest.mark.parametrize("name, options, field", [
    ("blur", {"radius": 0}, "radius"), ("blur", {"radius": -3}, "radius"),
    ("red_circle", {"thickness": 0.5}, "thickness"), ("red_circle", {"thickness": 0}, "thickness"),
    ("cpt_shade", {"alpha": 1.5}, "alpha"), ("cpt_shade", {"alpha": -0.1}, "alpha"),
    ("cpt_shade", {"colour": [256, 0, 0]}, "colour"), ("grayscale_outside", {"weights": 1}, "weights"),
])
def test_bad_options_are_field_errors(name, options, field):
    with pytest.raises(RefbenchError, match=field):
        registry().build("prompter", {"plugin": name, **options}, "methods[0].prompter")


def test_box_pixels_are_reclips_mask_rectangle():
    rng = np.random.default_rng(0)
    for _ in range(300):
        image, boxes = _random_case(rng)
        h, w = image.shape[:2]
        for box in boxes:
            x0, y0, x1, y1 = box_pixels(box, w, h)
            ours = np.zeros((h, w), dtype=bool)
            ours[y0:y1, x0:x1] = True
            assert np.array_equal(ours, _reclip_mask(box, (w, h))), box


# ---------------------------------------------------------------- pixels against the sources' own paths


@pytest.mark.parametrize("radius", [100.0, 2.5])
def test_blur_is_reclips_blur_and_paste(radius):
    rng = np.random.default_rng(1)
    for _ in range(10):
        image, boxes = _random_case(rng, min_side=8)
        pil = Image.fromarray(image)
        views = Blur(Blur.Options(radius=radius)).render(pil, boxes)
        for view, box in zip(views, boxes):
            reference = pil.filter(ImageFilter.GaussianBlur(radius))  # ReCLIP: blur everything, paste the box through its mask
            reference.paste(pil, mask=Image.fromarray(_reclip_mask(box, pil.size).astype(np.uint8) * 255))
            assert np.array_equal(np.asarray(view), np.asarray(reference))
    assert np.array_equal(np.asarray(pil), image)  # the input is not modified
    flat = Blur().render(Image.new("RGB", (30, 20), (10, 200, 30)), [Box(2, 2, 5, 5)])[0]
    assert np.all(np.asarray(flat) == (10, 200, 30))  # a blur keeps a constant image constant


def test_cpt_shade_is_its_definition_and_reclips_alpha_composite():
    rng = np.random.default_rng(2)
    for _ in range(20):
        image, boxes = _random_case(rng, max_side=24)
        h, w = image.shape[:2]
        prompter = CptShade()
        views = [np.asarray(v) for v in prompter.render(Image.fromarray(image), boxes)]
        a = 127 / 255
        for view, box in zip(views, boxes):
            inside = _reclip_mask(box, (w, h))
            for y in range(h):  # the definition, pixel by pixel
                for x in range(w):
                    want = [round(float(np.float32(c) * np.float32(1 - a) + np.float32(t * a))) for c, t in zip(image[y, x], (240, 0, 30))]
                    assert list(view[y, x]) == (want if inside[y, x] else list(image[y, x]))
            # ReCLIP's own path: an RGBA overlay, the box at alpha 127, alpha_composite, back to RGB
            overlay = Image.new("RGBA", (w, h), (240, 0, 30, 0))
            ImageDraw.Draw(overlay).rectangle([(max(box.x, 0), max(box.y, 0)), (min(box.x + box.w, w), min(box.y + box.h, h))],
                                              fill=(240, 0, 30, 127))
            reclip = np.asarray(Image.alpha_composite(Image.fromarray(image).convert("RGBA"), overlay).convert("RGB"))
            assert np.abs(reclip.astype(int) - view).max() <= 1  # Pillow blends in 7-bit fixed point


def test_grayscale_outside_is_pillows_luma_outside_the_box():
    rng = np.random.default_rng(3)
    for _ in range(30):
        image, boxes = _random_case(rng)
        h, w = image.shape[:2]
        gray = np.asarray(Image.fromarray(image).convert("L"))
        for view, box in zip(GrayscaleOutside().render(Image.fromarray(image), boxes), boxes):
            inside = _reclip_mask(box, (w, h))
            want = np.where(inside[..., None], image, gray[..., None])
            assert np.array_equal(np.asarray(view), want)


def _ring_reference(shape, box: Box, thickness: float) -> np.ndarray:
    """The red circle's definition, pixel by pixel: a pixel centre inside the ellipse grown by half the
    line on each semi-axis and not inside the one shrunk by as much."""
    h, w = shape
    cx, cy, a, b, half = box.x + box.w / 2, box.y + box.h / 2, box.w / 2, box.h / 2, thickness / 2
    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            dx, dy = x + 0.5 - cx, y + 0.5 - cy
            inner = a - half > 0 and b - half > 0 and (dx / (a - half)) ** 2 + (dy / (b - half)) ** 2 < 1
            out[y, x] = (dx / (a + half)) ** 2 + (dy / (b + half)) ** 2 <= 1 and not inner
    return out


def test_red_circle_is_its_definition_and_follows_fgvps_opencv_ellipse():
    rng = np.random.default_rng(4)
    for _ in range(12):
        image, boxes = _random_case(rng, min_side=12, max_side=48)
        h, w = image.shape[:2]
        thickness = float(rng.choice([1.0, 2.0, 3.5]))
        views = RedCircle(RedCircle.Options(thickness=thickness)).render(Image.fromarray(image), boxes)
        for view, box in zip(views, boxes):
            drawn = (np.asarray(view) != image).any(-1)
            ring = _ring_reference((h, w), box, thickness)
            assert np.array_equal(np.asarray(view)[ring], np.broadcast_to([255, 0, 0], (ring.sum(), 3)))
            assert not drawn[~ring].any()
    # FGVP's call, cv2.ellipse(centre, semi-axes, thickness 2), here with sub-pixel centre and axes (shift 8;
    # FGVP cuts them to int): the same curve to within a pixel. OpenCV's 2-px line covers the curve +-1 px,
    # about 3 px, which thickness 3 reproduces.
    for _ in range(40):
        x, y = rng.uniform(0, 30, 2)
        box = Box(float(x), float(y), *(float(v) for v in rng.uniform(4, [48 - x, 40 - y])))
        theirs = np.zeros((40, 48), np.uint8)
        centre = (round((box.x + box.w / 2 - 0.5) * 256), round((box.y + box.h / 2 - 0.5) * 256))  # pixel centres at integers
        cv2.ellipse(theirs, centre, (round(box.w / 2 * 256), round(box.h / 2 * 256)), 0, 0, 360, 1, 2, cv2.LINE_8, 8)
        theirs = theirs.astype(bool)
        ours, wide = _ring_reference((40, 48), box, 2.0), _ring_reference((40, 48), box, 3.0)
        near = np.ones((3, 3), np.uint8)
        assert cv2.dilate(ours.astype(np.uint8), near).astype(bool)[theirs].all()
        assert cv2.dilate(theirs.astype(np.uint8), near).astype(bool)[ours].all()
        assert (wide & theirs).sum() / (wide | theirs).sum() > 0.8


def test_resized_paths_draw_what_the_full_paths_draw():
    rng = np.random.default_rng(5)
    image, boxes = _random_case(rng, min_side=20, n_boxes=5)
    h, w = image.shape[:2]
    for prompter in (CptShade(), GrayscaleOutside(), RedCircle()):
        assert prompter.renders_resized
        exact = np.stack([np.asarray(v) for v in prompter.render(Image.fromarray(image), boxes)])
        fast = prompter.render_resized(image, boxes, scale=1.0)
        assert fast.dtype == np.uint8 and np.array_equal(fast, exact)
        channels_first = np.zeros((len(boxes), 3, h, w), dtype=np.uint8)  # written in place through a transposed view
        prompter.render_resized(image, boxes, 1.0, out=channels_first.transpose(0, 2, 3, 1))
        assert np.array_equal(channels_first, exact.transpose(0, 3, 1, 2))
    thin = RedCircle().render_resized(image, [Box(2, 2, 16, 16)], scale=0.25)[0]  # 2 px * 0.25 -> at least 1 px
    assert np.array_equal((thin != image).any(-1), _ring_reference((h, w), Box(2, 2, 16, 16), 1.0))
    assert not Blur().renders_resized


# ---------------------------------------------------------------- green_shade, style: seed


def _opencv_seed(image_rgb: np.ndarray, box: Box, colour=(50, 205, 50), alpha=0.5, t=2) -> np.ndarray:
    """The fine-tuning code's drawing with OpenCV itself, before the JPEG: int() coordinates; select_zone
    1.2.0's corner adjustment, peephole, fill at alpha / 3 and rectangle at alpha (each an overlay
    blended by cv2.addWeighted); then the opaque cv2.rectangle. BGR image, BGR colour."""
    img = image_rgb[..., ::-1].copy()
    bgr = tuple(float(c) for c in colour[::-1])
    h, w = img.shape[:2]
    x1, y1, bw, bh = (int(v) for v in (box.x, box.y, box.w, box.h))
    cx1, cx2 = (min(max(v, 0), w) for v in (x1, x1 + bw))
    cy1, cy2 = (min(max(v, 0), h) for v in (y1, y1 + bh))
    ax2, ay2 = int(min(max(cx2, 2 * t), w - t)), int(min(max(cy2, 2 * t), h - t))
    ax1, ay1 = int(min(max(cx1, t), ax2 - t)), int(min(max(cy1, t), ay2 - t))
    arm = 7
    if ax2 - ax1 > 4 + arm and ay2 - ay1 > 4 + arm:
        overlay = img.copy()
        for (xa, ya), sx, sy in [((ax1, ay1), 1, 1), ((ax2, ay1), -1, 1), ((ax1, ay2), 1, -1), ((ax2, ay2), -1, -1)]:
            cv2.line(overlay, (xa, ya), (xa + sx * arm, ya), bgr, 3)
            cv2.line(overlay, (xa, ya), (xa, ya + sy * arm), bgr, 3)
        ym, xm = int((ay1 + ay2) / 2), int((ax1 + ax2) / 2)
        for a, b in [((ax1, ym), (ax1 + arm, ym)), ((ax2, ym), (ax2 - arm, ym)), ((xm, ay1), (xm, ay1 + arm)), ((xm, ay2), (xm, ay2 - arm))]:
            cv2.line(overlay, a, b, bgr, 1)
        cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, img)
    overlay = img.copy()
    cv2.rectangle(overlay, (ax1, ay1), (ax2, ay2), bgr, thickness=cv2.FILLED)
    cv2.addWeighted(overlay, alpha / 3.0, img, 1 - alpha / 3.0, 0, img)
    overlay = img.copy()
    cv2.rectangle(overlay, (ax1, ay1), (ax2, ay2), bgr, thickness=t)
    cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, img)
    cv2.rectangle(img, (x1, y1), (x1 + bw, y1 + bh), bgr, thickness=t)
    return img[..., ::-1].copy()


def test_seed_drawing_equals_opencvs():
    rng = np.random.default_rng(6)
    cases = 0
    for _ in range(400):
        t = int(rng.integers(1, 4))
        image, boxes = _random_case(rng, min_side=4 * t, max_side=64, n_boxes=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        alpha = float(rng.choice([0.5, 0.3, 0.77, 1.0]))
        for box in boxes:
            assert np.array_equal(seed_view(image, box, colour, alpha, t), _opencv_seed(image, box, colour, alpha, t)), (box, t)
            cases += 1
    assert cases == 800


def test_seed_views_are_opencvs_jpeg_as_pillow_reads_it():
    rng = np.random.default_rng(7)
    image = np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((96, 80), Image.BICUBIC))
    boxes = [Box(10.7, 8.2, 40.9, 30.5), Box(0, 0, 96, 80), Box(60, 50, 3.5, 2.2)]
    views = GreenShade(GreenShade.Options(style="seed")).render(Image.fromarray(image), boxes)
    for view, box in zip(views, boxes):
        ok, encoded = cv2.imencode(".jpg", _opencv_seed(image, box)[..., ::-1])  # cv2.imwrite's defaults
        original = np.asarray(Image.open(io.BytesIO(encoded.tobytes())).convert("RGB")).astype(int)
        assert ok and np.abs(np.asarray(view).astype(int) - original).max() <= 2  # libjpeg builds may round differently
    shaded = np.asarray(views[0]).astype(int)[20, 30]  # well inside the box: fill at alpha / 3, then JPEG
    assert np.abs(shaded - (image[20, 30] * (1 - 0.5 / 3) + np.array([50, 205, 50]) * 0.5 / 3)).max() <= 6
    assert np.array_equal(np.asarray(jpeg_round_trip(image)), np.asarray(Image.open(_pillow_jpeg(image)).convert("RGB")))


def _pillow_jpeg(image: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=95, subsampling="4:2:0")
    buffer.seek(0)
    return buffer


def test_seed_style_options_and_full_image_only(synth_root, tmp_path, write_config):
    assert GreenShade().renders_resized and GreenShade().options.style == "refbench"
    seed = GreenShade(GreenShade.Options(style="seed"))
    assert not seed.renders_resized and seed.draws_within_box is None  # a JPEG round trip changes every pixel
    with pytest.raises(RefbenchError, match="full image"):
        seed.render_resized(np.zeros((8, 8, 3), np.uint8), [Box(1, 1, 4, 4)], 1.0)
    with pytest.raises(RefbenchError, match="outline"):
        registry().build("prompter", {"plugin": "green_shade", "style": "seed", "outline": 0}, "prompter")
    methods = "  - {id: s, prompter: {plugin: green_shade, style: seed}, scorer: {plugin: clip, arch: synth-rn, views: resized}}"
    with pytest.raises(RefbenchError, match="views: exact"):
        build(load_config(write_config(bench_yaml(synth_root, methods))))


# ---------------------------------------------------------------- a run


def test_every_prompt_runs_and_sums_with_crop(synth_root, tmp_path, write_config):
    methods = "\n".join(
        f"  - {{id: {name}, prompter: {{plugin: {name}}}, scorer: {{plugin: clip, arch: synth-rn, init_seed: 1}}}}"
        for name in ("crop", "blur", "cpt_shade", "red_circle", "grayscale_outside"))
    methods += ("\n  - {id: seed, prompter: {plugin: green_shade, style: seed}, scorer: {plugin: clip, arch: synth-rn, init_seed: 1}}"
                "\n  - {id: reclip-style, combine: {plugin: sum_logits, of: [crop, blur]}}")
    config = write_config(bench_yaml(synth_root, methods, splits="[testA]", extra="runner: {batch_size: 64, workers: 0}"))
    run = run_benchmark(load_config(config), Store(tmp_path / "r"))
    record = read_record(run.dir)
    rows = [json.loads(line) for line in run.journal.path.read_text().splitlines()]
    ids = {"crop", "blur", "cpt_shade", "red_circle", "grayscale_outside", "seed", "reclip-style"}
    assert {r["method"] for r in rows} == ids and set(record["metrics"]) >= ids
    n = sum(1 for r in rows if r["method"] == "crop")
    assert n > 0 and all(sum(1 for r in rows if r["method"] == m) == n for m in ids)
    described = json.dumps(record)
    assert "{} is in red color." in described and "a photo of {}" in described


def test_a_prompt_defined_once_by_draw_has_every_path(tmp_path):
    """The outline example defines only ``draw``: its full, resized, windowed and tensor views are
    the pixels a box outline should have, computed by hand."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "refbench-outline"))
    try:
        from refbench_outline import Outline
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    boxes = [Box(5, 5, 20, 10), Box(30.4, 12.6, 15, 20)]
    prompter = Outline(Outline.Options(width=3))
    assert prompter.renders_resized and prompter.renders_tensor and prompter.draws_within_box == 0
    full = np.stack([np.asarray(v) for v in prompter.render(Image.fromarray(image), boxes)])
    expected = np.repeat(image[None], 2, 0)
    for view, (x0, y0, x1, y1) in zip(expected, [(5, 5, 25, 15), (30, 13, 45, 33)]):  # corners rounded
        ring = np.zeros((40, 50), bool)
        ring[y0:y1, x0:x1] = True
        ring[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = False
        view[ring] = (255, 0, 0)
    assert np.array_equal(full, expected)
    assert np.array_equal(prompter.render_resized(image, boxes, 1.0), full)
    windows = [(3, 4, 27, 16), (29, 10, 50, 35)]
    for patch, view, (x0, y0, x1, y1) in zip(prompter.render_windows(Image.fromarray(image), boxes, windows), full, windows):
        assert np.array_equal(patch, view[y0:y1, x0:x1])
    batch = torch.from_numpy(np.stack([image, image[::-1].copy()])).permute(0, 3, 1, 2)
    xywh = torch.tensor([b.xywh for b in boxes], dtype=torch.float64)
    views = prompter.render_tensor(batch, xywh, torch.tensor([0, 1])).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(views[0], full[0])
    flipped = np.asarray(prompter.render(Image.fromarray(image[::-1].copy()), boxes[1:])[0])
    assert np.array_equal(views[1], flipped)


def test_a_lookup_paints_what_its_function_paints():
    """``Lookup.of(f)`` as a paint source gives ``f``'s pixels: on the CPU's per-rectangle path (whole
    images and windows with their origin) and applied to tensors (the path other devices take); a
    function that does not return uint8 is refused."""
    import torch

    from refbench import Canvas, Lookup

    def tint(pixels: torch.Tensor) -> torch.Tensor:
        return torch.round(pixels.double() * 0.3 + pixels.new_tensor([10, 200, 35]).double().view(3, 1, 1)).to(torch.uint8)

    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.integers(0, 256, (2, 3, 30, 40), dtype=np.uint8))
    lookup = Lookup.of(tint)
    assert lookup.table.shape == (3, 256) and torch.equal(lookup.apply(images), tint(images))
    boxes = torch.tensor([[2.0, 3.0, 10.0, 8.0], [15.0, 0.0, 40.0, 30.0], [-5.0, -5.0, 3.0, 3.0]], dtype=torch.float64)
    index = torch.tensor([0, 1, 1])
    corners = torch.tensor([[2, 3, 12, 11], [15, 0, 40, 30], [0, 0, 0, 0]])  # the last one empty
    canvas = Canvas(images, boxes, index, (40, 30))
    by_lookup = canvas.paint(canvas.views, *corners.unbind(1), lookup)
    by_function = canvas.paint(canvas.views, *corners.unbind(1), tint)
    assert torch.equal(by_lookup, by_function) and not torch.equal(by_lookup, images[index])
    # windows: each view a crop of its image, the corners still the whole image's
    origin = torch.tensor([[1, 2], [14, 0], [0, 0]])
    crops = torch.stack([images[i, :, y:y + 12, x:x + 20] for i, (x, y) in zip(index.tolist(), origin.tolist())])
    windows = Canvas(crops.contiguous(memory_format=torch.channels_last), boxes, torch.arange(3), (40, 30), origin=origin)
    painted = windows.paint(windows.views, *corners.unbind(1), lookup)
    for view, whole, (x, y) in zip(painted, by_function, origin.tolist()):
        assert torch.equal(view, whole[:, y:y + 12, x:x + 20])
    with pytest.raises(TypeError, match="uint8"):
        Lookup.of(lambda p: p.double())
    with pytest.raises(TypeError, match=r"uint8 \[3, 256\], not uint8 \[256\]"):
        Lookup(lookup.table[0])
    with pytest.raises(TypeError, match="not int64"):
        Lookup(lookup.table.long())
