"""The "Download as CSV" file of a job: RFC 4180 (CRLF line ends, quotes doubled), every text cell
quoted, cells a spreadsheet would run as formulas escaped, the same bytes from every store.

A page of rows is written column by column: each column's cells are made by one C-level loop where it
can be (`map` over a cache of the column's repeating texts and integers, `float.__repr__` over its
numbers), then the lines are joined from the columns with `zip` and `str.join`. One Python call per
cell (a cell maker per value, then `csv.writer`'s scan of every character) was most of the CPU a
200k-row job took. Text cells are always quoted (valid RFC 4180, and an empty text `""` stays apart
from a missing one), numbers written as Python's shortest round-trip `repr` (`0.1`, `1e-05`), so no
cell needs scanning but for `"`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence

from predictions.scoring.metrics import METRICS
from predictions.store.frames import PREDICTION_COLUMNS
from predictions.store.protocol import Store

CSV_PAGE_ROWS = 1000
"""Rows per request when the CSV download pages through a job (the largest page a store serves)."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a cell a spreadsheet would run as a formula begins (OWASP's CSV injection list)."""
TEXT_COLUMNS = ("job_id", "prompt", "ground_truth", "prediction", "metadata", "created_at")
"""The columns holding text (metadata as JSON text): quoted, and escaped when they start like a formula."""
REPEATED_COLUMNS = ("job_id", "prompt", "ground_truth", "metadata", "created_at")
"""Text columns whose texts repeat (a sample's in every round, a round's write time on each of its
rows): their cells are made once per text."""
INTEGER_COLUMNS = ("epoch", "step", "sample_index", "text_replacements")
"""Columns holding only integers, made once per value."""
STEP_AT, SAMPLE_AT = PREDICTION_COLUMNS.index("step"), PREDICTION_COLUMNS.index("sample_index")

Column = Sequence[object]
ColumnCells = Callable[[Column], Iterable[str]]
"""Turns one column's values (a page's) into its cells, in order."""


def text_cell(text: str | None) -> str:
    """A quoted text cell, prefixed with ' when it starts like a formula (=, +, -, @, tab, CR); None
    is an empty cell.

    Model output and prompts are untrusted: `=HYPERLINK(...)` in a downloaded CSV would run when the
    file is opened in a spreadsheet.
    """
    if text is None:
        return ""
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return '"' + text.replace('"', '""') + '"'


def number_cell(value: float | None) -> str:
    """A float as Python's shortest round-trip text (what `float(...)` reads back exactly); None is
    empty. -0.0 is written 0.0: SQLite's JSON functions drop a score's sign of zero, jsonb keeps it."""
    return "" if value is None else repr(value + 0.0)


def integer_cell(value: int | None) -> str:
    """An integer's digits; None is empty."""
    return "" if value is None else str(value)


def number_cells(values: Column) -> list[str]:
    """A column of floats as `number_cell`s. A column whose values repeat (exact match, the word overlap
    of short answers) formats each distinct value once; otherwise `float.__repr__` is mapped over it (a
    C loop, no Python call per value) when every value is a float, the cell by cell path when one is not
    (None, an integer)."""
    distinct = set(values)
    if len(distinct) * 4 <= len(values):
        cells = {value: number_cell(value) for value in distinct}
        return list(map(cells.__getitem__, values))
    try:
        cells = list(map(float.__repr__, values))
    except TypeError:
        return list(map(number_cell, values))
    return [cell if cell != "-0.0" else "0.0" for cell in cells] if "-0.0" in cells else cells


class _Cells(dict):
    """Value -> its cell, made on first use by `make`: a dict hit costs less than making it again."""

    def __init__(self, make: Callable[[object], str]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, value: object) -> str:
        self[value] = cell = self.make(value)
        return cell

    def column(self, values: Column) -> list[str]:
        """The cells of a column, looked up in one C loop."""
        return list(map(self.__getitem__, values))


def text_cells(values: Column) -> list[str]:
    """A column of texts that do not repeat (the predictions) as `text_cell`s."""
    return list(map(text_cell, values))


def column_makers(columns: Sequence[str]) -> list[ColumnCells]:
    """For each column, what turns its values into cells (one cache per kind, shared by the pages)."""
    texts, integers = _Cells(text_cell), _Cells(integer_cell)
    makers: dict[str, ColumnCells] = {name: texts.column for name in REPEATED_COLUMNS}
    makers.update({name: integers.column for name in INTEGER_COLUMNS})
    return [makers.get(name, text_cells if name in TEXT_COLUMNS else number_cells) for name in columns]


def csv_lines(rows: Sequence[tuple], makers: Sequence[ColumnCells]) -> str:
    """`rows` as CSV lines, each ending in CRLF: cells made column by column, then joined per row."""
    if not rows:
        return ""
    cells = [make(values) for make, values in zip(makers, zip(*rows, strict=True), strict=True)]
    return "\r\n".join(map(",".join, zip(*cells, strict=True))) + "\r\n"


def job_csv(store: Store, job_id: str) -> str:
    """Every row of a job as CSV in (step, sample) order, read in keyset pages (`row_values_after`) so
    no request hits a row cap and each page starts where the last ended (offset pages re-sorted and
    skipped every earlier row: 51 s for 200k rows).

    The columns: `PREDICTION_COLUMNS`, then each user scorer of the job, the same on every page
    whichever scores it holds. Called only when the download button is clicked (Streamlit runs a
    callable `data` lazily).
    """
    custom = [metric.name for metric in store.trends(job_id).metrics if metric.name not in METRICS]
    header = io.StringIO()
    csv.writer(header, lineterminator="\r\n").writerow([*PREDICTION_COLUMNS, *custom])
    makers = column_makers([*PREDICTION_COLUMNS, *custom])
    parts, after = [header.getvalue()], None
    while True:
        rows = store.row_values_after(job_id, after, limit=CSV_PAGE_ROWS, scores=custom)
        parts.append(csv_lines(rows, makers))
        if len(rows) < CSV_PAGE_ROWS:
            return "".join(parts)
        after = (rows[-1][STEP_AT], rows[-1][SAMPLE_AT])
