"""``views: device``: prompters' tensor path (render_tensor) and the clip scorer drawing and resizing
views with torch where the model runs, against the exact PIL path."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from refbench import Box, RefbenchError
from refbench.config import load_config
from refbench.results import Store, read_record
from refbench.run import build, run_benchmark
from refbench.synth import SynthSpec, generate

from clip_shaded import ClipScorer, GreenShade
from clip_shaded.device import DeviceViews, draw, resize_crop
from clip_shaded.views import ExactViews, first_pass_vertical, pillow_order
from visual_prompts.prompters import Blur, CptShade, GrayscaleOutside, RedCircle

from conftest import PILLOW_13, REPO, bench_yaml

PROMPTERS = {
    "green_shade": GreenShade(),
    "green_shade_thin": GreenShade(GreenShade.Options(alpha=0.3, outline=1, colour=(10, 20, 250))),
    "cpt_shade": CptShade(),
    "red_circle": RedCircle(),
    "red_circle_3px": RedCircle(RedCircle.Options(thickness=3.5)),
    "grayscale_outside": GrayscaleOutside(),
    "blur": Blur(),
    "blur_small": Blur(Blur.Options(radius=3.0)),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on two busy cores, OpenMP's second thread makes small tensor ops 10-100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _boxes(rng, w, h, n):
    """Boxes of every kind: fractional, whole, partly and wholly off the image, thin."""
    boxes = [Box(*(float(v) for v in rng.uniform([-6, -6, 0.3, 0.3], [w + 3, h + 3, w / 1.5, h / 1.5]))) for _ in range(n)]
    return boxes + [Box(2, 3, 10, 7), Box(-3, -2, w + 5, h + 5), Box(w + 4, 1, 5, 5), Box(1.5, 0.5, 0.2, h)]


def _tensor(boxes):
    return torch.tensor([b.xywh for b in boxes], dtype=torch.float64)


@pytest.mark.parametrize("name", PROMPTERS)
def test_tensor_views_are_the_pil_views_bit_for_bit(name):
    """At full size, before any resize, the tensor path draws render's pixels exactly, batched over
    images (``index``) and boxes; the images are not modified."""
    prompter = PROMPTERS[name]
    assert prompter.renders_tensor
    rng = np.random.default_rng(7)
    for h, w in [(37, 53), (64, 20), (1, 1), (128, 128)]:
        images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        boxes = [_boxes(rng, w, h, 4), _boxes(rng, w, h, 3)]
        want = np.concatenate([np.stack([np.asarray(v) for v in prompter.render(Image.fromarray(im), b)])
                               for im, b in zip(images, boxes)])
        batch = torch.from_numpy(images).permute(0, 3, 1, 2)  # channels last in memory, as the scorer hands them over
        before = batch.clone()
        index = torch.tensor([0] * len(boxes[0]) + [1] * len(boxes[1]))
        got = prompter.render_tensor(batch, _tensor(boxes[0] + boxes[1]), index)
        assert got.dtype == torch.uint8 and got.shape == (len(index), 3, h, w)
        assert np.array_equal(got.permute(0, 2, 3, 1).numpy(), want), (name, h, w)
        assert torch.equal(batch, before)
        one = prompter.render_tensor(batch[1], _tensor(boxes[1]))  # one image, no index
        assert np.array_equal(one.permute(0, 2, 3, 1).numpy(), want[len(boxes[0]):])


def _exact(prompter, image, boxes, size):
    """The exact path's definition: render on the full image, then ``CenterCrop(Resize(size, BICUBIC))``
    (the clip scorer's ``views: exact``; ExactViews is bit-identical to it, see test_exact_views.py)."""
    resize = _resize(size)
    return torch.stack([torch.from_numpy(np.array(resize(v))).permute(2, 0, 1) for v in prompter.render(image, boxes)])


def _resize(size):
    return transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.CenterCrop(size)])


