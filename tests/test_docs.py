"""The documentation site: its strict build passes, and a public name without a docstring fails it."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

from conftest import REPO


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_site_builds_in_strict_mode(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    import refbench

    for name in ("Prompter", "BoxFormat", "World", "hookimpl", "IoUConvention"):
        assert f'id="refbench.{refbench._EXPORTS[name]}.{name}"' in api, name
    assert "docs/hooks.py" not in api and not (tmp_path / "site" / "hooks.py").exists()


def test_a_public_name_without_a_docstring_is_named(tmp_path):
    import griffe

    hooks = load_hooks()
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    (package / "mod.py").write_text('def told():\n    """Says."""\n\n\ndef silent():\n    pass\n\n\n'
                                    'Alias = int\n"""An alias."""\n\nBare = str\n')
    read = hooks.griffe_docstring(griffe.load("pkg", search_paths=[tmp_path]))
    exports = {"told": "mod", "silent": "mod", "Alias": "mod", "Bare": "mod"}
    assert hooks.undocumented(exports, read) == ["Bare", "silent"]
    import refbench

    assert hooks.undocumented(refbench._EXPORTS, hooks.griffe_docstring(griffe.load("refbench"))) == []


def test_the_readme_s_prompt_is_the_example_plugin_s_code():
    """The README's new-prompt listing is examples/refbench-outline's own code, line for line, and
    the README stays a first-ten-minutes page (under 200 lines)."""
    readme = (REPO / "README.md").read_text()
    listing = readme.split("```python\n", 1)[1].split("```", 1)[0]
    source = (REPO / "examples" / "refbench-outline" / "refbench_outline" / "__init__.py").read_text()
    lines = [line for line in listing.splitlines() if line.strip()]
    rest = iter(source.splitlines())
    assert len(lines) >= 8 and all(line in rest for line in lines)  # each in the source, in the source's order
    assert len(readme.splitlines()) < 200
