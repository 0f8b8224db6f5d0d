"""ReCLIP's relation resolver (plugins/visual_prompts ``reclip_relations``): the rule parser on
SynthRef- and RefCOCO-style phrases, relation and superlative scoring on hand-made box layouts,
and a run through the real runner."""

import json

import numpy as np
import pytest

from refbench import Box, ImageItem, Ref, ScoreRequest
from refbench.config import load_config
from refbench.results import Store, read_record
from refbench.run import run_benchmark

from visual_prompts.relations import Parsed, ReclipRelations, parse, relation_matrix, resolve

from conftest import bench_yaml

PARSES = {
    "man on the left": Parsed("man", ("left",)),
    "leftmost zebra": Parsed("zebra", ("left",)),
    "far right person": Parsed("person", ("right",)),
    "the biggest red circle": Parsed("red circle", ("bigger",)),
    "the smallest yellow triangle shape": Parsed("yellow triangle", ("smaller",)),
    "the red circle that is the largest": Parsed("red circle", ("bigger",)),
    "left red circle": Parsed("red circle", ("left",)),
    "red circle in the left half": Parsed("red circle", ("left",)),
    "the blue square at the bottom": Parsed("blue square", ("below",)),
    "top left cup": Parsed("cup", ("above", "left")),
    "closest car": Parsed("car", ("bigger",)),
    "red circle next to the blue square": Parsed("red circle", (), (("near", Parsed("blue square")),)),
    "the white diamond by the red circle": Parsed("white diamond", (), (("near", Parsed("red circle")),)),
    "cup above the plate": Parsed("cup", (), (("above", Parsed("plate")),)),
    "dog under the table": Parsed("dog", (), (("below", Parsed("table")),)),
    "guy to the left of the woman": Parsed("guy", (), (("left", Parsed("woman")),)),
    "man in front of the car": Parsed("man", (), (("below", Parsed("car")),)),
    "biggest cup left of the rightmost plate": Parsed("cup", ("bigger",), (("left", Parsed("plate", ("right",))),)),
}


@pytest.mark.parametrize("text", sorted(PARSES))
def test_parse(text):
    assert parse(text) == PARSES[text]


# Three boxes in a row: A small on the left, B large in the middle, C medium on the right and low.
A, B, C = Box(0, 40, 10, 10), Box(40, 30, 30, 30), Box(90, 60, 20, 20)
ROW = [A, B, C]


def test_relation_matrices_follow_centres_and_areas():
    assert relation_matrix("left", ROW).tolist() == [[0, 1, 1], [0, 0, 1], [0, 0, 0]]
    assert relation_matrix("right", ROW).tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert relation_matrix("above", ROW).tolist() == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]  # centres 45, 45, 70
    assert relation_matrix("below", ROW)[2].tolist() == [1, 1, 0]
    assert relation_matrix("bigger", ROW).tolist() == [[0, 0, 0], [1, 0, 1], [1, 0, 0]]
    assert relation_matrix("smaller", ROW).tolist() == [[0, 1, 1], [0, 0, 0], [0, 1, 0]]
    inner, outer = Box(10, 10, 10, 10), Box(0, 0, 40, 40)
    half = Box(30, 0, 20, 10)  # half of it inside outer
    w = relation_matrix("within", [inner, outer, half])
    assert w[0, 1] == 1.0 and w[2, 1] == pytest.approx(0.5) and w[1, 0] == pytest.approx(100 / 1600)
    near = relation_matrix("near", ROW, diagonal=100.0)
    assert np.all(np.diag(near) == 0) and near[0, 1] > near[0, 2] and near[2, 1] > near[2, 0]


@pytest.mark.parametrize("text, expected", [
    ("the left thing", 0), ("the rightmost thing", 2), ("the thing at the top", 0), ("the bottom thing", 2),
    ("the biggest thing", 1), ("the smallest thing", 0), ("the closest thing", 1),
])
def test_superlatives_pick_the_expected_box(text, expected):
    flat = np.full(3, 1 / 3)
    assert int(np.argmax(resolve(parse(text), flat, ROW))) == expected


