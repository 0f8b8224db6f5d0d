"""`refbench train` under torchrun (gloo, CPU): two ranks train as one process with the same global
batch (loss, validation, checkpoints), resume from last.pt, share BatchNorm statistics, and stop
alike on mismatched configs; a mask prompter refuses data without masks."""

import copy
import json
import multiprocessing
import os
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from refbench import RefbenchError

from clip_shaded import ClipScorer, GreenShade, load_checkpoint
from clip_shaded.train import Record, Step, _validation_masks, load_train_config, shard_step, step_loss, train
from refbench.plugins import registry
from clip_shaded.train_dist import Ranks, merged_metrics

# float sums in another order (two ranks, then an all-reduce) move the loss by ~1e-7 here; a wrong
# weighting of the ranks' shares, a lost shard or a bad resume moves it by 1e-2 or more
LOSS_TOLERANCE = 1e-5


def train_yaml(root: Path, out: Path, arch: str = "synth-vit", lr: float = 1e-3) -> str:
    return f"""
name: dist
model: {{arch: {arch}, init_seed: 0, device: cpu}}
prompter: {{plugin: green_shade, alpha: 0.5, outline: 2}}
data: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [train], images: {root}/images}}
validation:
  dataset: {{plugin: refer, root: {root}, dataset: synthref, split_by: unc, splits: [val], images: {root}/images}}
  proposer: {{plugin: detections, path: {root}/dets/synthref_unc_dets.json}}
recipe: {{k: 4, epochs: 2, batch_size: 32, lr: {lr}, warmup: 0.1, seed: 0, workers: 0, threads: 1, freeze: [token_embedding]}}
output: {out}
"""


def torchrun(cfg: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "refbench", "train", str(cfg), "-q", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture
def one_thread():
    """The recipe's threads: 1 also holds for the tests after these (OpenMP spins on busy cores)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_resume_and_train_as_one_process(synth_root, tmp_path, one_thread):
    """The ViT CLIP (no BatchNorm). One process trains epoch 1; from its last.pt, one process and then
    two ranks (a new torchrun: rank 0 reads last.pt, every rank loads it) train epoch 2, 13 steps of
    32+ phrases: the losses agree within LOSS_TOLERANCE, and so do the weights and the validation."""
    cfg = _write(tmp_path / "t.yaml", train_yaml(synth_root, tmp_path / "out"))
    config = load_train_config(cfg)
    train(config, quiet=True, until_epoch=1)
    shutil.copytree(tmp_path / "out", tmp_path / "after1")
    one = train(config, quiet=True)["epochs"][1]
    one_weights = torch.load(tmp_path / "out" / "last.pt", weights_only=True)["model"]
    shutil.rmtree(tmp_path / "out")
    (tmp_path / "after1").rename(tmp_path / "out")
    err = torchrun(cfg)
    assert err.count("resuming dist after epoch 1") == 1  # rank 0 speaks
    history = metrics(tmp_path / "out")
    assert [e["epoch"] for e in history] == [1, 2] and "world_size" not in history[0]
    two = history[1]
    assert abs(two["loss"] - one["loss"]) < LOSS_TOLERANCE, (one["loss"], two["loss"])
    assert (two["phrases"], two["views"]) == (one["phrases"], one["views"])  # every phrase once, every view once
    assert two["val_upper_bound"] == one["val_upper_bound"]  # the merged shards are the whole validation set
    assert abs(two["val_accuracy"] - one["val_accuracy"]) < 1.0  # at most a near-tie of one phrase flips
    assert two["world_size"] == 2 and two["global_batch"] == round(one["phrases"] / 13, 1)
    record = json.loads((tmp_path / "out" / "config.json").read_text())
    assert record["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch": 32,
                                     "sharding": "each global step's images dealt out to the ranks"}
    assert record["digest"] == config.digest()  # the world size does not change what the weights are
    # checkpoints: last.pt holds one process's weights; the scorer loads best.safetensors
    two_weights = torch.load(tmp_path / "out" / "last.pt", weights_only=True)["model"]
    assert two_weights.keys() == one_weights.keys()
    assert max((two_weights[k].float() - one_weights[k].float()).abs().max().item() for k in two_weights) < 1e-4
    summary = json.loads((tmp_path / "out" / "train.json").read_text())
    assert summary["world_size"] == 2
    assert load_checkpoint(tmp_path / "out" / "best.safetensors")[1]["epoch"] == summary["best_epoch"]
    ClipScorer(ClipScorer.Options(checkpoint=tmp_path / "out" / "best.safetensors", device="cpu"))
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _synced_rank(rank: int, port: int, model: torch.nn.Module, batch: dict, weight: float, queue) -> None:
    try:
        torch.set_num_threads(1)  # OpenMP's pool does not survive the fork
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        ranks = Ranks.detect()
        ranks.join(cuda=False)
        ddp = ranks.wrap(model, step_loss, torch.device("cpu"))
        model.train()
        loss = ddp(batch, weight)
        loss.backward()
        total = ranks.step_loss(loss)
        norm = model.visual.bn1
        queue.put((rank, total, {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None},
                   norm.running_mean.numpy().copy(), norm.running_var.numpy().copy()))  # plain pickles, not shared memory
        ranks.leave()
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put((rank, repr(exc), None, None, None))


def test_batchnorm_statistics_and_gradients_span_the_ranks():
    """The ResNet CLIP (BatchNorm): two ranks with 2 and 4 phrases of one step (their own views)
    give the full step's loss, gradient and running statistics."""
    torch.manual_seed(0)
    scorer = ClipScorer(ClipScorer.Options(arch="synth-rn", init_seed=5, device="cpu"))
    model = scorer.model
    views = torch.randn(12, 3, 64, 64)
    tokens = scorer.tokenize(["red cube", "left ball", "the big one", "blue thing", "top right", "small cone"])
    rows = torch.tensor([[0, 1, 2], [2, 0, 1], [6, 7, 8], [9, 10, 11], [11, 6, 7], [8, 9, 10]])
    targets = torch.tensor([0, 2, 1, 0, 2, 1])
    full = copy.deepcopy(model).train()
    whole = {"views": views, "tokens": tokens, "rows": rows, "targets": targets}
    expected = step_loss(full, whole)
    expected.backward()
    shards = [{"views": views[:6], "tokens": tokens[:2], "rows": rows[:2], "targets": targets[:2]},
              {"views": views[6:], "tokens": tokens[2:], "rows": rows[2:] - 6, "targets": targets[2:]}]
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), _free_port()
    procs = [context.Process(target=_synced_rank, args=(r, port, copy.deepcopy(model), shards[r], n * 2 / 6, queue))
             for r, n in ((0, 2), (1, 4))]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=120) for _ in procs), key=lambda r: r[0])
    for p in procs:
        p.join(timeout=30)
    for rank, total, grads, mean, var in results:
        assert grads is not None, total
        assert abs(total - expected.item()) < LOSS_TOLERANCE
        expected_grads = {n: p.grad for n, p in full.named_parameters() if p.grad is not None}
        assert grads.keys() == expected_grads.keys()
        for name, g in expected_grads.items():
            scale = g.abs().max().item()
            assert (torch.from_numpy(grads[name]) - g).abs().max().item() < 1e-4 * scale + 1e-7, name
        assert torch.allclose(torch.from_numpy(mean), full.visual.bn1.running_mean, atol=1e-6)
        assert torch.allclose(torch.from_numpy(var), full.visual.bn1.running_var, rtol=1e-4, atol=1e-6)


