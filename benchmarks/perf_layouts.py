"""Time to load each RefCOCO layout at RefCOCO's size (about 50,000 refs), on SynthRef written in all four.

Generates SynthRef with every image in val (default 11,500 images, about 50,000 refs; about a
minute on 2 cores), writes the lmms-lab, jxu124 and MDETR views of it, then builds each data set
as a run does (``Dataset(options)``: read, check, reconcile ids) and prints wall times: the
median of ``--repeat`` loads, and lmms-lab's first load apart, since it writes the embedded
images out once. Also prints the matched and excluded row counts.

    python benchmarks/perf_layouts.py [--root DIR] [--images N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from refbench.builtins.datasets import ReferDataset
from refbench.builtins.jxu124 import Jxu124Dataset
from refbench.builtins.lmms_lab import LmmsLabDataset
from refbench.builtins.mdetr import MdetrDataset
from refbench.synth import SynthSpec, generate
from refbench.synth.layouts import write_layouts


def timed(build):
    start = time.perf_counter()
    dataset = build()
    return time.perf_counter() - start, dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, help="where to write SynthRef (default: a temporary folder, removed after)")
    ap.add_argument("--images", type=int, default=11_500, help="val images (about 4.3 refs each)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="perf_layouts_"))
    try:
        t0 = time.perf_counter()
        summary = generate(root, SynthSpec(images={"val": args.images}))
        t1 = time.perf_counter()
        write_layouts(root, variants=("synthref",))
        t2 = time.perf_counter()
        refs = root / "synthref" / "refs(unc).p"
        print(f"SynthRef: {args.images:,} images, {summary.refs['synthref']['val']:,} refs, "
              f"{summary.sentences['synthref']['val']:,} sentences; generated in {t1 - t0:.1f} s, layouts written in {t2 - t1:.1f} s")
        for path in [refs, root / "synthref" / "instances.json", *sorted(root.glob("*/synthref/data/*.parquet")),
                     root / "mdetr" / "finetune_synthref_val.json"]:
            print(f"  {path.relative_to(root)}: {path.stat().st_size / 2**20:.1f} MiB")

        common = {"dataset": "synthref", "splits": ["val"]}
        lmms_images = root / "lmms-lab-images"
        first, lmms = timed(lambda: LmmsLabDataset(LmmsLabDataset.Options(root=root / "lmms-lab" / "synthref", refs=refs,
                                                                           images=lmms_images, **common)))
        cases = {
            "refer (refs pickle + instances.json)": lambda: ReferDataset(ReferDataset.Options(root=root, images=root / "images", **common)),
            "lmms-lab, refs given (images written)": lambda: LmmsLabDataset(LmmsLabDataset.Options(
                root=root / "lmms-lab" / "synthref", refs=refs, images=lmms_images, **common)),
            "lmms-lab, no refs (synthesised ids)": lambda: LmmsLabDataset(LmmsLabDataset.Options(
                root=root / "lmms-lab" / "synthref", images=lmms_images, **common)),
            "jxu124, refs given": lambda: Jxu124Dataset(Jxu124Dataset.Options(
                root=root / "jxu124" / "synthref", images=root / "images", refs=refs, **common)),
            "jxu124, no refs (its own ids)": lambda: Jxu124Dataset(Jxu124Dataset.Options(
                root=root / "jxu124" / "synthref", images=root / "images", **common)),
            "mdetr, refs given": lambda: MdetrDataset(MdetrDataset.Options(
                root=root / "mdetr", images=root / "images", refs=refs, **common)),
        }
        print(f"\nload time, median of {args.repeat}:")
        print(f"  {'lmms-lab, first load (writes ' + format(len(lmms), ',') + ' images)':44s} {first:6.2f} s")
        for name, build in cases.items():
            times, dataset = zip(*(timed(build) for _ in range(args.repeat)))
            d = dataset[0]
            tally = getattr(d, "tally", None)
            counts = (f"rows {tally.rows:,}, matched {tally.matched:,}, excluded {tally.unmatched - tally.kept_unmatched:,}, "
                      f"key {d.key()}") if tally else f"key {d.key()}"
            print(f"  {name:44s} {statistics.median(times):6.2f} s   {sum(len(i.refs) for i in d):,} phrases; {counts}")
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
