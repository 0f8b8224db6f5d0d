"""The public face: plugins import only what ``refbench`` exports; the core stays small, acyclic
and plugin-free; listing plugins imports no model code."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import refbench
from conftest import REPO

CORE = REPO / "refbench"
OUTSIDE = [REPO / "plugins", REPO / "examples"]


def private_imports(source: str) -> list[str]:
    """``refbench`` imports of a plugin's source that are not on the public face."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("refbench.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("refbench."):
                found.append(node.module)
            elif node.module == "refbench":
                found += [f"refbench.{a.name}" for a in node.names if a.name not in refbench.__all__]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "refbench":
            if node.attr not in refbench.__all__ and node.attr != "__version__":
                found.append(f"refbench.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("refbench."):
            found.append(node.value)  # importlib.import_module("refbench.x") and the like
    return found


def sources(roots: list[Path]) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "build" not in p.relative_to(root).parts)


def test_plugins_and_examples_use_only_the_public_face():
    files = sources(OUTSIDE)
    plugins = sorted(p.parent.name for p in (REPO / "plugins").glob("*/pyproject.toml"))
    assert len(plugins) >= 3 and all(any(f"plugins/{name}/" in str(p) for p in files) for name in plugins)
    assert any("refbench_outline" in str(p) for p in files)
    offenders = {str(p.relative_to(REPO)): bad for p in files if (bad := private_imports(p.read_text()))}
    assert offenders == {}


@pytest.mark.parametrize("line", [
    "from refbench.runner import Method",
    "import refbench.results",
    "from refbench import Box, _private_helper",
    "def f():\n    from refbench.config import worker_count\n",
    "import refbench\nstore = refbench.results.Store('r')",
    "import importlib\nimportlib.import_module('refbench.runner')",
])
def test_the_check_catches_a_private_import(line):
    assert private_imports("from refbench import Box\n" + line + "\n")


def test_every_public_name_resolves():
    for name in refbench.__all__:
        assert getattr(refbench, name) is not None, name
    with pytest.raises(AttributeError):
        refbench.no_such_name  # noqa: B018


def _top_level_imports(path: Path) -> set[str]:
    """Modules of ``refbench`` that ``path`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name == "__init__.py":
        package += ".__init__"
    base = package.split(".")[:-1]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.ImportFrom):
            parts = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*parts, *(node.module.split(".") if node.module else [])])
            names = [f"{module}.{a.name}" for a in node.names] if node.module is None or node.level else []
            out.update(m for m in [module, *names] if m.startswith("refbench"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("refbench"))
    return out


def test_core_modules_are_small_acyclic_and_never_import_a_plugin():
    modules = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in sources([CORE])}
    long = {name: n for name, p in modules.items() if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}
    for name, path in modules.items():
        text = path.read_text()
        assert "clip_shaded" not in text and "refbench_outline" not in text, name
    graph = {name: {m for m in _top_level_imports(path) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*trail, node]))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph[node]:
            visit(nxt, [*trail, node])
        state[node] = 2

    for name in graph:
        visit(name, [])


def test_listing_plugins_imports_no_model_code():
    code = (
        "import sys\n"
        "from refbench.cli import parser\n"
        "from refbench.plugins import registry\n"
        "parser()\n"
        "infos = registry().components()\n"
        "assert all(i.summary for i in infos), [i.name for i in infos if not i.summary]\n"
        "from refbench.leaderboard import collect\n"
        "from refbench.results import Store\n"
        "collect(Store(__import__('pathlib').Path('results')))\n"
        "heavy = sorted(m for m in ('torch', 'open_clip', 'torchvision', 'clip_shaded.scorer') if m in sys.modules)\n"
        "print(len(infos), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    count, heavy = out.split(" ", 1)
    assert int(count) >= 11 and heavy.strip() == "[]"


def test_every_public_name_is_described_on_the_plugin_page():
    section = (REPO / "docs" / "writing-a-plugin.md").read_text().split("\n## Development", 1)[0]
    assert [name for name in refbench.__all__ if f"`{name}`" not in section] == []


def test_plugin_modules_are_small():
    """A plugin module over 300 lines holds more than one concern: split it."""
    long = {str(p.relative_to(REPO)): n for p in sources(OUTSIDE) if (n := len(p.read_text().splitlines())) > 300}
    assert long == {}


def test_refbench_plugins_lists_every_live_model_component():
    """`refbench plugins --strict` lists the live_models distribution's 11 components (9 grounders, the
    torchvision detector and SAM proposers), each with its kind, plugin and package, and every one's module installed."""
    out = subprocess.run([sys.executable, "-m", "refbench", "plugins", "--wide", "--strict"], capture_output=True,
                         text=True, cwd=REPO, env={**os.environ, "COLUMNS": "250"})
    assert out.returncode == 0, out.stderr
    rows = {cells[1]: cells for line in out.stdout.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) >= 5}
    grounders = ["endpoint", "grounding_dino", "owlv2", "qwen2_vl", "qwen2_5_vl", "paligemma", "florence2", "kosmos2", "internvl"]
    expected = {**{g: "grounder" for g in grounders}, "torchvision_detector": "proposer", "sam_masks": "proposer"}
    assert {name for name, cells in rows.items() if cells[3] == "refbench-live-models"} == set(expected)
    for name, kind in expected.items():
        assert rows[name][0] == kind and rows[name][2] == "live_models"
