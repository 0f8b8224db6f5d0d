"""SynthRef's generator, run for real: equal specs give equal bytes, every stated phrase picks
out its referent alone, and the written counts are the documented ones."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from refbench.synth import COLOURS, PHRASE_TYPES, SHAPES, SIZES, SPLITS, VARIANTS, SynthSpec, generate, phrase_options
from refbench.synth.phrases import NEAR, sentences

from conftest import TINY

# Crowded scenes, several sentences a ref, many misses and hard jitters: off the defaults everywhere.
SMALL = SynthSpec(seed=5, images={"train": 6, "val": 2, "testA": 3, "testB": 3}, canvas=96, objects=(3, 8),
                  sentences_per_ref=(2, 4), false_positives=(0, 4), miss_rate=0.2, hard_jitter_rate=0.5,
                  jpeg_quality=80)
SIDES = ("left", "right", "top", "bottom")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth_small")
    generate(root, SMALL)
    return root


def file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def load(root: Path, variant: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    instances = json.loads((root / variant / "instances.json").read_text())
    with open(root / variant / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)  # written by the generator under test
    return instances, refs


def anns_by_image(instances: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in instances["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


# ---------------------------------------------------------------- determinism


def test_equal_specs_give_equal_bytes_and_other_seeds_do_not(small_root, tmp_path):
    again = generate(tmp_path / "again", SMALL)
    first = file_hashes(small_root)
    assert file_hashes(tmp_path / "again") == first
    # every image, both variants' instances + refs, both detection and both masks files, SYNTHREF.json; no temporaries
    assert len(first) == sum(SMALL.images.values()) + 9
    assert not [name for name in first if name.endswith(".tmp")]

    generate(tmp_path / "other", dataclasses.replace(SMALL, seed=6))
    other = file_hashes(tmp_path / "other")
    assert other.keys() == first.keys() and all(other[k] != first[k] for k in first)

    # A split's images do not depend on the other splits' sizes (only their ids and names move).
    generate(tmp_path / "testA_only", dataclasses.replace(SMALL, images={"testA": 3}))
    alone = file_hashes(tmp_path / "testA_only")
    offset = SMALL.images["train"] + SMALL.images["val"]
    for k in range(1, 4):
        assert alone[f"images/synthref_{k:012d}.jpg"] == first[f"images/synthref_{offset + k:012d}.jpg"]

    # A finished root is reused as it is; one of another spec is refused.
    assert generate(tmp_path / "again", SMALL) == again
    assert file_hashes(tmp_path / "again") == first
    with pytest.raises(FileExistsError):
        generate(tmp_path / "again", dataclasses.replace(SMALL, seed=6))


# ---------------------------------------------------------------- phrases


@cache
def meanings() -> dict[str, tuple[str, tuple[str, int], Any]]:
    """Every sentence the templates can say about any kind of object, mapped to what it states:
    ``(phrase type, (colour, category id), parameter)``; the parameter is a side, "big" or
    "small", or the anchor's (colour, category id)."""
    kinds = [{"colour": c, "category_id": k + 1} for c in COLOURS for k in range(len(SHAPES))]
    table: dict[str, tuple[str, tuple[str, int], Any]] = {}

    def add(texts: list[str], meaning: tuple[str, tuple[str, int], Any]) -> None:
        for text in texts:
            assert table.setdefault(text, meaning) == meaning, f"{text!r} states two things"

    for i, a in enumerate(kinds):
        kind = (a["colour"], a["category_id"])
        add(sentences(kinds, i, "attribute", [None]), ("attribute", kind, None))
        for side in SIDES:
            add(sentences(kinds, i, "location", [side]), ("location", kind, side))
        for extreme in ("big", "small"):
            add(sentences(kinds, i, "superlative", [extreme]), ("superlative", kind, extreme))
        for j, b in enumerate(kinds):
            if j != i:
                add(sentences(kinds, i, "relation", [j]), ("relation", kind, (b["colour"], b["category_id"])))
    return table


