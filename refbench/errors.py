"""The one exception type users see: a problem and its fix, in one line."""

from __future__ import annotations


class RefbenchError(Exception):
    """Bad input or a failed precondition.

    The CLI prints ``str(error)`` as a single line (no traceback unless ``--debug``) and
    exits non-zero, so the message must name what is wrong and how to fix it.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}; {fix}")
