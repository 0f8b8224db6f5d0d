"""mkdocs hooks: the API page is generated from refbench's public face, and the build fails on a
public name without a docstring of its own."""

from __future__ import annotations

from typing import Any, Callable

from mkdocs.exceptions import PluginError

MARKER = "<!-- refbench-api -->"


def undocumented(exports: dict[str, str], docstring: Callable[[str], str | None]) -> list[str]:
    """The public names whose definition carries no docstring; ``docstring`` reads one, given
    ``module.name``."""
    return [name for name in sorted(exports) if not (docstring(f"{exports[name]}.{name}") or "").strip()]


def griffe_docstring(package: Any) -> Callable[[str], str | None]:
    """Reads docstrings as mkdocstrings renders them (griffe, statically: a class's or function's
    own, or the string literal under a module-level assignment)."""
    def read(path: str) -> str | None:
        obj = package[path]
        return obj.docstring.value if obj.docstring else None

    return read


def api_markdown(exports: dict[str, str]) -> str:
    """One mkdocstrings block per public name, grouped under the private module that defines it."""
    blocks = []
    for name in sorted(exports, key=lambda n: (exports[n], n)):
        blocks.append(f"::: refbench.{exports[name]}.{name}\n")
    return "\n".join(blocks)


def on_pre_build(config: Any) -> None:
    import griffe

    import refbench

    missing = undocumented(refbench._EXPORTS, griffe_docstring(griffe.load("refbench")))
    if missing:
        raise PluginError(f"public names without a docstring: {', '.join(missing)}; "
                          "write one where each is defined (refbench/__init__.py's _EXPORTS names the module)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    import refbench

    return markdown.replace(MARKER, api_markdown(refbench._EXPORTS))
