"""The ``refer`` data set: RefCOCO / RefCOCO+ / RefCOCOg / SynthRef in refer's layout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field, field_validator

from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import Dataset, ImageItem, Options
from ..refer import load_items, locate


class ReferDataset(Dataset):
    """RefCOCO-family data in refer's layout: refs pickle, instances.json, image folder."""

    class Options(Options):
        root: Path = Field(description="folder holding <dataset>/refs(<split_by>).p")
        dataset: str = Field(description="refcoco, refcoco+, refcocog, synthref, synthref+")
        split_by: str = "unc"
        splits: list[str] = Field(min_length=1, description="e.g. [testA] or [val, testA, testB]")
        images: Path = Field(description="image folder (COCO train2014 for RefCOCO)")
        text: Literal["sent", "raw"] = "sent"
        exclude: list[Path] = Field(default_factory=list, description=(
            "phrases to leave out: files of sent_ids (one per line or a JSON list) or Ref-L4 reviewed JSON files "
            "(caption_quality 0 is left out); the data key gets a suffix, e.g. refcoco/unc-l4clean-<hash>"))

        @field_validator("splits", "exclude", mode="before")
        @classmethod
        def _one_or_many(cls, v: Any) -> Any:
            return [v] if isinstance(v, (str, Path)) else v

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, cls.Options)
        missing = [RefbenchError(f"exclusion file not found: {p}", "fix dataset.exclude (docs/getting-refcoco.md: Cleaned splits)")
                   for p in options.exclude if not p.is_file()]
        return locate(options.root, options.dataset, options.split_by, options.images)[1] + missing

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        self.files, problems = locate(o.root, o.dataset, o.split_by, o.images)
        if problems:
            raise RefbenchError.many(problems)
        self.items = load_items(self.files, o.splits, o.text)
        self.exclusion, self.excluded = None, {}
        if o.exclude:
            from .exclude import apply, load

            self.exclusion = load(o.exclude, self.items)
            self.items, self.excluded = apply(self.items, self.exclusion)
            warning = self.exclusion.warning()
            if warning:
                print(f"warning: {warning}", file=sys.stderr)

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def key(self) -> str:
        base = f"{self.options.dataset}/{self.options.split_by}"
        return f"{base}-{self.exclusion.tag}" if self.exclusion else base

    def known_sent_ids(self) -> set[int]:
        return super().known_sent_ids() | (self.exclusion.sent_ids if self.exclusion else set())

    def describe(self) -> dict[str, Any]:
        out = {
            "refs": str(self.files.refs), "refs_sha256": sha256(self.files.refs),
            "instances": str(self.files.instances), "instances_sha256": sha256(self.files.instances),
            "images": len(self.items), "phrases": sum(len(i.refs) for i in self.items),
        }
        if self.exclusion:
            out["exclude"] = {"files": self.exclusion.files, "excluded_per_split": self.excluded,
                              "unmatched": self.exclusion.unmatched}
        return out