def _train_rank(rank: int, port: int, config, queue) -> None:
    try:
        torch.set_num_threads(1)
        os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        train(config, quiet=True)
        queue.put((rank, None))
    except RefbenchError as exc:
        queue.put((rank, (exc.problem, exc.fix)))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put((rank, repr(exc)))


def test_ranks_with_different_configs_stop_alike_before_any_file(synth_root, tmp_path):
    """Two ranks (forked, with torchrun's environment) on configs that differ in the learning rate."""
    configs = [load_train_config(_write(tmp_path / f"{r}.yaml", train_yaml(synth_root, tmp_path / "out", lr=lr)))
               for r, lr in ((0, 1e-3), (1, 2e-3))]
    context = multiprocessing.get_context("fork")
    queue, port = context.Queue(), _free_port()
    procs = [context.Process(target=_train_rank, args=(r, port, configs[r], queue)) for r in range(2)]
    for p in procs:
        p.start()
    answers = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    digests = [c.digest()[:12] for c in configs]
    for rank in range(2):
        problem, fix = answers[rank]
        assert problem == f"torchrun ranks disagree on the training config: rank 0 has {digests[0]}, rank 1 {digests[1]}"
        assert fix == "launch every rank with the same config file and options"
    assert not (tmp_path / "out").exists()


def test_a_mask_prompter_needs_a_segmentation_on_every_training_annotation(synth_root, tmp_path, monkeypatch, one_thread):
    """Training views of a mask prompter are drawn from the annotations' segmentations: one image
    without them stops the training before it starts, naming the annotation."""
    monkeypatch.setattr(GreenShade, "needs_masks", True, raising=False)
    (tmp_path / "data" / "synthref").mkdir(parents=True)
    shutil.copy(synth_root / "synthref" / "refs(unc).p", tmp_path / "data" / "synthref")
    with (synth_root / "synthref" / "refs(unc).p").open("rb") as f:
        image = max(r["image_id"] for r in pickle.load(f) if r["split"] == "train")
    coco = json.loads((synth_root / "synthref" / "instances.json").read_text())
    bare = [a for a in coco["annotations"] if a["image_id"] == image]
    for a in bare:
        del a["segmentation"]
    (tmp_path / "data" / "synthref" / "instances.json").write_text(json.dumps(coco))
    text = train_yaml(synth_root, tmp_path / "out").replace(f"root: {synth_root},", f"root: {tmp_path / 'data'},")
    config = load_train_config(_write(tmp_path / "t.yaml", text))
    with pytest.raises(RefbenchError) as info:
        train(config, quiet=True)
    assert info.value.problem == (f"prompter green_shade draws candidates' masks: annotation {bare[0]['id']} (image {image}) "
                                  "has no segmentation")
    assert "annotations carry segmentations" in info.value.fix
    assert not (tmp_path / "out").exists()


