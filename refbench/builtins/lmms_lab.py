"""The ``lmms_lab`` data set: lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg (Hugging Face parquet, used by lmms-eval).

Layout (``<root>`` is the downloaded ``data/`` folder, or the folder above it)::

    <root>/<split>-00000-of-0000N.parquet   one row per referred object: question_id (the ann_id, a
                                            string), image (the whole image, embedded: {bytes, path}),
                                            question, answer (the object's sentences, refer's raw text),
                                            segmentation, bbox (xywh pixels, float32), iscrowd, file_name
                                            (refer's per-ref file name, <image>_<n>.jpg)

Splits are files (val, test, testA, testB; no train). Rows carry no sent_id, ref_id or image_id:
the ann_id finds refer's ref, the image comes from ``file_name``, and the sentences follow
refer's order within the ref (``reconcile``). Embedded images are written once to
``dataset.images`` (default ``<root>/images``) so the runner opens them as files; their sizes
are kept beside them in ``.sizes.json``. Read with pyarrow alone: no network, no
``datasets`` cache machinery.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import Field
from PIL import Image

from ..boxes import Box
from ..errors import RefbenchError
from ..files import write_atomic
from .layouts import LayoutDataset, check_boxes, image_name
from .reconcile import Row

COLUMNS = ("question_id", "image", "answer", "bbox", "file_name")
SIZES = ".sizes.json"


def split_files(root: Path, split: str) -> list[Path]:
    """Hugging Face's shard files of ``split`` under ``root`` or ``root/data``."""
    for folder in (root, root / "data"):
        found = sorted(folder.glob(f"{split}-*.parquet"))
        if found:
            return found
    return []


def present_splits(root: Path) -> list[str]:
    names = {p.name.split("-")[0] for folder in (root, root / "data") for p in folder.glob("*.parquet")}
    return sorted(names)


def missing_columns(path: Path, required: tuple[str, ...], layout: str) -> RefbenchError | None:
    """One line naming the columns ``path`` lacks and the layout expected, or None."""
    import pyarrow.parquet as pq

    try:
        names = set(pq.read_schema(path).names)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a file that is not parquet
        return RefbenchError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})", "re-download it")
    missing = [c for c in required if c not in names]
    if not missing:
        return None
    return RefbenchError(f"{path}: missing columns {', '.join(missing)}; the {layout} layout has {', '.join(required)}",
                         "download the files of that layout (docs/getting-refcoco.md) or pick the reader of the layout you have")


def widen(values: np.ndarray) -> np.ndarray:
    """float32 boxes as float64 through their shortest decimal form: 103.93 stays 103.93 (not
    103.93000030517578), so boxes equal refer's 2-decimal values exactly."""
    return values.astype(str).astype(np.float64) if values.dtype == np.float32 else values.astype(np.float64)


def boxes_of(column: Any, where: str) -> np.ndarray:
    """A list<float> column of 4-number boxes as an ``[n, 4]`` float64 array."""
    col = column.combine_chunks()
    offsets = np.asarray(col.offsets)
    if col.null_count or not (np.diff(offsets) == 4).all():
        bad = int(np.flatnonzero((np.diff(offsets) != 4) | np.asarray(col.is_null()))[0])
        raise RefbenchError(f"{where} row {bad}: bbox is not 4 numbers", "the file is damaged; re-download it")
    return widen(col.flatten().to_numpy(zero_copy_only=False)).reshape(-1, 4)


