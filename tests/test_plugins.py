"""Discovery through entry points: a third-party package, a broken one, the listing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, bench_yaml


def refbench(*args: str, env_path: list[Path] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="250")
    env["PYTHONPATH"] = os.pathsep.join([*map(str, env_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "refbench", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def outline_site(tmp_path_factory) -> Path:
    """The example plugin, pip-installed (for real, wheel built from its pyproject) into a private folder."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(REPO / "examples" / "refbench-outline")], check=True)
    return site


def test_third_party_prompter_is_found_and_runs(outline_site, synth_root, tmp_path):
    listing = refbench("plugins", env_path=[outline_site])
    assert listing.returncode == 0
    row = next(line for line in listing.stdout.splitlines() if " outline " in line)
    assert "prompter" in row and "refbench-outline" in row and "0.1.0" in row
    cfg = tmp_path / "b.yaml"
    cfg.write_text(bench_yaml(synth_root, "  - {id: outlined, prompter: {plugin: outline, width: 2}, "
                                          "scorer: {plugin: clip, arch: synth-rn}}", splits="[testA]"))
    proc = refbench("run", str(cfg), "--results", str(tmp_path / "res"), "-q", env_path=[outline_site])
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "res").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    prompter = next(c for c in record["components"] if c["kind"] == "prompter")
    assert prompter == {"where": "methods[0] (outlined).prompter", "kind": "prompter", "name": "outline",
                        "plugin": "outline", "package": "refbench-outline", "version": "0.1.0"}
    assert record["versions"]["refbench-outline"] == "0.1.0"
    assert record["metrics"]["outlined"]["n"] > 0


def test_a_broken_plugin_is_named_and_the_others_load(tmp_path, synth_root):
    dist = tmp_path / "site" / "refbench_broken-0.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: refbench-broken\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[refbench]\nbroken = refbench_broken_no_such_module\n")
    listing = refbench("plugins", env_path=[tmp_path / "site"])
    assert listing.returncode == 0
    assert "green_shade" in listing.stdout and "random" in listing.stdout
    assert "plugin 'broken' (refbench-broken" in listing.stderr and "No module named" in listing.stderr
    assert refbench("plugins", "--strict", env_path=[tmp_path / "site"]).returncode == 1
    cfg = tmp_path / "b.yaml"
    cfg.write_text(bench_yaml(synth_root, "  - {id: x, scorer: {plugin: fancy}}"))
    proc = refbench("run", str(cfg), "--results", str(tmp_path / "res"), env_path=[tmp_path / "site"])
    assert proc.returncode == 2
    assert "unknown scorer 'fancy'" in proc.stderr and "plugin 'broken' (refbench-broken) failed to load" in proc.stderr


def test_every_hook_is_documented():
    from refbench import hookspecs

    hooks = [name for name in dir(hookspecs) if name.startswith("refbench_")]
    assert len(hooks) == 7
    for name in hooks:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"


def test_a_lazily_named_component_that_fails_to_import_is_named_when_a_run_builds_it(tmp_path, synth_root):
    site = tmp_path / "site"
    dist = site / "refbench_lazy-0.2.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: refbench-lazy\nVersion: 0.2\n")
    (dist / "entry_points.txt").write_text("[refbench]\nlazy = refbench_lazy_hooks\n")
    (site / "refbench_lazy_hooks.py").write_text(
        "from refbench import hookimpl\n\n@hookimpl\ndef refbench_scorers():\n    return {'fancy': 'refbench_lazy_missing:Fancy'}\n")
    listing = refbench("plugins", env_path=[site])
    assert listing.returncode == 0, listing.stderr
    assert any(" fancy " in line and "refbench-lazy" in line for line in listing.stdout.splitlines())
    # found missing without importing anything of it; --strict fails on it
    assert "scorer 'fancy' of plugin 'lazy' (refbench-lazy) names module refbench_lazy_missing, which is not installed" in listing.stderr
    assert refbench("plugins", "--strict", env_path=[site]).returncode == 1
    cfg = tmp_path / "b.yaml"
    cfg.write_text(bench_yaml(synth_root, "  - {id: x, scorer: {plugin: fancy}}"))
    proc = refbench("run", str(cfg), "--results", str(tmp_path / "res"), env_path=[site])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert ("scorer 'fancy' of plugin 'lazy' (refbench-lazy) failed to import refbench_lazy_missing:Fancy: "
            "ModuleNotFoundError") in proc.stderr