def referents(anns: list[dict[str, Any]], meaning: tuple[str, tuple[str, int], Any], canvas: int) -> list[int]:
    """Indices of the objects in ``anns`` that the stated facts fit, read plainly: a side is a
    half of the image, a superlative the extreme size class among the kind, "next to" within
    the relation radius of the one object of the anchor's kind (none fit if that is not unique)."""
    phrase_type, kind, param = meaning

    def centre(a: dict[str, Any]) -> tuple[float, float]:
        x, y, w, h = a["bbox"]
        return x + w / 2, y + h / 2

    same = [j for j, a in enumerate(anns) if (a["colour"], a["category_id"]) == kind]
    if phrase_type == "attribute":
        return same
    if phrase_type == "location":
        axis, low = SIDES.index(param) // 2, param in ("left", "top")
        return [j for j in same if (centre(anns[j])[axis] < canvas / 2 if low else centre(anns[j])[axis] > canvas / 2)]
    if phrase_type == "superlative":
        ranks = {j: list(SIZES).index(anns[j]["size"]) for j in same}
        extreme = max(ranks.values()) if param == "big" else min(ranks.values())
        return [j for j in same if ranks[j] == extreme]
    anchors = [a for a in anns if (a["colour"], a["category_id"]) == param]
    if len(anchors) != 1:
        return []
    return [j for j in same if math.dist(centre(anns[j]), centre(anchors[0])) <= NEAR * canvas]


def check_sentence(anns: list[dict[str, Any]], target: int, sent: dict[str, Any], canvas: int) -> None:
    """Assert that ``sent`` is a phrase the generator's own rules allow about ``anns[target]``
    and that, read plainly, it fits that object and no other."""
    text, phrase_type = sent["sent"], sent["phrase_type"]
    assert text in meanings(), f"{text!r} is not a sentence the templates make"
    meaning = meanings()[text]
    assert meaning[0] == phrase_type, f"{text!r} is not a {phrase_type} phrase"
    options = phrase_options(anns, target, canvas)
    assert phrase_type in options and text in sentences(anns, target, phrase_type, options[phrase_type]), \
        f"the generator's rules do not allow {text!r} about object {target}"
    assert referents(anns, meaning, canvas) == [target], f"{text!r} does not pick out object {target} alone"


