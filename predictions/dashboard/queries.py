"""Cached reads. The store is passed as `_store` so Streamlit never hashes it; a `JobRef` names it.

`JobRef.version` is what the job list says about the job's latest round (step, round count, status,
last update): when the live poll sees a new round the version changes and every page reads fresh data
at once, while unchanged jobs are served from the cache. The TTL equals the default refresh interval,
so even a round that changed without a new step (rows upserted again) shows within one interval.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import streamlit as st

from predictions.store.protocol import Store, signed_in_email
from predictions.store.records import Job, PageQuery, PredictionPage, RolloutTrends, Trends

DEFAULT_REFRESH_S = 5
"""The live view's default poll interval, and the TTL of every cached query."""


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