def test_relations_pick_the_expected_box():
    # Two look-alike subjects (0 and 3) equally likely; only the relation's object tells them apart.
    boxes = [Box(0, 0, 10, 10), Box(20, 0, 10, 10), Box(90, 90, 10, 10), Box(60, 60, 10, 10)]
    probs = np.array([0.4, 0.1, 0.1, 0.4])
    # object prior from the phrase: box 1 for "near the square", box 2 elsewhere
    near = resolve(parse("circle next to the square"), probs, boxes, object_prior="phrase", diagonal=141.0)
    assert int(np.argmax(near)) == 0
    left = resolve(parse("circle left of the square"), np.array([0.45, 0.1, 0.0, 0.45]), boxes)
    above = resolve(parse("circle above the square"), np.array([0.45, 0.1, 0.0, 0.45]), boxes)
    below = resolve(parse("circle below the square"), np.array([0.45, 0.1, 0.0, 0.45]), boxes)
    assert int(np.argmax(left)) == 0 and int(np.argmax(above)) == 0 and int(np.argmax(below)) == 3
    bigger = resolve(parse("circle bigger than the square"), np.array([0.45, 0.1, 0.0, 0.45]),
                     [Box(0, 0, 5, 5), Box(20, 0, 10, 10), Box(90, 90, 10, 10), Box(60, 60, 20, 20)])
    assert int(np.argmax(bigger)) == 3


def test_combinator_returns_finite_log_probabilities():
    item = ImageItem(1, path=None, width=100, height=100, refs=())
    refs = [Ref(i, i, 0, text, A, "testA") for i, text in enumerate(["the biggest thing", "thing", "the left thing"])]
    combinator = ReclipRelations(ReclipRelations.Options(of=["m"]))
    out = combinator.combine_for(ScoreRequest(item, refs, ROW), [np.zeros((3, 3))])
    assert out.shape == (3, 3) and np.all(np.isfinite(out))
    assert np.argmax(out, axis=1).tolist() == [1, 0, 0] and np.allclose(out[1], np.log(1 / 3))
    with pytest.raises(ValueError):
        ReclipRelations.Options(of=["a", "b"])


def test_resolver_runs_end_to_end_and_changes_choices(synth_root, tmp_path, write_config):
    methods = ("  - {id: shaded, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn, init_seed: 1}}\n"
               "  - {id: resolved, combine: {plugin: reclip_relations, of: [shaded]}}")
    config = write_config(bench_yaml(synth_root, methods, splits="[testA]", extra="runner: {batch_size: 64, workers: 0}"))
    run = run_benchmark(load_config(config), Store(tmp_path / "r"))
    record = read_record(run.dir)
    rows = [json.loads(line) for line in run.journal.path.read_text().splitlines()]
    assert {"shaded", "resolved"} <= set(record["metrics"])
    by = {m: {r["sent_id"]: r for r in rows if r["method"] == m} for m in ("shaded", "resolved")}
    assert by["shaded"].keys() == by["resolved"].keys() and by["shaded"]
    assert any(by["shaded"][s]["chosen"] != by["resolved"][s]["chosen"] for s in by["shaded"])


def test_separately_scored_sub_phrases_resolve_near():
    # Two circles (0, 3) alike; the square (1) is next to circle 0, the triangle (2) next to circle 3.
    boxes = [Box(0, 0, 10, 10), Box(15, 0, 10, 10), Box(75, 90, 10, 10), Box(90, 90, 10, 10)]
    texts = {"circle": [0.5, 0.0, 0.0, 0.5], "square": [0.0, 1.0, 0.0, 0.0], "triangle": [0.0, 0.0, 1.0, 0.0]}
    flat = np.full(4, 0.25)
    for text, expected in (("the circle next to the square", 0), ("circle by the triangle", 3)):
        p = resolve(parse(text), flat, boxes, diagonal=141.0, score_text=lambda t: np.array(texts[t]))
        assert int(np.argmax(p)) == expected


def test_the_runner_scores_other_texts_for_a_combinator_as_it_scored_the_phrases(synth_root, tmp_path, write_config):
    """``request.score_texts`` gives a member's logits for any texts against the image's candidates; for
    the image's own phrases they equal the logits the runner computed (same view features)."""
    import numpy as np

    from refbench.builtins.combinators import MeanLogits
    from refbench.config import load_config
    from refbench.plugins import registry
    from refbench.results import Store
    from refbench.run import run_benchmark

    from conftest import bench_yaml

    seen = []

    class Checker(MeanLogits):
        def combine_for(self, request, logits):
            again = request.score_texts([r.text for r in request.refs])
            for mine, theirs in zip(again, logits):
                assert np.allclose(mine, theirs, atol=1e-4)
            seen.append(len(request.refs))
            return self.combine(logits)

    methods = ("  - {id: clip, prompter: {plugin: green_shade}, scorer: {plugin: clip, arch: synth-rn}}\n"
               "  - {id: base, scorer: {plugin: random}}\n"
               "  - {id: both, combine: {plugin: mean_logits, of: [clip, base]}}")
    reg = registry()
    reg.info("combinator", "mean_logits")._cls = Checker
    try:
        config = load_config(write_config(bench_yaml(synth_root, methods, splits="[testA]") + "runner: {workers: 0}\n"))
        run_benchmark(config, Store(tmp_path / "r"))
    finally:
        reg.info("combinator", "mean_logits")._cls = None
    assert seen and sum(seen) > 20
