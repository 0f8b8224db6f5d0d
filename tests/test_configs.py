"""Every shipped benchmark and training YAML is valid, and real-data ones say what is missing."""

from pathlib import Path

import pytest

from refbench.cli import main
from refbench.config import load_config
from refbench.plugins import registry

from conftest import COMMITTED_RUNS, REPO, committed_run

from clip_shaded.train import load_train_config

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def check_options(kind: str, spec) -> None:
    options = spec.as_dict()
    cls = registry().info(kind, options.pop("plugin")).cls
    cls.Options(**options)


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.yaml")), ids=lambda p: p.name)
def test_benchmark_yaml_is_valid(path):
    config = load_config(path)
    check_options("dataset", config.dataset)
    if config.proposer is not None:
        check_options("proposer", config.proposer)
    for m in config.methods:
        for kind, spec in (("scorer", m.scorer), ("prompter", m.prompter), ("combinator", m.combine), ("grounder", m.ground)):
            if spec is not None:
                check_options(kind, spec)


@pytest.mark.parametrize("path", sorted((BENCHMARKS / "train").rglob("*.yaml")), ids=lambda p: p.name)
def test_training_yaml_is_valid(path):
    config = load_train_config(path)
    check_options("dataset", config.data)
    check_options("prompter", config.prompter)
    assert config.recipe.k == 4


def test_real_data_config_names_the_missing_files(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(BENCHMARKS / "refcoco_testA.yaml")]) == 2
    err = capsys.readouterr().err
    assert "refcoco data not found: data/refer/refcoco/refs(unc).p is missing" in err and "docs/getting-refcoco.md" in err


def test_config_hashes_match_the_committed_runs():
    """A config's hash decides which interrupted run is resumed: it must not change when refbench
    does, for configs whose meaning did not."""
    import json

    checked = 0
    for record_path in [committed_run(r) / "run.json" for r in COMMITTED_RUNS]:
        record = json.loads(record_path.read_text())
        path = REPO / record["config_path"]
        if path.is_file():
            assert load_config(path).digest() == record["config_sha256"], path
            checked += 1
    assert checked >= 4