@pytest.fixture(scope="module")
def pictures(synth_root):
    """SynthRef images (128 x 128), and two of them stretched to a landscape and a portrait size so the
    resize also crops."""
    paths = sorted((synth_root / "images").glob("*.jpg"))[:4]
    images = [Image.open(p).convert("RGB") for p in paths]
    images[1] = images[1].resize((200, 150), Image.Resampling.BILINEAR)
    images[2] = images[2].resize((90, 171), Image.Resampling.BILINEAR)
    rng = np.random.default_rng(1)
    return [(im, _boxes(rng, *im.size, 5)) for im in images]


# Measured (|device - exact| in grey levels, 0..255, over every pixel of every view of these pictures):
#   size 64:  max 1 for every prompter; mean 0.0020-0.0023, blur 0.0070, blur_small (radius 3) 0.0247
#   size 224: max 2 for every prompter; mean 0.0047-0.0050, blur 0.0015, blur_small 0.0117
# torch's float coefficients against Pillow's 22-bit fixed-point ones: now and then a pixel one grey
# level off after rounding (blur_small's smooth ramps hit that more often). Bounds slightly above.
MAX_GREY = 3
MEAN_GREY = {"blur_small": 0.035}  # others: 0.01


@pytest.mark.parametrize("size", [64, 224])
@pytest.mark.parametrize("name", PROMPTERS)
def test_device_views_are_within_grey_levels_of_exact_views(name, size, pictures):
    prompter = PROMPTERS[name]
    want = torch.cat([_exact(prompter, im, b, size) for im, b in pictures]).float()
    batch = DeviceViews.concat([DeviceViews.of(im, b, prompter) for im, b in pictures])
    got = draw(batch, size)
    assert got.shape == want.shape == (len(batch), 3, size, size)
    diff = (got - want).abs()
    print(f"{name} at {size} px: max {diff.max():.0f}, mean {diff.mean():.4f} grey levels")
    assert diff.max() <= MAX_GREY and diff.mean() <= MEAN_GREY.get(name, 0.01)
    assert (want[5] - want[6]).abs().mean() > 1  # far above it: two views of one picture (a small box, the whole image)


# Measured (|resize_crop - Pillow| over every pixel, a SynthRef picture stretched to each size): max 0-1,
# mean 0.0000-0.0015 grey levels. Pillow 13 resizes pictures whose height loses more than twice as many
# pixels as their width vertically first (`vertical`); resized horizontally first, as the others, those
# four measured max 1-2, mean 0.088-0.112 at 64 px (one pixel in ten a grey level off), 0.016 at 224.
SIZES = [(150, 400, 64, True), (100, 330, 64, True), (120, 250, 64, True), (300, 700, 224, True),
         (400, 150, 64, False), (90, 171, 64, False), (40, 300, 64, False), (150, 400, 224, False),
         (400, 150, 224, False), (90, 171, 224, False), (40, 300, 224, False)]


@pytest.mark.parametrize("w, h, size, vertical", SIZES)
def test_device_resize_takes_pillows_passes_in_pillows_order(synth_root, w, h, size, vertical):
    if PILLOW_13:
        assert first_pass_vertical(w, h, size) is vertical
    path = sorted((synth_root / "images").glob("*.jpg"))[0]
    image = Image.open(path).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
    want = torch.from_numpy(np.array(_resize(size)(image))).permute(2, 0, 1).float()
    got = resize_crop(torch.from_numpy(np.array(image)).permute(2, 0, 1)[None], size)[0]
    diff = (got - want).abs()
    print(f"{w}x{h} at {size} px: max {diff.max():.0f}, mean {diff.mean():.4f} grey levels")
    assert diff.max() <= 1 and diff.mean() <= 0.005


