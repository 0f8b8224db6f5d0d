"""What a result records about where it came from: git revision, package versions, machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable

CORE_PACKAGES = ("refbench", "numpy", "pillow", "pydantic", "pluggy", "torch", "torchvision", "open_clip_torch")


def git_revision(where: Path) -> dict[str, Any]:
    """``{"sha", "dirty"}`` of the checkout holding ``where`` (both None outside one)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"sha": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Python's version and the installed version of refbench's main dependencies and ``extra``."""
    out = {"python": platform.python_version()}
    for name in dict.fromkeys([*CORE_PACKAGES, *extra]):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def environment() -> dict[str, Any]:
    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(), "argv": sys.argv}
