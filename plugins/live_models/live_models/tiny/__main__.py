"""Write the tiny models to a folder, one sub-folder each: ``python -m live_models.tiny data/tiny [NAME ...]``.

A model whose folder is complete and was written by the same builder code is kept (its weights are
the same for the same seed and code), so the SynthRef live demo builds them once; a folder written
by other builder code is written again. ``--list`` prints the names.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import sys
import time
from pathlib import Path

from ..hub import quiet_progress
from . import BUILDERS

DONE = ".built"  # written last, holding the builder's stamp: a folder without it is an interrupted build, written again


def stamp(module: str) -> str:
    """The SHA-256 of the builder module's source: its weights change only with it."""
    return hashlib.sha256(Path(importlib.import_module(module).__file__ or "").read_bytes()).hexdigest()


def build(root: Path, names: list[str]) -> list[tuple[str, Path, float | None]]:
    """Build each of ``names`` into ``root / name``; return (name, folder, seconds or None when kept)."""
    out = []
    for name in names:
        folder = root / name
        module, function = BUILDERS[name].split(":")
        done, want = folder / DONE, stamp(module)
        if done.is_file() and done.read_text(encoding="utf-8") == want:
            out.append((name, folder, None))
            continue
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        with quiet_progress():  # no "Writing model shards" bar per model
            getattr(importlib.import_module(module), function)(folder)
        done.write_text(want, encoding="utf-8")
        out.append((name, folder, time.perf_counter() - start))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m live_models.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, nargs="?", help="the folder to write the models under")
    parser.add_argument("names", nargs="*", help=f"which models (default: all of {', '.join(BUILDERS)})")
    parser.add_argument("--list", action="store_true", help="print the names and exit")
    args = parser.parse_args(argv)
    if args.list or args.root is None:
        print("\n".join(BUILDERS))
        return 0
    unknown = [n for n in args.names if n not in BUILDERS]
    if unknown:
        print(f"error: no tiny model named {', '.join(unknown)}; choose from {', '.join(BUILDERS)}", file=sys.stderr)
        return 2
    for name, folder, seconds in build(args.root, args.names or list(BUILDERS)):
        print(f"{name:28} {folder}  " + ("kept" if seconds is None else f"built in {seconds:.1f} s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