@pytest.mark.parametrize("root_name, spec", [("synth_root", TINY), ("small_root", SMALL)], ids=["tiny", "small"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_phrase_picks_out_its_referent_alone(request, root_name, spec, variant):
    instances, refs = load(request.getfixturevalue(root_name), variant)
    by_image = anns_by_image(instances)
    checked = 0
    for ref in refs:
        anns = by_image[ref["image_id"]]
        target = [a["id"] for a in anns].index(ref["ann_id"])
        for sent in ref["sentences"]:
            check_sentence(anns, target, sent, spec.canvas)
            checked += 1
    assert checked == sum(len(r["sentences"]) for r in refs) > 0


def test_the_recheck_rejects_ambiguous_phrases():
    canvas = 128

    def ann(colour: str, shape: str, size: str, cx: float, cy: float) -> dict[str, Any]:
        r = SIZES[size] * canvas
        return {"colour": colour, "category_id": SHAPES.index(shape) + 1, "size": size,
                "bbox": [cx - r, cy - r, 2 * r, 2 * r]}

    # Two equal red circles on the left, one above the other, both near the one blue square.
    anns = [ann("red", "circle", "small", 20, 40), ann("red", "circle", "small", 20, 88),
            ann("blue", "square", "medium", 30, 64), ann("yellow", "triangle", "large", 100, 64)]
    m = meanings()
    for text in ("red circle", "the left red circle", "the biggest red circle", "red circle next to the blue square"):
        assert referents(anns, m[text], canvas) == [0, 1]
        with pytest.raises(AssertionError):
            check_sentence(anns, 0, {"sent": text, "phrase_type": m[text][0]}, canvas)
    assert phrase_options(anns, 0, canvas) == {"location": ["top"]}
    check_sentence(anns, 0, {"sent": "the top red circle", "phrase_type": "location"}, canvas)
    check_sentence(anns, 3, {"sent": "the yellow triangle", "phrase_type": "attribute"}, canvas)
    # Made unique by size, the top circle is "the biggest"; with a second blue square the anchor is ambiguous.
    anns[0]["size"] = "large"
    check_sentence(anns, 0, {"sent": "the biggest red circle", "phrase_type": "superlative"}, canvas)
    anns[0]["size"] = "small"
    anns.append(ann("blue", "square", "small", 100, 20))
    assert referents(anns, m["red circle next to the blue square"], canvas) == []


def test_attribute_phrases_for_look_alikes_are_rejected_in_real_scenes(synth_root):
    """Naming a member of a look-alike group by colour and shape alone fails the re-check."""
    instances, _ = load(synth_root, "synthref")
    rejected = 0
    for anns in anns_by_image(instances).values():
        for i, a in enumerate(anns):
            if sum((b["colour"], b["category_id"]) == (a["colour"], a["category_id"]) for b in anns) > 1:
                text = f"the {a['colour']} {SHAPES[a['category_id'] - 1]}"
                assert len(referents(anns, meanings()[text], TINY.canvas)) > 1
                with pytest.raises(AssertionError):
                    check_sentence(anns, i, {"sent": text, "phrase_type": "attribute"}, TINY.canvas)
                rejected += 1
    assert rejected > 0


# ---------------------------------------------------------------- counts


def test_counts_are_as_documented_and_summarised(synth_root):
    record = json.loads((synth_root / "SYNTHREF.json").read_text())
    summary = generate(synth_root, TINY)  # a complete root: returns the stored counts, writes nothing
    assert summary.root == synth_root
    assert {k: v for k, v in dataclasses.asdict(summary).items() if k != "root"} == record["summary"]
    assert record["spec"] == json.loads(json.dumps(dataclasses.asdict(TINY)))

    images = {s: TINY.images.get(s, 0) for s in SPLITS}
    assert summary.images == images
    # Both variants share the images, annotations and detections.
    instances_bytes = (synth_root / "synthref" / "instances.json").read_bytes()
    assert (synth_root / "synthref+" / "instances.json").read_bytes() == instances_bytes
    dets_bytes = (synth_root / "dets" / "synthref_unc_dets.json").read_bytes()
    assert (synth_root / "dets" / "synthref+_unc_dets.json").read_bytes() == dets_bytes
    dets = json.loads(dets_bytes)

    instances = json.loads(instances_bytes)
    total = sum(images.values())
    assert [im["id"] for im in instances["images"]] == list(range(1, total + 1))
    assert all(im["width"] == im["height"] == TINY.canvas for im in instances["images"])
    assert sorted(p.name for p in (synth_root / "images").iterdir()) == [im["file_name"] for im in instances["images"]]
    anns = {a["id"]: a for a in instances["annotations"]}
    # Images are numbered split after split; every image yields refs in both variants.
    first_id, split_images = 1, {}
    for split in SPLITS:
        split_images[split] = set(range(first_id, first_id + images[split]))
        first_id += images[split]

    recount: dict[str, Any] = {"images": images, "refs": {}, "sentences": {}, "phrase_types": {},
                               "detections": len(dets)}
    for variant in VARIANTS:
        _, refs = load(synth_root, variant)
        assert [r["ref_id"] for r in refs] == list(range(1, len(refs) + 1))
        sent_ids = [x["sent_id"] for r in refs for x in r["sentences"]]
        assert sent_ids == list(range(1, len(sent_ids) + 1))
        for ref in refs:
            assert ref["split"] in SPLITS
            assert ref["image_id"] in split_images[ref["split"]]
            assert ref["sent_ids"] == [x["sent_id"] for x in ref["sentences"]]
            assert ref["category_id"] == anns[ref["ann_id"]]["category_id"]
            assert anns[ref["ann_id"]]["image_id"] == ref["image_id"]
            assert all(x["phrase_type"] in PHRASE_TYPES and x["tokens"] == x["sent"].split() for x in ref["sentences"])
            assert TINY.sentences_per_ref[0] <= len(ref["sentences"]) <= TINY.sentences_per_ref[1]
            if ref["split"] == "testA":  # RefCOCO's testA is about people: circles play them
                assert SHAPES[ref["category_id"] - 1] == "circle"
            elif ref["split"] == "testB":
                assert SHAPES[ref["category_id"] - 1] != "circle"
        for split in SPLITS:
            assert {r["image_id"] for r in refs if r["split"] == split} == split_images[split]
        recount["refs"][variant] = {s: sum(r["split"] == s for r in refs) for s in SPLITS}
        recount["sentences"][variant] = {s: sum(len(r["sentences"]) for r in refs if r["split"] == s) for s in SPLITS}
        recount["phrase_types"][variant] = {t: sum(x["phrase_type"] == t for r in refs for x in r["sentences"])
                                            for t in PHRASE_TYPES}
    assert record["summary"] == recount

    # synthref uses all four phrase types; synthref+ has no location or relation phrases.
    assert all(recount["phrase_types"]["synthref"][t] > 0 for t in PHRASE_TYPES)
    plus = recount["phrase_types"]["synthref+"]
    assert plus["location"] == plus["relation"] == 0 and plus["attribute"] > 0 and plus["superlative"] > 0

    objects = defaultdict(int)
    for a in instances["annotations"]:
        objects[a["image_id"]] += 1
    assert all(TINY.objects[0] <= objects[i] <= TINY.objects[1] for i in range(1, total + 1))
    per_image = defaultdict(int)
    for k, d in enumerate(dets, 1):
        assert d["det_id"] == k and 1 <= d["image_id"] <= total and 0 < d["score"] <= 1
        assert d["category_name"] == SHAPES[d["category_id"] - 1]
        per_image[d["image_id"]] += 1
    assert all(per_image[i] <= objects[i] + TINY.false_positives[1] for i in per_image)
