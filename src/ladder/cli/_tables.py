"""Tables that stay readable in a narrow terminal: no cell is ever cut with "…".

Every table the CLI prints on its consoles passes through :class:`ReadableTables`, a rich
render hook, so each verb builds its table for a wide terminal and gets a narrow one right:

- every column folds what does not fit onto the next line instead of cutting it;
- when even the words that must stay whole (numbers, names, headers) cannot sit side by
  side in the console's width, the table is printed stacked: one block per row, its
  first cell as a heading and every other cell as ``header: value``, lines broken only
  between cells.

A column a verb declares with ``overflow="fold"`` holds ids, paths or URLs: those may
break inside their long words, so they count as at most :data:`FOLDED_WIDTH` characters
when deciding whether the table fits side by side.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable

from rich.console import Console, ConsoleRenderable, Group, RenderableType, RenderHook
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

__all__ = ["FOLDED_WIDTH", "ReadableTables", "readable_table"]

FOLDED_WIDTH = 16  # the least width a folding column (ids, paths) is given to fit a table
_INDENT = "  "
_SEPARATOR = " · "


class ReadableTables(RenderHook):
    """A render hook that makes every boxed table readable at its console's width."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        """Replace each boxed :class:`Table` (grids, e.g. progress bars, pass untouched)."""
        return [
            readable_table(self.console, r) if isinstance(r, Table) and r.box else r
            for r in renderables
        ]


def readable_table(console: Console, table: Table, width: int | None = None) -> Group | Table:
    """``table`` folded to fit ``width`` (default the console's), or stacked if it cannot."""
    room = width or console.width
    if _least_width(console, table) > room:
        return _stacked(console, table, room)
    folded = copy.copy(table)  # the caller's table stays as it was
    folded.columns = [dataclasses.replace(c, overflow="fold") for c in table.columns]
    return folded


def _least_width(console: Console, table: Table) -> int:
    """The narrowest width at which no word outside a folding column has to break."""
    total = table._extra_width  # borders between and around the columns
    for index, column in enumerate(table.columns):
        cells: list[RenderableType] = list(column.cells)
        if table.show_header:
            cells.append(column.header)
        longest = max((_longest_word(console, cell) for cell in cells), default=1)
        if column.overflow == "fold":
            longest = min(longest, FOLDED_WIDTH)
        total += max(longest, column.min_width or 0) + table._get_padding_width(index)
    return total


def _longest_word(console: Console, cell: RenderableType) -> int:
    if isinstance(cell, str | Text):
        return max((len(word) for word in _plain(console, cell).split()), default=0)
    return Measurement.get(console, console.options, cell).minimum


def _plain(console: Console, cell: RenderableType) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return console.render_str(cell).plain
    return ""


def _text(console: Console, cell: RenderableType) -> Text:
    return cell if isinstance(cell, Text) else console.render_str(str(cell))


def _stacked(console: Console, table: Table, width: int) -> Group:
    """One block per row: the first cell as a heading, then ``header: value`` lines."""
    parts: list[RenderableType] = []
    if table.title:
        parts.append(_text(console, table.title))
    columns: list[Column] = table.columns
    cells = [list(column.cells) for column in columns]
    for row_index, row in enumerate(table.rows):
        heading = _text(console, cells[0][row_index]).copy()
        heading.stylize("bold")
        if row.style:
            heading.stylize(row.style)
        parts.append(heading)
        pairs = []
        for column, column_cells in zip(columns[1:], cells[1:], strict=True):
            value = _text(console, column_cells[row_index])
            if value.plain.strip():
                label = Text(f"{_plain(console, column.header)}: ", style="dim")
                pairs.append(Text.assemble(label, value))
        parts.extend(_packed(pairs, width - len(_INDENT)))
    return Group(*parts)


def _packed(pairs: Iterable[Text], width: int) -> list[Text]:
    """``pairs`` joined on indented lines of at most ``width``, broken only between pairs.

    A pair longer than a line gets a line of its own, where rich folds it.
    """
    lines: list[Text] = []
    line = Text(_INDENT)
    for pair in pairs:
        used = line.cell_len - len(_INDENT)
        if used and used + len(_SEPARATOR) + pair.cell_len > width:
            lines.append(line)
            line = Text(_INDENT)
        elif used:
            line.append(_SEPARATOR, style="dim")
        line.append_text(pair)
    if line.cell_len > len(_INDENT):
        lines.append(line)
    return lines
