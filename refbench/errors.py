"""The one exception type users see: a problem and its fix, in one line."""

from __future__ import annotations

from typing import Sequence


class RefbenchError(Exception):
    """Bad input or a failed precondition.

    The CLI prints each problem as a single line (no traceback unless ``--debug``) and
    exits non-zero, so a message must name what is wrong and how to fix it. An error made
    with :meth:`many` carries several problems, each printed on its own line.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.problems: list[RefbenchError] = [self]
        super().__init__(problem if not fix else f"{problem}; {fix}")

    @classmethod
    def many(cls, errors: Sequence[RefbenchError]) -> RefbenchError:
        """One error carrying every problem of ``errors`` (itself when there is just one)."""
        flat = [p for e in errors for p in e.problems]
        if len(flat) == 1:
            return flat[0]
        combined = cls(f"{len(flat)} problems: " + " | ".join(str(p) for p in flat))
        combined.problems = flat
        return combined

    def within(self, prefix: str) -> RefbenchError:
        """The same problems and fixes, with ``prefix`` (e.g. where in the config) before each problem."""
        if len(self.problems) > 1:
            return RefbenchError.many([p.within(prefix) for p in self.problems])
        return RefbenchError(prefix + self.problem, self.fix)
