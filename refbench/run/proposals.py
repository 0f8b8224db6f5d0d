"""Stage 2: every image's candidate boxes, proposed and checked before any image is prepared.

Proposing runs in the main process (proposers read files or small models), so an invalid box
stops a run before it starts rather than late, and ``refbench validate`` sees every box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from ..boxes import OUT_OF_IMAGE_TOLERANCE, Box, box_problem
from ..errors import RefbenchError
from ..interfaces import ImageItem, Proposer
from .components import Bench, Method

SHOWN = 3  # invalid boxes named in an error


@dataclass
class Proposals:
    """Valid candidate boxes per image id, and how many invalid boxes each image lost."""

    boxes: dict[int, list[Box]]
    dropped: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0  # how long proposing and checking took (a live detector's time is here, not in the scoring wall)

    def describe_drops(self) -> str:
        n = sum(self.dropped.values())
        return f"{n} invalid proposal box{'es' * (n != 1)} in {_count(len(self.dropped), 'image')}"

    def summary(self, invalid: str) -> dict[str, Any]:
        """What run.json records about invalid boxes."""
        return {"invalid": invalid, "out_of_image_tolerance_px": OUT_OF_IMAGE_TOLERANCE,
                "dropped": sum(self.dropped.values()), "images_with_drops": len(self.dropped),
                "dropped_per_image": {str(k): v for k, v in sorted(self.dropped.items())}}


def propose_all(items: Sequence[ImageItem], proposer: Proposer | None, invalid: Literal["error", "drop"] = "error",
                empty: Literal["error", "miss"] = "miss") -> Proposals:
    """Every item's proposals; invalid ones (non-finite, degenerate, out of the image by more than
    :data:`OUT_OF_IMAGE_TOLERANCE` pixels) raise one error naming the first few and the count
    (``invalid: error``), or are dropped and counted (``drop``). With ``empty: error``
    (``protocol.empty_proposals``), an image left without any box is an error too. No proposer
    (every method a grounder): no candidates."""
    out = Proposals({})
    if proposer is None:
        return Proposals({item.image_id: [] for item in items})
    bad: list[str] = []
    for item in items:
        keep = []
        for i, b in enumerate(proposer.propose(item)):
            problem = box_problem(b, item.width, item.height)
            if problem is None:
                keep.append(b)
                continue
            out.dropped[item.image_id] = out.dropped.get(item.image_id, 0) + 1
            if len(bad) < SHOWN:
                bad.append(f"image {item.image_id} box {i} {[b.x, b.y, b.w, b.h]} {problem}")
        out.boxes[item.image_id] = keep
    if out.dropped and invalid == "error":
        n = sum(out.dropped.values())
        raise RefbenchError(f"{n} invalid proposal box{'es' * (n > 1)} in {_count(len(out.dropped), 'image')}"
                            f" ({'; '.join(bad)}{'; ...' if n > SHOWN else ''})",
                            "fix the proposals file, or set proposer.invalid: drop to drop and count them")
    bare = [item for item in items if not out.boxes[item.image_id]]
    if bare and empty == "error":
        shown = ", ".join(f"image {it.image_id} ({it.path.name})" for it in bare[:SHOWN]) + (", ..." if len(bare) > SHOWN else "")
        raise RefbenchError(f"{_count(len(bare), 'image')} without candidate boxes: {shown}",
                            "fix the proposals, or set protocol.empty_proposals: miss to count their phrases as misses")
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def selectors(methods: list[Method]) -> bool:
    """Whether any method chooses among proposals (a scorer or a combinator)."""
    return any(m.grounder is None for m in methods)


def candidates(items: list[ImageItem], proposer: Proposer | None, methods: list[Method], invalid: Literal["error", "drop"],
               empty: Literal["error", "miss"], known: set[int] | None = None) -> Proposals:
    """Every item's proposals (none without a proposer), with every problem of the proposals and of the
    grounders' predictions raised together; ``empty`` applies only when some method chooses among proposals."""
    problems: list[RefbenchError] = []
    proposals = Proposals({it.image_id: [] for it in items})
    try:
        proposals = propose_all(items, proposer, invalid, empty if selectors(methods) else "miss")
    except RefbenchError as exc:
        problems.append(exc.within("proposer: "))
    problems += [p.within(f"method {m.id}: ") for m in methods if m.grounder is not None for p in m.grounder.expect(items, known)]
    problems += mask_problems(proposals, methods) if not problems else []
    if problems:
        raise RefbenchError.many(problems)
    return proposals


MASKS_FROM = ("masks come from the proposer: {plugin: gt, masks: true} (instances.json segmentations) or "
              "{plugin: detections, masks: FILE} (MAttNet's *_masks.json or a COCO results file with segmentation)")


def mask_problems(proposals: Proposals, methods: list[Method]) -> list[RefbenchError]:
    """One error per method whose prompter draws masks while some candidate has none (the first named)."""
    drawing = [m for m in methods if m.prompter is not None and m.prompter.needs_masks]
    if not drawing:  # the boxes are looked at only when some prompter draws masks
        return []
    bare = next(((image, i) for image, boxes in proposals.boxes.items() for i, b in enumerate(boxes) if b.mask is None), None)
    if bare is None:
        return []
    return [RefbenchError(f"method {m.id}: prompter {type(m.prompter).__name__} draws candidates' masks, but image {bare[0]} "
                          f"box {bare[1]} has none", MASKS_FROM)
            for m in drawing]


def propose_for(bench: Bench, items: list[ImageItem]) -> Proposals:
    """:func:`candidates` for a built benchmark; grounders may answer phrases a limit or an exclusion leaves out."""
    config = bench.config
    start = time.perf_counter()
    known = bench.dataset.known_sent_ids() if any(m.grounder is not None for m in bench.methods) else None
    proposals = candidates(items, bench.proposer, bench.methods, config.proposer.invalid if config.proposer else "error",
                           config.protocol.empty_proposals, known)
    proposals.seconds = time.perf_counter() - start
    return proposals
