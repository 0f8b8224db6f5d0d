"""Tables that fit the terminal: ids whole, free text cut with an ellipsis, extra columns behind ``--wide``.

Three layouts, picked by ``wide``:

* fit (``wide=False``): the table fits ``console.width``. Ids, names and numbers are never
  wrapped or cut; a free-text column (``cut=True``: summaries, citations) is cut with "…" down
  to its ``min_width``; if that is not enough, optional columns (``drop=1, 2, ...``) are hidden,
  lowest first, until it fits (then any hidden early that fits again beside the rest comes
  back), and ``show`` reports which, so the caller can point to ``--wide``. Columns with no
  value in any row are left out. Only when the essential columns alone are wider
  than the terminal does a table run past it (ids stay whole rather than being cut).
* wide (``wide=True``): every column at its full width, nothing cut or wrapped; the table may
  be wider than the terminal (lines are not cropped).
* auto (``wide=None``): fit when stdout is a terminal, or when ``COLUMNS`` is set (an explicit
  width, honoured as rich honours it); otherwise, i.e. piped or redirected with no ``COLUMNS``,
  wide: nothing is cut or hidden and each row stays on one line for grep/cut/diff. For real
  parsing use ``refbench leaderboard --format csv|json``.

Rich does the measuring and the cutting (``no_wrap``, ``overflow="ellipsis"``, ``min_width``,
``max_width``, ``Measurement``); this module only decides which columns to show, because rich
shrinks every column alike once the wrappable ones are spent, ids included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

UNBOUNDED = 1_000_000  # a width no table reaches: measure at natural width


@dataclass(frozen=True)
class Col:
    """A column. ``cut``: free text, cut with "…" (never below ``min_width``); otherwise never wrapped or cut.
    ``drop``: None for always shown; otherwise hidden in a narrow terminal, ``drop=1`` first.

    One ``cut`` column per table is cut exactly; rich shares the cut among several widest first,
    which can undercut a ``min_width`` (the tables here have one each)."""

    header: str
    justify: str = "left"
    style: str | None = None
    cut: bool = False
    min_width: int | None = None
    drop: int | None = None


@dataclass
class TableRow:
    cells: Sequence[str | Text]
    style: str | None = None
    section: bool = False  # a rule above this row


def wide_layout(console: Console, wide: bool | None) -> bool:
    """``wide`` if given; else wide exactly when the output is neither a terminal nor given a width by COLUMNS."""
    if wide is not None:
        return wide
    return not (console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit())


def _cell(value: str | Text, col: Col) -> Text:
    text = value.copy() if isinstance(value, Text) else Text(value)
    if col.cut:  # cut with an ellipsis, never wrapped: the column may still shrink (rich only shrinks wrappable ones)
        text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _min_width(col: Col) -> int:
    return col.min_width if col.min_width is not None else max(len(col.header), 12)


def _build(cols: Sequence[Col], keep: Sequence[int], rows: Sequence[TableRow], title: str | None,
           narrowest: bool = False) -> Table:
    """A rich table of the columns ``keep``; ``narrowest``: cut columns at their minimum (for measuring)."""
    table = Table(title=title, title_justify="left")
    for i in keep:
        col = cols[i]
        if col.cut:
            table.add_column(col.header, justify=col.justify, style=col.style, overflow="ellipsis",
                             min_width=_min_width(col), max_width=_min_width(col) if narrowest else None)
        else:
            table.add_column(col.header, justify=col.justify, style=col.style, no_wrap=True)
    for row in rows:
        if row.section:
            table.add_section()
        table.add_row(*[_cell(row.cells[i], cols[i]) for i in keep], style=row.style)
    return table


def natural_width(console: Console, table: Table) -> int:
    """The table's width with nothing cut or wrapped (rich's measurement)."""
    return Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum


def layout(console: Console, cols: Sequence[Col], rows: Sequence[TableRow | Sequence[str | Text]],
           title: str | None = None, wide: bool | None = None) -> tuple[Table, list[str]]:
    """The table to print (with ``console.print(table, crop=False)``) and the headers hidden to fit."""
    rows = [r if isinstance(r, TableRow) else TableRow(r) for r in rows]
    keep = list(range(len(cols)))
    if wide_layout(console, wide):
        table = _build(cols, keep, rows, title)
        table.width = natural_width(console, table)  # may exceed the console; printed uncropped
        return table, []
    empty = {i for i in keep if rows and all(not str(r.cells[i]).strip() for r in rows)}
    keep = [i for i in keep if i not in empty]  # nothing to show

    def need(keep: list[int]) -> int:
        return natural_width(console, _build(cols, keep, rows, title, narrowest=True))

    order = sorted((i for i in keep if cols[i].drop is not None), key=lambda i: (cols[i].drop, -i))
    hidden: list[int] = []
    while need(keep) > console.width and order:
        i = order.pop(0)
        keep.remove(i)
        hidden.append(i)
    for i in reversed(hidden[:-1]):  # a column hidden early may fit again beside what was hidden after it
        if need(sorted([*keep, i])) <= console.width:
            keep = sorted([*keep, i])
            hidden.remove(i)
    table = _build(cols, keep, rows, title)
    if need(keep) > console.width:  # the essentials alone are too wide: keep ids whole, run past the edge
        table.width = need(keep)
    return table, [cols[i].header for i in hidden]


def show(console: Console, cols: Sequence[Col], rows: Sequence[TableRow | Sequence[str | Text]],
         title: str | None = None, wide: bool | None = None) -> list[str]:
    """Print the table (see ``layout``); returns the headers of the columns hidden to fit."""
    table, hidden = layout(console, cols, rows, title, wide)
    console.print(table, crop=False)
    return hidden


def hidden_note(hidden: Sequence[str], flag: str = "--wide") -> str | None:
    """One line naming the hidden columns, or None."""
    names = list(dict.fromkeys(hidden))
    return f"[dim]hidden to fit: {escape(', '.join(names))}; {escape(flag)} shows them[/]" if names else None