def decode_check(data: Any, where: str) -> tuple[int, int]:
    """The size of embedded image bytes, after decoding them (JPEG at 1/8 scale: enough to find damage)."""
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise RefbenchError(f"{where}: no embedded image bytes", "re-download the parquet file (it must embed the images)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for damaged data
        raise RefbenchError(f"{where}: embedded image does not decode ({type(exc).__name__}: {exc})",
                            "re-download the parquet file") from None
    return size


class LmmsLabDataset(LayoutDataset):
    """RefCOCO-family data in lmms-lab's parquet layout (images embedded); ids matched to refer's."""

    LAYOUT = "lmms-lab"
    BOX_FORMAT = "xywh"
    TEXTS_ARE = "raw"

    class Options(LayoutDataset.Options):
        images: Optional[Path] = Field(None, description="folder the embedded images are written to once "
                                                         "(default: <root>/images)")

    @classmethod
    def check_files(cls, options: Any) -> list[RefbenchError]:
        if not options.root.is_dir():
            return []
        problems = []
        for split in options.splits:
            files = split_files(options.root, split)
            if not files:
                problems.append(RefbenchError(f"no {split}-*.parquet under {options.root} or {options.root / 'data'}",
                                              f"its splits are: {', '.join(present_splits(options.root)) or 'none'}"))
            try:
                problems += [p for f in files if (p := missing_columns(f, COLUMNS, "lmms-lab")) is not None]
            except ImportError:
                return [RefbenchError("pyarrow is not installed", "pip install pyarrow")]
        return problems

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "image_folder": str(self.image_dir)}

    @property
    def image_dir(self) -> Path:
        return self.options.images if self.options.images is not None else self.options.root / "images"

    def read_rows(self) -> list[Row]:
        import pyarrow.parquet as pq

        sizes_path = self.image_dir / SIZES
        sizes: dict[str, list[int]] = json.loads(sizes_path.read_text()) if sizes_path.is_file() else {}
        rows = []
        for split in self.options.splits:
            for path in split_files(self.options.root, split):
                self.files.append(path)
                table = pq.read_table(path, columns=["question_id", "answer", "bbox", "file_name"])
                qids = table.column("question_id").to_pylist()
                names = table.column("file_name").to_pylist()
                answers = table.column("answer").to_pylist()
                boxes = boxes_of(table.column("bbox"), path.name)
                wheres = [f"{path.name} row {i} (question_id {q}, file_name {n})" for i, (q, n) in enumerate(zip(qids, names))]
                images = []
                for where, name in zip(wheres, names):
                    try:
                        images.append(image_name(str(name)))
                    except (ValueError, TypeError) as exc:
                        raise RefbenchError(f"{where}: {exc}", "the file is not in lmms-lab's layout") from None
                wanted = {n for n, _ in images if n not in sizes or not (self.image_dir / n).is_file()}
                if wanted:
                    self._extract(path, wanted, sizes)
                    write_atomic(sizes_path, json.dumps(sizes, sort_keys=True, separators=(",", ":")))
                check_boxes([(w, b, *sizes[n]) for w, b, (n, _) in zip(wheres, boxes.tolist(), images)], "xywh", "lmms-lab")
                for i, (where, qid, (name, image_id), texts, box) in enumerate(zip(wheres, qids, images, answers, boxes.tolist())):
                    try:
                        ann_id = int(qid)
                    except (TypeError, ValueError):
                        raise RefbenchError(f"{where}: question_id {qid!r} is not an ann_id", "the file is not in lmms-lab's layout") from None
                    if not texts:
                        raise RefbenchError(f"{where}: no sentences in answer", "the file is damaged; re-download it")
                    w, h = sizes[name]
                    rows.append(Row(where=where, split=split, image_id=image_id, image=self.image_dir / name, width=w, height=h,
                                    ann_id=ann_id, box=Box(*box), texts=tuple(str(t) for t in texts), texts_are="raw"))
        return rows

    def _extract(self, path: Path, wanted: set[str], sizes: dict[str, list[int]]) -> None:
        """Write each wanted image of ``path`` to the image folder once, checking that it decodes."""
        import pyarrow.parquet as pq

        written: dict[str, tuple[bytes, str]] = {}  # file -> digest of its bytes, the row they came from
        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=["question_id", "file_name", "image"]):
            for qid, name, image in zip(*(batch.column(c).to_pylist() for c in ("question_id", "file_name", "image"))):
                file = image_name(str(name))[0]
                if file in wanted:  # every row's copy is checked: the first is written, the others must equal it
                    where = f"{path.name} row {row} (question_id {qid}, file_name {name})"
                    data = image.get("bytes") if isinstance(image, dict) else None
                    digest = hashlib.sha1(data).digest() if isinstance(data, (bytes, bytearray)) else b""
                    if file not in written:
                        sizes[file] = list(decode_check(data, where))
                        write_atomic(self.image_dir / file, data, durable=False)
                        written[file] = (digest, where)
                    elif digest != written[file][0]:
                        decode_check(data, where)
                        raise RefbenchError(f"{where}: embeds another image than {written[file][1]} for {file}",
                                            "the file is damaged; re-download it")
                row += 1