def test_the_order_of_passes_is_the_installed_pillows(synth_root, monkeypatch):
    """Pillow 13 resizes tall shrinking images vertically first, Pillow 12.1 and earlier horizontally.
    Such a Pillow is made here from this one's single passes (a resize that keeps one axis's size
    runs only the other's pass): the exact path and the device path then take its order. A Pillow
    whose two passes neither order reproduces makes the exact path decline the size."""
    path = sorted((synth_root / "images").glob("*.jpg"))[0]
    image = Image.open(path).convert("RGB").resize((150, 400), Image.Resampling.BILINEAR)
    views = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None]
    prompter, boxes = GreenShade(), [Box(20, 30, 60, 200), Box(0, 0, 150, 400), Box(100, 350, 50, 50)]
    if PILLOW_13:
        assert pillow_order(150, 400, 64) is True and first_pass_vertical(150, 400, 64)
    assert pillow_order(400, 150, 64) is False and not first_pass_vertical(400, 150, 64)
    assert pillow_order(40, 300, 64) is False  # grows: horizontally first
    real = Image.Image.resize

    def horizontal_first(self, size, resample=None, box=None, reducing_gap=None):
        return real(real(self, (size[0], self.height), resample), size, resample)

    def foreign(self, size, resample=None, box=None, reducing_gap=None):  # its single passes are Pillow's
        out = real(self, size, resample)
        return out.point(lambda v: min(v + 1, 255)) if size[0] != self.width and size[1] != self.height else out

    pillow_order.cache_clear()
    monkeypatch.setattr(Image.Image, "resize", horizontal_first)
    try:
        assert pillow_order(150, 400, 64) is False and not first_pass_vertical(150, 400, 64)
        want = _exact(prompter, image, boxes, 64)
        exact = ExactViews(64)
        assert exact.geometry(150, 400).flip is False
        got = np.empty((len(boxes), 3, 64, 64), np.uint8)
        assert exact.write(image, boxes, prompter, got) and np.array_equal(got, want.numpy())
        plain = torch.from_numpy(np.array(_resize(64)(image))).permute(2, 0, 1).float()
        assert (resize_crop(views, 64)[0] - plain).abs().mean() <= 0.005
        monkeypatch.setattr(Image.Image, "resize", foreign)
        pillow_order.cache_clear()
        assert pillow_order(150, 400, 64) is None and first_pass_vertical(150, 400, 64) is None
        assert ExactViews(64).geometry(150, 400) is None
    finally:
        monkeypatch.undo()
        pillow_order.cache_clear()
    plain = torch.from_numpy(np.array(_resize(64)(image))).permute(2, 0, 1).float()
    assert (resize_crop(views, 64)[0] - plain).abs().mean() <= 0.005  # this Pillow's order again


def test_prepared_batches_slice_by_view_and_store_each_image_once(pictures):
    prompter = GreenShade()
    parts = [DeviceViews.of(im, b, prompter) for im, b in pictures]
    batch = DeviceViews.concat(parts)
    n = sum(len(b) for _, b in pictures)
    assert len(batch) == n and batch.pixels.numel() == sum(im.width * im.height * 3 for im, _ in pictures)
    whole = draw(batch, 64)
    for a, b in [(0, n), (3, 17), (9, 10), (n - 2, n), (5, 5)]:
        part = batch[a:b]
        assert len(part) == b - a
        if b > a:  # a slice keeps a view of the images it needs, not a copy
            assert part.pixels.untyped_storage().data_ptr() == batch.pixels.untyped_storage().data_ptr()
            assert len(part.sizes) == batch.image[b - 1] - batch.image[a] + 1
        assert torch.equal(draw(part, 64), whole[a:b])
    cuts = DeviceViews.concat([batch[:4], batch[4:11], batch[11:]])  # as the runner cuts encoder batches
    assert torch.equal(draw(cuts, 64), whole)
    back = pickle.loads(pickle.dumps(batch))
    assert torch.equal(draw(back, 64), whole)
    seen = []  # a call per view (budget 1) hands the prompter only that view's image
    real = prompter.render_tensor
    prompter.render_tensor = lambda images, boxes, index: seen.append((len(images), len(boxes))) or real(images, boxes, index)
    assert torch.equal(draw(batch, 64, budget=1), whole)
    assert len(seen) == n and all(calls == (1, 1) for calls in seen)


