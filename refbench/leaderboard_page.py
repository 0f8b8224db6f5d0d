"""``refbench leaderboard --format html``: one self-contained page with the leaderboard's tables and,
per table, a plot of each method's accuracy with its 95% interval per split.

The plot is drawn with Pillow, as ``refbench show``'s charts are (``gallery.py``): it is already a
dependency, a dot with whiskers per method and split is a handful of lines, and the page then
needs no plotting library and no script. The picture is inline as a data URI.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from .gallery import INK, MUTED, PAPER, RULE, data_uri, font
from .leaderboard import Row, _cell, _fmt, _groups, _sort_key, _splits, ci_note

# one colour per split, in the table's split order (then repeated)
SPLIT_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75)]

STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#141414;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}p.meta{color:#555;margin:2px 0}
table{border-collapse:collapse;background:#fff;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #e2e2e2;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.id{white-space:nowrap}tr.reported td{color:#666}
img.plot{display:block;margin:10px 0;border:1px solid #e2e2e2;max-width:100%;height:auto}.note{color:#555;font-size:12px}"""


def plot(rows: Sequence[Row], splits: Sequence[str], title: str, width: int = 760) -> Image.Image:
    """Each method's accuracy per split as a dot, with its 95% interval as a whisker where the run
    made one; published rows (no intervals) as hollow dots. The axis spans the values shown."""
    f, small = font(13), font(11)
    left, right, top, line = 300, 24, 52, 26
    values = [v for r in rows for s in splits for v in [r.splits.get(s)] if v is not None]
    values += [b for r in rows for s in splits for b in r.ci.get(s, [])]
    low = max(0.0, math.floor((min(values, default=0.0) - 2) / 10) * 10)
    high = min(100.0, math.ceil((max(values, default=100.0) + 2) / 10) * 10)
    high = max(high, low + 10)
    height = top + len(rows) * line + 30
    out = Image.new("RGB", (width, height), PAPER)
    d = ImageDraw.Draw(out)
    d.text((8, 8), title, fill=INK, font=f)
    out.info["title"] = title
    span = width - left - right

    def x(v: float) -> float:
        return left + span * (min(max(v, low), high) - low) / (high - low)

    legend = left
    for k, split in enumerate(splits):  # the legend: a dot per split
        colour = SPLIT_COLOURS[k % len(SPLIT_COLOURS)]
        d.ellipse([legend, 30, legend + 8, 38], fill=colour)
        d.text((legend + 12, 34), split, fill=INK, font=small, anchor="lm")
        legend += 24 + int(d.textlength(split, font=small))
    axis = top + len(rows) * line
    step = 5 if high - low <= 40 else 10
    for tick in range(int(low), int(high) + 1, step):
        d.line([x(tick), top - 6, x(tick), axis], fill=RULE)
        d.text((x(tick), axis + 4), str(tick), fill=MUTED, font=small, anchor="ma")
    for i, r in enumerate(rows):
        y = top + i * line + line / 2
        label = f"{r.method} ({'reported' if r.source == 'reported' else r.benchmark})"
        while d.textlength(label, font=f) > left - 16 and len(label) > 4:
            label = label[:-2] + "…"
        d.text((left - 10, y), label, fill=INK if r.source == "run" else MUTED, font=f, anchor="rm")
        present = [s for s in splits if r.splits.get(s) is not None]
        for j, split in enumerate(present):
            colour = SPLIT_COLOURS[list(splits).index(split) % len(SPLIT_COLOURS)]
            yy = y + (j - (len(present) - 1) / 2) * 6  # splits of one method side by side, not on top of each other
            interval = r.ci.get(split)
            if interval:
                lo, hi = x(interval[0]), x(interval[1])
                d.line([lo, yy, hi, yy], fill=colour, width=2)
                d.line([lo, yy - 4, lo, yy + 4], fill=colour, width=2)
                d.line([hi, yy - 4, hi, yy + 4], fill=colour, width=2)
            cx = x(r.splits[split])
            dot = [cx - 4, yy - 4, cx + 4, yy + 4]
            d.ellipse(dot, fill=colour) if r.source == "run" else d.ellipse(dot, outline=colour, width=2)
    return out


def page(rows: list[Row], heading: str, ci: str = "pm") -> str:
    """The whole page: per data set and protocol rule, its plot and its table."""
    e = html.escape
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>", f"<title>{e(heading)}</title>",
             f"<style>{STYLE}</style></head><body><header><h1>{e(heading)}</h1>",
             "<p class=meta>accuracy (%) per split; dots are accuracies, whiskers their 95% intervals; "
             "hollow dots are published numbers, which carry no interval</p></header>"]
    if not rows:
        parts.append("<p>No completed runs yet: <code>refbench run benchmarks/synthref_testA.yaml</code>.</p>")
    for title, group in sorted(_groups(rows).items()):
        splits = _splits(group)
        ordered = sorted(group, key=_sort_key)
        several = any(len(r.splits) > 1 for r in group)
        columns = [*splits, *(["overall"] if several else [])]
        picture = plot(ordered, splits, title)
        parts += [f"<section data-table='{e(title)}'><h2>{e(title)}</h2>",
                  f"<img class=plot src='{data_uri(picture)}' alt='{e(title)}' width={picture.width}>",
                  "<table><thead><tr><th>benchmark</th><th>method</th>",
                  *[f"<th class=num>{e(c)}</th>" for c in columns],
                  "<th class=num>upper bound</th><th class=num>n</th><th>run / source</th></tr></thead><tbody>"]
        for r in ordered:
            cells = [f"<td>{e(r.benchmark)}</td><td>{e(r.method)}</td>"]
            for c in columns:
                interval = r.ci.get(c)
                tip = f" title='95% interval [{interval[0]:.2f}, {interval[1]:.2f}]'" if interval else ""
                cells.append(f"<td class=num{tip}>{e(_cell(r, c, ci))}</td>")
            source = r.run_id if r.source == "run" else r.citation
            cells.append(f"<td class=num>{_fmt(r.upper_bound)}</td><td class=num>{r.n or ''}</td>"
                         f"<td{' class=id' if r.source == 'run' else ''}>{e(source)}</td>")
            parts.append(f"<tr class={r.source}>{''.join(cells)}</tr>")
        parts.append("</tbody></table>")
        note = ci_note(group, ci)
        if note:
            parts.append(f"<p class=note>{e(note)}</p>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
