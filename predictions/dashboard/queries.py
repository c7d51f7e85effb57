"""Cached reads. The store is passed as `_store` so Streamlit never hashes it; a `JobRef` names it.

`JobRef.version` is what the job list says about the job's latest round (step, round count, status,
last update): when the live poll sees a new round the version changes and every page reads fresh data
at once, while unchanged jobs are served from the cache. The TTL equals the default refresh interval,
so even a round that changed without a new step (rows upserted again) shows within one interval.
"""

from __future__ import annotations

import csv
import io
from typing import NamedTuple

import pandas as pd
import streamlit as st

from predictions.scoring.metrics import METRICS
from predictions.store.frames import PREDICTION_COLUMNS
from predictions.store.protocol import Store, signed_in_email
from predictions.store.records import Job, PageQuery, PredictionPage, RolloutTrends, Trends

DEFAULT_REFRESH_S = 5
"""The live view's default poll interval, and the TTL of every cached query."""
CSV_PAGE_ROWS = 1000
"""Rows per request when the CSV download pages through a job (the largest page a store serves)."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a cell a spreadsheet would run as a formula begins (OWASP's CSV injection list)."""


class JobRef(NamedTuple):
    """What identifies a job's data in the cache: which store, which job, which state of it."""

    store_key: str
    job_id: str
    version: tuple


def store_key(store: Store) -> str:
    """The store's identity in cache keys: its description, and the signed-in user where there is one."""
    return f"{store.description}|{signed_in_email(store) or ''}"


def job_version(job: Job) -> tuple:
    """What changes when a job gets a new round or a new status."""
    return (job.latest_step, job.round_count, job.status, job.updated_at)


def job_ref(store: Store, job: Job) -> JobRef:
    return JobRef(store_key(store), job.id, job_version(job))


JOB_LIST_TTL_S = 300
"""How long an unchanged job list is kept: a change shows at once through `jobs_version`; this only
bounds what the version cannot see (rows another program wrote without the store)."""


def jobs_version(store: Store) -> tuple:
    """What changes whenever the job list would; read on every script run and poll (index reads)."""
    return store.jobs_version()


PICKER_JOBS = 200
"""The most jobs the picker lists (and the store reads) at once: at 10,000 jobs, sending every label on
every script run cost each page about a second; a search finds the others."""


@st.cache_resource(ttl=JOB_LIST_TTL_S, show_spinner=False, max_entries=64)
def list_jobs(_store: Store, key: str, version: tuple, search: str = "") -> tuple[Job, ...]:
    """The `PICKER_JOBS` most recently active jobs the store shows this user (those whose name, id or
    model hold `search`, when given); read again when `version` (the store's `jobs_version`) changes, so
    between changes every run and poll of every session shares one read. A resource, not data: the same
    tuple of frozen jobs is handed out, not a copy unpickled on every run."""
    return tuple(_store.list_jobs(limit=PICKER_JOBS, search=search or None))


@st.cache_resource(ttl=JOB_LIST_TTL_S, show_spinner=False, max_entries=256)
def find_job(_store: Store, key: str, version: tuple, job_id: str) -> Job | None:
    """One job, however long ago it was active (a picked job the recent list no longer holds)."""
    return _store.find_job(job_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def trends(_store: Store, ref: JobRef) -> Trends:
    """Per-round aggregates, computed by the store."""
    return _store.trends(ref.job_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=64)
def training_series(_store: Store, ref: JobRef) -> pd.DataFrame:
    """What the Trainer logged for the job (loss, eval loss, learning rate), long form by step."""
    return _store.training_series(ref.job_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=64)
def sample_matrix(
    _store: Store, ref: JobRef, metric: str, samples: tuple[int, ...], steps: tuple[int, ...]
) -> pd.DataFrame:
    """One metric for the given samples and rounds, long form: one page of the heatmap."""
    return _store.sample_matrix(ref.job_id, metric, samples=samples, steps=steps)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=64)
