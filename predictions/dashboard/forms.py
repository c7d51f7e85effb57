"""Managing what the dashboard shows: a job's tags and note, deleting a job, and a user's ingest keys
(the Keys page).

Both change the store, so both ask first or show once: a job is deleted only after a confirmation
(and the store refuses another owner's job), and a new key's secret is shown on the run that made it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from predictions.dashboard import analysis, queries
from predictions.dashboard.widgets import plain
from predictions.errors import ConfigError, StoreError
from predictions.store.ingest_keys import INGEST_KEY_ENV, IngestKey, IngestKeyManager
from predictions.store.job_details import MAX_NOTE_CHARS, MAX_TAGS
from predictions.store.protocol import Store, signed_in_email
from predictions.store.records import Job

KEY_COLUMNS = {
    "label": "Label",
    "prefix": "Starts with",
    "created_at": "Created",
    "last_used_at": "Last used",
    "revoked_at": "Revoked",
}


KEY_WIDTHS = {"Label": "medium", "Starts with": 110, "Created": 170, "Last used": 170, "Revoked": 170}


def key_columns() -> dict[str, st.column_config.Column]:
    """The Keys table's widths as column configs (a bare string or number would be taken as a label)."""
    return {name: st.column_config.Column(width=width) for name, width in KEY_WIDTHS.items()}


"""Sized so every column, times included, fits a 1280 px page beside the sidebar."""


def key_rows(listed: list[IngestKey], now: datetime) -> pd.DataFrame:
    """The keys as people read them: times relative or in UTC, never raw ISO; never-used and active blank."""
    times = ("created_at", "last_used_at", "revoked_at")
    rows = [
        {"label": key.label, "prefix": f"{key.prefix}…"}
        | {column: analysis.human_time(getattr(key, column), now) for column in times}
        for key in listed
    ]
    return pd.DataFrame(rows, columns=list(KEY_COLUMNS)).rename(columns=KEY_COLUMNS)


def delete_job_control(store: Store, job: Job) -> None:
    """A sidebar section that deletes the picked job and its rows once the user types its id.

    Typing the id (not ticking a box) means a confirmation can never carry over to another job.
    """
    with st.sidebar.expander("Delete this job", icon=":material/delete:"):
        st.caption(f"Deletes its {job.round_count} rounds and every prediction, for good.")
        typed = st.text_input(f"Type {plain(job.id)} to confirm", key="delete_confirm")
        if not st.button("Delete job", type="primary", disabled=typed != job.id, key="delete_job"):
            return
        try:
            store.delete_job(job.id, user_id=job.user_id)
        except (StoreError, ConfigError) as error:
            st.error(f"Not deleted: {plain(error)}")
            return
    queries.list_jobs.clear()
    st.session_state.pop("job", None)
    st.session_state.pop("delete_confirm", None)
    st.query_params.pop("job", None)
    st.rerun()


def job_details_control(store: Store, job: Job, jobs: tuple[Job, ...]) -> None:
    """A sidebar form that changes the picked job's tags and note, for its owner only (others see the
    tags beside its name and the note on Trends). Tags are picked from those of the listed jobs or
    typed new; the store checks them and row-level security refuses anyone but the owner."""
    if job.status == "unknown" or not store.owns(job):
        return  # a job with prediction rows only has no record to keep them in
    if done := st.session_state.pop("details_saved", None):
        st.sidebar.success(f"Saved the tags and note of {plain(done)}.")
    if st.session_state.get("details_job") != (job.id, job.tags, job.note):  # another job, or changed
        st.session_state["details_job"] = (job.id, job.tags, job.note)
        st.session_state["details_tags"], st.session_state["details_note"] = list(job.tags), job.note or ""
    known = sorted({tag for listed in jobs for tag in listed.tags} | set(job.tags))
    with st.sidebar.expander("Tags and note", icon=":material/sell:"), st.form("details"):
        tags = st.multiselect(
            "Tags", known, accept_new_options=True, max_selections=MAX_TAGS, placeholder="Pick or type a tag",
            key="details_tags",
        )  # fmt: skip
        note = st.text_area("Note", max_chars=MAX_NOTE_CHARS, key="details_note")
        if not st.form_submit_button("Save", type="primary"):
            return
        try:
            store.set_job_details(job.id, tags=tags, note=note, user_id=job.user_id)
        except (StoreError, ConfigError) as error:
            st.error(f"Not saved: {plain(error)}")
            return
    queries.list_jobs.clear()
    st.session_state["details_saved"] = job.name or job.id
    st.rerun()


def key_manager(store: Store) -> IngestKeyManager | None:
    """The store's ingest keys for a signed-in user, or None after saying why there are none."""
    if not isinstance(store, IngestKeyManager):
        st.info("Ingest keys are for a Supabase store; the embedded SQLite store needs none.")
        return None
    if signed_in_email(store) is None:
        st.info(
            "Ingest keys belong to a user: open the dashboard with the anon key and sign in to manage "
            "yours. (The service-role key is an admin's secret and has no user of its own.)"
        )
        return None
    return store


def create_key_form(keys: IngestKeyManager) -> None:
    """A label in, a new key out: its secret shown once, with the line to put on the machine."""
    with st.form("create_ingest_key", clear_on_submit=True):
        label = st.text_input("Label", placeholder="gpu-box-1", help="Which machine or cluster uses it")
        created = st.form_submit_button("Create key", type="primary")
    if not created:
        return
    try:
        secret = keys.create_ingest_key(label)
    except (StoreError, ConfigError) as error:
        st.error(f"No key created: {plain(error)}")
        return
    st.success("Copy it now: the secret is shown only this once (only its hash is stored).")
    st.code(f"{INGEST_KEY_ENV}={secret}", language="bash")


def keys_table(keys: IngestKeyManager) -> list[str]:
    """The user's keys, without secrets; returns the labels of the active ones."""
    listed = keys.list_ingest_keys()
    if not listed:
        st.caption("No keys yet.")
        return []
    st.dataframe(key_rows(listed, datetime.now(UTC)), hide_index=True, column_config=key_columns())
    return [key.label for key in listed if key.active]


def revoke_form(keys: IngestKeyManager, active: list[str]) -> None:
    """Revoke an active key, once the user confirms the one they picked; then say what happened.

    Machines using the key are refused from their next write, so nothing is revoked on one click.
    """
    done = st.session_state.pop("revoked_key", None)
    if done is not None:
        st.success(f"Revoked {plain(done)}: machines using it can no longer write.")
    if not active:
        return
    label = st.selectbox("Key to revoke", active, index=None, placeholder="Pick a key", key="revoke_label")
    if label is None:
        return
    st.warning(f"Revoke {plain(label)}? Training machines using it stop writing at their next round.")
    if not st.button("Yes, revoke it", type="primary", key="revoke_confirm"):
        return
    try:
        keys.revoke_ingest_key(label)
    except StoreError as error:
        st.error(f"Not revoked: {plain(error)}")
        return
    st.session_state["revoked_key"] = label
    st.session_state.pop("revoke_label", None)
    st.rerun()
