"""Stage 2: every image's candidate boxes, proposed and checked before any image is prepared.

Proposing runs in the main process (proposers read files or small models), so an invalid box
stops a run before it starts rather than late, and ``refbench validate`` sees every box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from ..boxes import OUT_OF_IMAGE_TOLERANCE, Box, box_problem
from ..errors import RefbenchError
from ..interfaces import ImageItem, Proposer

SHOWN = 3  # invalid boxes named in an error


@dataclass
class Proposals:
    """Valid candidate boxes per image id, and how many invalid boxes each image lost."""

    boxes: dict[int, list[Box]]
    dropped: dict[int, int] = field(default_factory=dict)

    def summary(self, invalid: str) -> dict[str, Any]:
        """What run.json records about invalid boxes."""
        return {"invalid": invalid, "out_of_image_tolerance_px": OUT_OF_IMAGE_TOLERANCE,
                "dropped": sum(self.dropped.values()), "images_with_drops": len(self.dropped),
                "dropped_per_image": {str(k): v for k, v in sorted(self.dropped.items())}}


def propose_all(items: Sequence[ImageItem], proposer: Proposer, invalid: Literal["error", "drop"]) -> Proposals:
    """Every item's proposals; invalid ones (non-finite, degenerate, out of the image by more than
    :data:`OUT_OF_IMAGE_TOLERANCE` pixels) raise one error naming the first few and the count
    (``invalid: error``), or are dropped and counted (``drop``)."""
    out = Proposals({})
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
        raise RefbenchError(f"{n} invalid proposal box{'es' * (n > 1)} in {len(out.dropped)} image{'s' * (len(out.dropped) > 1)}"
                            f" ({'; '.join(bad)}{'; ...' if n > SHOWN else ''})",
                            "fix the proposals file, or set proposer.invalid: drop to drop and count them")
    return out
