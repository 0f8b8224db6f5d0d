"""Packaging metadata: every distribution's pyproject builds its metadata without a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

PROJECTS = [REPO, *sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))]

# setuptools' own build hook, as pip calls it, with every warning made an error
BUILD_METADATA = """
import sys, tempfile, warnings
warnings.simplefilter("error")
from setuptools import build_meta
with tempfile.TemporaryDirectory() as out:
    build_meta.prepare_metadata_for_build_wheel(out)
"""


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_metadata_builds_without_warnings(project, tmp_path):
    done = subprocess.run([sys.executable, "-c", BUILD_METADATA], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr, done.stderr[-2000:]