def test_a_mask_prompter_needs_masks_in_validation_before_training_starts(synth_root, tmp_path, monkeypatch, one_thread):
    monkeypatch.setattr(GreenShade, "needs_masks", True, raising=False)
    config = load_train_config(_write(tmp_path / "t.yaml", train_yaml(synth_root, tmp_path / "out")))
    with pytest.raises(RefbenchError, match=r"validation image \d+ box 0 has none") as info:
        train(config, quiet=True)
    assert "masks: FILE" in info.value.fix and not (tmp_path / "out").exists()
    masked = registry().build("proposer", {"plugin": "detections", "path": str(synth_root / "dets/synthref_unc_dets.json"),
                                           "masks": str(synth_root / "dets/synthref_unc_masks.json")}, "proposer")
    val = list(registry().build("dataset", {**config.validation.dataset.as_dict()}, "dataset"))
    _validation_masks(val, masked, "green_shade")  # with the detections' masks: no problem


def test_training_refuses_views_drawn_on_the_device(synth_root, tmp_path, one_thread):
    text = train_yaml(synth_root, tmp_path / "out").replace("model: {", "model: {views: device, ", 1)
    config = load_train_config(_write(tmp_path / "t.yaml", text))
    with pytest.raises(RefbenchError, match="training draws them in its workers") as info:
        train(config, quiet=True)
    assert "views: device is for evaluation" in info.value.fix and not (tmp_path / "out").exists()


def _step(images: list[int]) -> Step:
    records = tuple(Record(item, n, 0) for n, item in enumerate(images))
    return Step(records, tuple((0, 1, 2 + n % 3) for n in range(len(images))), tuple(0 for _ in images))


def test_shards_split_steps_by_whole_images():
    step = _step([3, 3, 3, 5, 7, 7, 9, 1, 1])
    shares = [shard_step(step, r, 2) for r in range(2)]
    assert sorted(rec.ref for s in shares for rec in s.step.records) == list(range(9))  # every phrase once
    assert not {rec.item for rec in shares[0].step.records} & {rec.item for rec in shares[1].step.records}
    assert all(s.step.records for s in shares) and not any(s.whole for s in shares)
    assert [s.weight for s in shares] == [len(s.step.records) * 2 / 9 for s in shares]  # DDP's mean of the weighted
    assert sum(s.weight for s in shares) == pytest.approx(2)  # per-rank means is the step's mean
    # images dealt largest first to the rank with fewer phrases, ties to the lower rank: 3 (3 phrases) and
    # then 5 and 9 to rank 0, 7 and 1 to rank 1
    assert [[rec.ref for rec in s.step.records] for s in shares] == [[0, 1, 2, 3, 6], [4, 5, 7, 8]]
    assert [s.weight for s in shares] == pytest.approx([10 / 9, 8 / 9])
    small = _step([4, 4, 4])  # one image, two ranks: both do it all
    assert [shard_step(small, r, 2) for r in range(2)] == [(small, 1.0, True)] * 2


def test_merged_validation_counts_equal_one_process():
    def part(hits, n, oracle, types):
        return {"n": n, "accuracy": 100.0 * hits / n, "upper_bound": 100.0 * oracle / n,
                "splits": {"val": {"n": n, "accuracy": 100.0 * hits / n, "upper_bound": 100.0 * oracle / n}},
                "phrase_types": {t: {"n": tn, "accuracy": 100.0 * th / tn, "upper_bound": None} for t, (th, tn) in types.items()}}

    merged = merged_metrics([part(7, 13, 11, {"a": (3, 7), "b": (4, 6)}), None, part(5, 29, 20, {"b": (5, 29)})])
    assert merged["n"] == 42 and merged["accuracy"] == 100.0 * 12 / 42 and merged["upper_bound"] == 100.0 * 31 / 42
    assert merged["splits"]["val"]["accuracy"] == 100.0 * 12 / 42
    assert list(merged["phrase_types"]) == ["a", "b"] and merged["phrase_types"]["b"]["accuracy"] == 100.0 * 9 / 35
    assert merged["phrase_types"]["b"]["upper_bound"] is None
