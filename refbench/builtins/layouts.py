"""What the three download-layout readers share: options, checks, the data key, box-format checks.

A reader subclasses :class:`LayoutDataset`, declares its layout's name, box format and which of
refer's sentence fields its rows hold, and implements ``read_rows``; ``reconcile`` does the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Optional, Sequence

from pydantic import Field, field_validator

from ..errors import RefbenchError
from ..files import sha256
from ..interfaces import Dataset, ImageItem, Options
from .reconcile import ReferIndex, Row, announce, reconcile


def check_boxes(rows: Sequence[tuple[str, Sequence[float], int, int]], fmt: Literal["xywh", "xyxy"], layout: str) -> None:
    """Refuse boxes that look like the other format: ``(where, box as stored, width, height)`` per row.

    xywh whose right or bottom edge lies past the image (+1 px) reads like xyxy; xyxy with
    x2 < x1 or y2 < y1 reads like xywh. Nothing is swapped: the first such row is named."""
    bad = []
    for where, b, w, h in rows:
        x, y, c, d = b
        if fmt == "xywh":
            if x + c > w + 1 or y + d > h + 1:
                bad.append((where, b, f"x+w = {x + c:g} or y+h = {y + d:g} lies beyond the {w}x{h} image"))
        elif c < x or d < y:
            bad.append((where, b, "x2 < x1 or y2 < y1"))
    if bad:
        where, b, why = bad[0]
        other = "xyxy" if fmt == "xywh" else "xywh"
        raise RefbenchError(f"{where}: bbox {[round(float(v), 2) for v in b]} read as {fmt} ({layout}'s format): {why}"
                            f"{f' ({len(bad)} rows like it)' if len(bad) > 1 else ''}; it looks like {other}",
                            f"this file is not in {layout}'s layout: convert its boxes to {fmt} or read it with the "
                            f"reader of the layout that stores {other}")


def image_folder_problems(images: Path) -> list[RefbenchError]:
    """A missing COCO image folder, for the layouts that do not embed images."""
    if images.is_dir():
        return []
    return [RefbenchError(f"image folder not found: {images}",
                          "set dataset.images to the folder holding the data set's images (COCO train2014)")]


def image_name(ref_file_name: str) -> tuple[str, int]:
    """The image file and image id in refer's per-ref file name (``COCO_train2014_000000580957_4.jpg``
    -> ``COCO_train2014_000000580957.jpg``, 580957): the name less its last ``_`` part, as MDETR's
    converter does."""
    stem, _, ext = ref_file_name.rpartition(".")
    head = stem.rpartition("_")[0]
    if not head:
        raise ValueError(f"file_name {ref_file_name!r} is not refer's <image>_<n>.jpg")
    return f"{head}.{ext or 'jpg'}", int(head.rpartition("_")[2])


class LayoutDataset(Dataset):
    """A RefCOCO-family data set in a download layout other than refer's; subclasses read rows.

    ``key()`` is refer's (``refcoco/unc``) only when every phrase carries refer's ``sent_id``,
    so runs on such data rank with runs on refer's files; otherwise it names the layout."""

    LAYOUT: ClassVar[str] = ""
    BOX_FORMAT: ClassVar[Literal["xywh", "xyxy"]] = "xywh"
    TEXTS_ARE: ClassVar[Literal["raw", "sent"] | None] = None  # None: both
    CARRIES_IDS: ClassVar[bool] = False

    class Options(Options):
        root: Path = Field(description="folder holding the layout's files")
        dataset: str = Field(description="refcoco, refcoco+, refcocog, synthref, synthref+ (names the data key)")
        split_by: str = "unc"
        splits: list[str] = Field(min_length=1, description="refer's split names, e.g. [val, testA, testB]")
        refs: Optional[Path] = Field(None, description="refer's refs(<split_by>).p: match rows to refer's sent_ids")
        unmatched: Literal["exclude", "keep"] = Field("exclude", description="rows without a ref in `refs`")
        text: Optional[Literal["sent", "raw"]] = Field(None, description="refer's sentence field (default: sent where known)")

        @field_validator("splits", mode="before")
        @classmethod
        def _one_or_many(cls, v: Any) -> Any:
            return [v] if isinstance(v, str) else v

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        assert isinstance(options, LayoutDataset.Options)
        problems = []
        if not options.root.is_dir():
            problems.append(RefbenchError(f"{cls.LAYOUT} folder not found: {options.root}",
                                          "set dataset.root to the folder you downloaded (docs/getting-refcoco.md)"))
        if options.refs is not None and not options.refs.is_file():
            problems.append(RefbenchError(f"refs file not found: {options.refs}",
                                          "give refer's refs(<split_by>).p, or leave dataset.refs out"))
        if options.refs is None and cls.TEXTS_ARE is not None and options.text not in (None, cls.TEXTS_ARE):
            problems.append(RefbenchError(f"{cls.LAYOUT} stores refer's {cls.TEXTS_ARE!r} sentences only, not {options.text!r}",
                                          f"set dataset.text: {cls.TEXTS_ARE}, or give refer's refs file (dataset.refs)"))
        return problems + cls.check_files(options)

    @classmethod
    def check_files(cls, options: Any) -> list[RefbenchError]:
        """Problems with the layout's own files (missing, wrong columns)."""
        return []

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        o = self.options
        problems = type(self).check(o)
        if problems:
            raise RefbenchError.many(problems)
        self.index = ReferIndex(o.refs) if o.refs is not None else None
        self.text: Literal["sent", "raw"] = o.text or ("sent" if self.index or self.TEXTS_ARE is None else self.TEXTS_ARE)
        self.files: list[Path] = []
        rows = self.read_rows()
        self.items, self.tally = reconcile(rows, self.index, self.text, o.unmatched == "keep", str(o.root), o.splits)
        announce(self.LAYOUT, self.tally, o.refs, o.unmatched == "keep")

    def read_rows(self) -> list[Row]:
        """The selected splits' rows, in file order, split after split; sets ``self.files``."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[ImageItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ids(self) -> str:
        """``refer`` when every phrase carries refer's sent_id, else ``synthesised``."""
        return "synthesised" if self.tally.synthesised else "refer"

    def key(self) -> str:
        base = f"{self.options.dataset}/{self.options.split_by}"
        if self.ids == "refer":
            return base
        return f"{base}+{self.LAYOUT}-unmatched" if self.index is not None else f"{base}~{self.LAYOUT}-ids"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": self.LAYOUT, "box_format": self.BOX_FORMAT, "ids": self.ids, "text": self.text,
                               "files": {str(p): sha256(p) for p in self.files}}
        if self.options.refs is not None:
            out.update(refs=str(self.options.refs), refs_sha256=sha256(self.options.refs))
        out.update(self.tally.record(), images=len(self.items), phrases=sum(len(i.refs) for i in self.items))
        return out