def test_views_device_needs_a_prompter_that_draws_tensors(synth_root, write_config):
    scorer = ClipScorer(ClipScorer.Options(arch="synth-rn", views="device"))
    assert scorer.check_prompter(GreenShade()) == []
    seed = GreenShade(GreenShade.Options(style="seed"))
    assert not seed.renders_tensor
    (problem,) = scorer.check_prompter(seed)
    assert "views: device, but prompter GreenShade draws only with PIL and numpy" in str(problem)
    assert "\n" not in str(problem) and "views: exact" in str(problem)
    with pytest.raises(RefbenchError, match="views: exact"):
        seed.render_tensor(torch.zeros(3, 8, 8, dtype=torch.uint8), _tensor([Box(1, 1, 4, 4)]))
    methods = "  - {id: a, prompter: {plugin: crop}, scorer: {plugin: clip, arch: synth-rn, views: device}}"
    with pytest.raises(RefbenchError) as caught:
        build(load_config(write_config(bench_yaml(synth_root, methods))))
    assert str(caught.value) == ("methods[0] (a): views: device, but prompter CropPrompter draws only with PIL and numpy "
                                 "(no render_tensor); use the scorer's views: exact")


def test_device_views_cross_worker_processes(synth_root, tmp_path, write_config):
    """Workers only decode; batches pickle to the main process, are cut across images (batch 7) and
    joined: the same choices as without workers."""
    methods = "  - {id: d, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, init_seed: 4, views: device}}"
    chosen = {}
    for name, runner in (("b7", "batch_size: 7, workers: 0"), ("w2", "batch_size: 64, workers: 2")):
        cfg = write_config(bench_yaml(synth_root, methods, splits="[testA]", extra=f"runner: {{{runner}}}"), f"{name}.yaml")
        run = run_benchmark(load_config(cfg), Store(tmp_path / name))
        chosen[name] = {r["sent_id"]: (r["chosen"], r["score"]) for r in map(json.loads, run.journal.path.read_text().splitlines())}
    assert chosen["b7"].keys() == chosen["w2"].keys() and chosen["b7"]
    for sent, (c, s) in chosen["b7"].items():
        assert chosen["w2"][sent][0] == c and abs(chosen["w2"][sent][1] - s) < 1e-3


def test_device_views_agree_with_exact_views_on_synthref_testA(tmp_path, write_config):
    """SynthRef testA (the default spec's 150 images; a split's images do not depend on the others'),
    the shipped synth-rn checkpoint, both view paths in one run. Measured: 1,011 phrases, 100% the same
    choice, accuracy 88.13 both."""
    root = tmp_path / "synthref"
    generate(root, SynthSpec(seed=0, images={"testA": 150}))
    ckpt = REPO / "checkpoints" / "synthref" / "synth-rn.safetensors"
    methods = (f"  - {{id: exact, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {ckpt}}}}}\n"
               f"  - {{id: device, prompter: {{plugin: green_shade}}, scorer: {{plugin: clip, checkpoint: {ckpt}, views: device}}}}")
    extra = 'protocol: {iou: 0.5, comparison: ">", iou_convention: refer}\nrunner: {batch_size: 256, workers: 0}'
    run = run_benchmark(load_config(write_config(bench_yaml(root, methods, splits="[testA]", extra=extra))), Store(tmp_path / "r"))
    rows = {(r["method"], r["sent_id"]): r["chosen"] for r in map(json.loads, run.journal.path.read_text().splitlines())}
    sents = [s for m, s in rows if m == "exact"]
    agree = np.mean([rows[("exact", s)] == rows[("device", s)] for s in sents])
    metrics = read_record(run.dir)["metrics"]
    acc = {m: metrics[m]["accuracy"] for m in ("exact", "device")}
    print(f"SynthRef testA, synth-rn: {len(sents)} phrases, device vs exact views {100 * agree:.2f}% the same choice, "
          f"accuracy {acc['device']:.2f} vs {acc['exact']:.2f}")
    assert len(sents) >= 300
    assert agree >= 0.99 and abs(acc["device"] - acc["exact"]) <= 0.3
