"""A session's start and finish, shared by the single-process run and each torchrun rank: what is
left to do, the resume line, the session's entry in run.json, completion, and the end-of-run
lines (each grounder's misses from the journal, the components' reports, dropped boxes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..interfaces import ImageItem
from ..journal import JournalRepair
from ..results import Run

if TYPE_CHECKING:
    from .components import Bench
    from .proposals import Proposals

Announce = Callable[[str], None]


def remaining(bench: Bench, items: Sequence[ImageItem], done: set[tuple[str, int]]) -> list[ImageItem]:
    """The images with a (method, phrase) pair not yet in the journal."""
    method_ids = [m.id for m in bench.methods]
    return [it for it in items if any((m, r.sent_id) not in done for r in it.refs for m in method_ids)]


def resumed(run: Run, done: set[tuple[str, int]], repairs: dict[str, JournalRepair], announce: Announce) -> None:
    """Say that ``run`` continues, with what it keeps and what was taken out of which journal."""
    if not done and not any(repairs.values()):
        return
    taken = "".join(f"; {r.describe()} taken out of {name}" for name, r in repairs.items() if r)
    rejected = any(r.corrupt_lines or r.duplicate_lines for r in repairs.values())
    announce(f"resuming run {run.id}: {len(done)} predictions kept{taken}"
             + (" (kept in predictions.rejected)" if rejected else ""))


def begin(bench: Bench, run: Run, proposals: Proposals, kept: int, images: int, placement: dict[str, Any],
          repairs: dict[str, JournalRepair]) -> dict[str, Any]:
    """Open this session in run.json: what it keeps and scores, where, and which journals it repaired."""
    proposer = bench.config.proposer
    if proposer is not None and proposer.invalid == "drop":
        run.record_proposals(proposals.summary("drop"))
    session = run.start_session(kept=kept, images=images, placement=placement, repair=JournalRepair())
    if any(repairs.values()):
        session["journal_repair"] = (repairs[run.journal.path.name].as_dict() if list(repairs) == [run.journal.path.name]
                                     else {name: r.as_dict() for name, r in repairs.items() if r})
        run.save()
    return session


def finish(bench: Bench, run: Run, session: dict[str, Any], items: Sequence[ImageItem], proposals: Proposals,
           reports: Sequence[tuple[str, str]], announce: Announce, **facts: Any) -> None:
    """Complete ``run`` (every expected prediction journaled) with this session's ``facts``, then print
    each grounder's answers scored as misses (counted over the whole journal, whichever process or
    session wrote them), the components' end-of-run ``reports`` (who, line) and the dropped boxes."""
    config = bench.config
    metrics = run.complete(session, expected=len(bench.methods) * sum(len(it.refs) for it in items),
                           uncertainty=config.uncertainty, proposals_s=round(proposals.seconds, 3), **facts)
    for method, m in metrics.items():
        if m.get("misses"):
            announce(f"method {method}: answers scored as misses: "
                     + ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in m["misses"].items()))
    for who, line in reports:
        announce(f"{who}: {line}")
    if proposals.dropped:
        announce(f"dropped {proposals.describe_drops()} (proposer.invalid: drop); counts per image in {run.dir / 'run.json'}")


def reports(bench: Bench) -> list[tuple[str, str]]:
    """This process's end-of-run lines from its grounders and proposer (e.g. how many images a cache served)."""
    lines = [(f"method {m.id}", m.grounder.report()) for m in bench.methods if m.grounder is not None]
    if bench.proposer is not None:
        lines.append(("proposer", bench.proposer.report()))
    return [(who, line) for who, line in lines if line]