def sample_summary(_store: Store, ref: JobRef, metric: str = "char_error_rate") -> pd.DataFrame:
    """One row per sample: first, latest, lowest values of a metric, aggregated by the store."""
    return _store.sample_summary(ref.job_id, metric)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=64)
def group_trends(_store: Store, ref: JobRef, field: str) -> pd.DataFrame:
    """Per round and group of a metadata field: each metric's average, computed by the store."""
    return _store.group_trends(ref.job_id, field)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def sample_history(_store: Store, ref: JobRef, sample_index: int) -> pd.DataFrame:
    """One sample's row in every round."""
    return _store.sample_history(ref.job_id, sample_index)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def predictions_page(_store: Store, ref: JobRef, query: PageQuery) -> PredictionPage:
    """One filtered, sorted page of rows; the total count comes with it (the query is the cache key)."""
    return _store.predictions_page(ref.job_id, query)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def rollout_trends(_store: Store, ref: JobRef) -> RolloutTrends:
    """An RL job's rollouts per step and per reward function, from the store's summary."""
    return _store.rollout_trends(ref.job_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=64)
def rollout_prompts(_store: Store, ref: JobRef) -> pd.DataFrame:
    """The prompts an RL job's rollouts answered, first seen first."""
    return _store.rollout_prompts(ref.job_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def prompt_rollouts(_store: Store, ref: JobRef, prompt_id: str) -> pd.DataFrame:
    """One prompt's rollouts at every step."""
    return _store.prompt_rollouts(ref.job_id, prompt_id)


@st.cache_data(ttl=DEFAULT_REFRESH_S, show_spinner=False, max_entries=256)
def step_rollouts(_store: Store, ref: JobRef, step: int, best: bool, limit: int = 5) -> pd.DataFrame:
    """A step's best (or worst) rollouts by total reward."""
    return _store.step_rollouts(ref.job_id, step, best=best, limit=limit)


def job_csv(store: Store, job_id: str) -> str:
    """Every row of a job as CSV in (step, sample) order, read in keyset pages (`row_values_after`) so
    no request hits a row cap and each page starts where the last ended (offset pages re-sorted and
    skipped every earlier row: 51 s for 200k rows). Each page's plain values go straight to
    `csv.writer`: a pandas frame per page cost 13 s of CPU for 200k rows.

    The columns: `PREDICTION_COLUMNS`, then each user scorer of the job, the same on every page
    whichever scores it holds. Called only when the download button is clicked (Streamlit runs a
    callable `data` lazily).
    """
    custom = [metric.name for metric in store.trends(job_id).metrics if metric.name not in METRICS]
    buffer = io.StringIO()
    # CRLF as RFC 4180 says: then a cell holding a lone CR is quoted too, not read as a line end
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*PREDICTION_COLUMNS, *custom])
    after = None
    while True:
        rows = store.row_values_after(job_id, after, limit=CSV_PAGE_ROWS, scores=custom)
        writer.writerows(map(spreadsheet_safe, rows))
        if len(rows) < CSV_PAGE_ROWS:
            return buffer.getvalue()
        after = (rows[-1][STEP_AT], rows[-1][SAMPLE_AT])


STEP_AT, SAMPLE_AT = PREDICTION_COLUMNS.index("step"), PREDICTION_COLUMNS.index("sample_index")
TEXT_AT = tuple(
    PREDICTION_COLUMNS.index(name)
    for name in ("job_id", "prompt", "ground_truth", "prediction", "created_at")
)
"""The text columns of a row: the only cells that can start like a formula."""


def spreadsheet_safe(row: tuple) -> tuple | list:
    """The row with every text cell that starts like a formula (=, +, -, @, tab, CR) prefixed with '.

    Model output and prompts are untrusted: `=HYPERLINK(...)` in a downloaded CSV would run when the
    file is opened in a spreadsheet. Numbers are left as they are.
    """
    unsafe = [at for at in TEXT_AT if (cell := row[at]) and cell.startswith(FORMULA_STARTS)]
    if not unsafe:
        return row
    cells = list(row)
    for at in unsafe:
        cells[at] = "'" + cells[at]
    return cells
