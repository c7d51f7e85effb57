"""The sidebar and the shared states: store, sign-in, job picker, live polling, empty states.

The router (`router.py`) calls these in order and leaves a `View` in `st.session_state`; each page
reads it with `router.current_view()`, so pages never open stores or parse the URL themselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from predictions.dashboard import analysis, browser_session, queries
from predictions.errors import AuthError, StoreError
from predictions.scoring.metrics import REGISTRY
from predictions.store.protocol import Store, sign_in_of
from predictions.store.records import FINAL_STATUSES, Job, TrainerStop
from predictions.store.settings import StoreSettings
from predictions.store.sqlite import SQLiteStore
from predictions.store.sqlite_read_only import why_read_only

REFRESH_CHOICES_S = (2, 5, 10, 30, 60)
SESSION_STORE_KEY = "_predictions_session_store"

CALLBACK_SNIPPET = """from predictions import PredictionsCallback

trainer = Trainer(
    model=model,
    args=args,
    train_dataset=train,
    processing_class=tokenizer,
    callbacks=[PredictionsCallback(eval_samples, num_samples=16)],
)
trainer.train()"""


@dataclass(frozen=True)
class View:
    """What every page needs: the store, the visible jobs and the one picked in the sidebar."""

    store: Store
    jobs: tuple[Job, ...]
    job: Job | None
    missing_job: str | None = None
    """A job id the URL named that is not among `jobs`: another user's, deleted, or mistyped."""
    schema_problem: str | None = None
    """The migrations the store's database lacks, and the fix (`upgrade.notice` said so above)."""

    def ref(self, job: Job | None = None) -> queries.JobRef:
        """The cache key of a job's data (the picked job by default)."""
        return queries.job_ref(self.store, job or self.job)


# store


@st.cache_resource(show_spinner=False)
def _shared_store(settings: StoreSettings) -> Store:
    """One store per configuration, shared by every session: SQLite, or Supabase with a service key.

    Keyed on every setting (keys included), so a changed environment opens a new store.
    """
    return settings.open_store()


def open_dashboard_store() -> Store:
    """The store for this browser session; raises `StoreError` (or `ConfigError`) when it cannot open.

    A store that needs a user's sign-in (Supabase with an anon key) is per session, kept in
    `st.session_state`: one person's sign-in must never serve another person's session.
    """
    if SESSION_STORE_KEY in st.session_state:
        return st.session_state[SESSION_STORE_KEY]
    settings = StoreSettings.from_env()
    shared = _shared_store(settings)
    if read_only(shared) is not None and why_read_only(shared.path) is None:  # remounted writable
        _shared_store.clear()
        shared = _shared_store(settings)
    account = sign_in_of(shared)
    if account is None or not account.requires_sign_in:
        return shared
    session_store = settings.open_store()
    browser_session.resume(sign_in_of(session_store))
    st.session_state[SESSION_STORE_KEY] = session_store
    return session_store


def store_unreachable(error: Exception) -> None:
    """The message for a store that cannot be reached; the app keeps running and can try again."""
    st.error(f"The store cannot be reached, so there is nothing to show yet.\n\n{plain(error)}", icon="🔌")
    st.caption(
        "Check PREDICTIONS_DB (SQLite), or SUPABASE_URL and SUPABASE_KEY (Supabase), in the environment."
    )
    if st.button("Try again", key="retry_store"):
        st.rerun()


def sign_in_form(store: Store) -> bool:
    """Email and password for a store that needs a user; True once signed in (or when none is needed).

    Wrong credentials show the store's own message (an `AuthError`) and the form stays.
    """
    account = sign_in_of(store)
    if account is None or not account.requires_sign_in or account.signed_in_email:
        return True
    browser_session.clear_if_ended()
    if problem := st.session_state.pop("sign_out_problem", None):
        st.warning(plain(problem))
    st.subheader("Sign in")
    st.caption(f"{store.description} shows each user their own jobs only.")
    with st.form("sign_in"):
        email = st.text_input("Email", key="sign_in_email")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            account.sign_in(email, password)
        except AuthError as error:
            st.error(f"Sign-in failed: {error}")
            return False
        st.rerun()
    return False


def signed_in_badge(store: Store) -> None:
    """Who is signed in, with a sign-out button, in the sidebar.

    The session lasts across reloads and tabs (`browser_session`). Signing out ends it everywhere
    and drops this session's store, so the next run opens a fresh one that asks again; a session
    ended in another tab is noticed here on the next run, and by a live tab at its next poll.
    """
    account = sign_in_of(store)
    if account is None or not account.signed_in_email or st.session_state.get(SESSION_STORE_KEY) is not store:
        return
    if not account.still_signed_in():
        browser_session.end(account)
        st.session_state.pop(SESSION_STORE_KEY, None)
        store.close()
        st.rerun()
    browser_session.keep(account)
    st.sidebar.text(f"Signed in as {account.signed_in_email}")
    if st.sidebar.button("Sign out", key="sign_out"):
        problem = browser_session.end(account)
        if problem:
            st.session_state["sign_out_problem"] = problem
        st.session_state.pop(SESSION_STORE_KEY, None)
        store.close()
        st.rerun()


# job picker and live polling


def job_picker(store: Store, version: tuple, recent: tuple[Job, ...]) -> tuple[Job | None, tuple[Job, ...]]:
    """The sidebar's job choice, most recent first, running jobs marked; kept in the URL as `?job=`.
    Returns the picked job and the jobs listed (what other pages may offer).

    The picker lists the `PICKER_JOBS` most recent jobs, or those a search finds, and always the picked
    one, read on its own when it is older (the store reads only these). A link with `?job=<id>` opens
    that job. An id this user cannot see (another user's job, a deleted or mistyped one) opens none: the
    picker waits for a choice, and the page says so (`missing_job`) rather than quietly showing another.
    """
    key = queries.store_key(store)
    listed = {job.id: job for job in searched_jobs(store, version, recent)}
    wanted = st.query_params.get("job")
    for job_id in dict.fromkeys((st.session_state.get("job"), wanted)):
        if (
            job_id is not None
            and job_id not in listed
            and (found := queries.find_job(store, key, version, job_id))
        ):
            listed = {job_id: found, **listed}
    if st.session_state.get("job") not in listed:
        first = next(iter(listed), None)
        st.session_state["job"] = None if wanted not in (None, *listed) else wanted or first
    job_id = st.sidebar.selectbox(
        "Job", list(listed), key="job", format_func=lambda i: listed[i].label, placeholder="Pick a job"
    )
    jobs = tuple(listed.values())
    if job_id is None:
        return None, jobs
    st.query_params["job"] = job_id
    return listed[job_id], jobs


SEARCH_FROM_JOBS = 10
"""From this many jobs on, a search box: the picker's own filter sees only labels (name and tags)."""


def searched_jobs(store: Store, version: tuple, recent: tuple[Job, ...]) -> tuple[Job, ...]:
    """The recent jobs; from `SEARCH_FROM_JOBS` on, a search box, and the jobs whose name, id, model or
    a tag holds its text (any case), searched by the store."""
    if len(recent) < SEARCH_FROM_JOBS and not st.session_state.get("job_search"):
        return recent
    text = st.sidebar.text_input("Find a job", key="job_search", placeholder="name, id, model or tag").strip()
    if not text:
        st.sidebar.caption(
            f"The {len(recent):,} most recent jobs are listed; find any by name, id, model or tag."
        )
        return recent
    found = queries.list_jobs(store, queries.store_key(store), version, text)
    count = f"{len(found):,}{'+' if len(found) == queries.PICKER_JOBS else ''}"
    st.sidebar.caption(f"{count} {'job matches' if count == '1' else 'jobs match'}, most recent first.")
    return found


def job_lines(store: Store, job: Job) -> None:
    """The job's status and model under the picker, and why for a job that stopped early. The
    job's kind, adapter and scorer titles come from its config, which comes with its trends (cached per
    job version): the job list carries no config."""
    try:
        config = queries.trends(store, queries.job_ref(store, job)).config
    except StoreError:
        config = {}
    st.sidebar.caption(job_caption(job, config))
    if (model := model_caption(job, config)) is not None:
        st.sidebar.caption(plain(model))
    if job.status == "stopped":
        st.sidebar.warning(plain(stop_text(job, config)), icon=":material/front_hand:")
    missing_notice(job, st.sidebar)


def missing_notice(job: Job, where: Any = st) -> None:
    """An error saying the job lacks rows that were kept nowhere (`Job.rows_missing`), and what to do."""
    if job.rows_missing:
        where.error(plain(missing_text(job.rows_missing)), icon=":material/report:")


def missing_text(rows: int) -> str:
    """'3 rows missing: the outbox could not be written. ...' for `Job.rows_missing`."""
    return (
        f"{rows:,} row{'s' if rows != 1 else ''} missing: the outbox could not be written. "
        "The store did not take them and the training machine's local outbox could not keep them, so "
        "this job's charts and tables lack them; the training log names each one in an ERROR line. "
        "Make the outbox's folder writable (or point PREDICTIONS_SPOOL at a writable file) so that "
        "later runs keep what the store cannot take."
    )


def model_caption(job: Job, config: dict | None = None) -> str | None:
    """The model the job trains, with the adapter recorded for a PEFT run (type and rank)."""
    if not job.model:
        return None
    adapter = (config or {}).get("adapter")
    if not isinstance(adapter, dict):
        return f"Model: {job.model}"
    rank = f", rank {adapter['rank']}" if adapter.get("rank") is not None else ""
    return f"Model: {job.model} · {adapter.get('type') or 'PEFT'} adapter{rank}"


def stop_text(job: Job, config: dict | None = None) -> str:
    """Why a job stopped early, in words: another callback's reason as the Trainer told it, or the
    early-stop rule's (the metric's title from the job's `config`, its trends', when given; else its
    name)."""
    reason = job.stop_reason
    if isinstance(reason, TrainerStop):
        return reason.describe()
    if reason is None:
        return "Stopped by the early-stop rule."
    scorers = config.get("scorers") if isinstance(config, dict) else None
    described = scorers.get(reason.metric) if isinstance(scorers, dict) else None
    title = described.get("title") if isinstance(described, dict) else None
    builtin = REGISTRY.get(reason.metric)
    return reason.describe(builtin.label if builtin else title)


def job_caption(job: Job, config: dict | None = None) -> str:
    """Status and progress of a job in one line (numbers only: names are shown by widgets, as text)."""
    if not job.round_count and (config or {}).get("kind") == "rollouts":
        return f"{job.status} · RL rollouts: see the Rollouts page"
    if not job.round_count or job.latest_step is None:  # not "0 rounds · no rounds"
        return (
            f"{job.status} · no rounds" if job.status in FINAL_STATUSES else f"{job.status} · no rounds yet"
        )
    rounds = f"{job.round_count} round{'s' if job.round_count != 1 else ''}"
    return f"{job.status} · {rounds} · epoch {job.latest_epoch} · step {job.latest_step}"


def no_rounds_text(job: Job, config: dict | None = None) -> str:
    """Why a page has no rounds to show: an RL job writes rollouts instead; an ended job will write
    none (not "yet", which promised rounds a finished job never writes)."""
    if (config or {}).get("kind") == "rollouts":
        return "This is an RL job: it records rollouts, not prediction rounds; they are on the Rollouts page."
    if job.status in FINAL_STATUSES:
        return f"This job has {job.status} without a prediction round."
    return "This job has no prediction rounds yet. They appear here as the callback writes them."


def live_controls(job: Job | None) -> int | None:
    """The live toggle and its interval; the interval in seconds while live, else None.

    Shown whatever job is picked: a finished job writes no more rounds, but a new run can start at any
    time and should appear without a reload.
    """
    if job is not None and job.status in FINAL_STATUSES:
        st.sidebar.caption(f"This job has {job.status}; new runs still appear while Live is on.")
    live = st.sidebar.toggle("Live", value=True, key="live", help="Poll the store for new jobs and rounds")
    interval = st.sidebar.select_slider(
        "Refresh every",
        REFRESH_CHOICES_S,
        value=queries.DEFAULT_REFRESH_S,
        key="refresh_s",
        format_func=lambda s: f"{s} s",
        disabled=not live,
    )
    return interval if live else None


def live_watch(view: View, version: tuple, interval: int | None) -> None:
    """Poll the store's `jobs_version` every `interval` seconds in a fragment; rerun the app when it
    differs from `version`, the one this run's job list was read at.

    Only this fragment polls, and a quiet poll reads three index values: the job list (and every page's
    data, keyed by each job's version) is read again only after something changed.
    """
    if interval is None:
        with st.sidebar:
            silence_warning(view.store, view.job)
        return

    def poll() -> None:
        if session_ended_elsewhere(view.store):  # signed out in another tab: this one stops showing data
            st.rerun(scope="app")
        try:
            changed = queries.jobs_version(view.store) != version
        except StoreError as error:
            st.caption(f"⚠️ Last poll failed: {error}")
            return
        if changed:
            st.rerun(scope="app")
        st.caption(f"Live · checked at {datetime.now():%H:%M:%S}")
        silence_warning(view.store, view.job)

    with st.sidebar:
        st.fragment(poll, run_every=interval)()


def session_ended_elsewhere(store: Store) -> bool:
    """Whether this tab's signed-in session was ended elsewhere (a sign-out in another tab): the access
    token it holds would still read until it expires, so a live tab asks Supabase Auth at every poll."""
    account = sign_in_of(store)
    if account is None or not account.signed_in_email:
        return False
    try:
        return not account.still_signed_in()
    except StoreError:  # Auth unreachable: the poll's own read says so, and the next poll asks again
        return False


KNOWN_JOBS_KEY = "_predictions_known_jobs"
NEW_JOBS_KEY = "_predictions_new_jobs"


def new_job_notice(jobs: tuple[Job, ...]) -> None:
    """A sidebar notice for each job that appeared since this session's last run, with a button to open
    it: a run started while another job is picked must not go unseen.

    `jobs` are the most recent ones (a new run is the most recent of all); every id seen stays known,
    so an older job coming back into the recent list is no new run."""
    known = st.session_state.get(KNOWN_JOBS_KEY)
    ids = {job.id for job in jobs}
    st.session_state[KNOWN_JOBS_KEY] = ids | (known or set())
    new = [i for i in st.session_state.get(NEW_JOBS_KEY, []) if i in ids]
    if known is not None:
        new += [job.id for job in jobs if job.id not in known and job.id not in new]
    st.session_state[NEW_JOBS_KEY] = new
    by_id = {job.id: job for job in jobs}
    for job_id in new:
        with st.sidebar.container(border=True):
            st.caption("New run")
            st.text(by_id[job_id].name or job_id)
            st.button("Open it", key=f"open_new_{job_id}", on_click=_open_new_job, args=(job_id,))


def _open_new_job(job_id: str) -> None:
    st.session_state["job"] = job_id
    st.session_state[NEW_JOBS_KEY] = [i for i in st.session_state.get(NEW_JOBS_KEY, []) if i != job_id]


def silence_warning(store: Store, job: Job | None) -> None:
    """Warn when the picked job says 'running' but has written nothing for much longer than usual.

    Drawn where it is called: the live poll's fragment, or the sidebar when live is off.
    """
    now = datetime.now(UTC)
    since = analysis.quiet_for(job, now) if job is not None else None
    if since is None or since <= analysis.SILENCE_MIN:
        return  # the common case, decided without reading the job's rounds
    try:
        round_times = store.rounds(job.id)["created_at"].dropna().tolist()
    except StoreError:
        return
    found = analysis.silence(job, round_times, now)
    if found is not None:
        st.warning(
            f"No new round for {analysis.human_duration(found.since)}; rounds usually came every "
            f"{analysis.human_duration(found.usual_gap)}. Is the training still running? A script that "
            "caught an error from train() and went on, or a process killed outright, leaves its job marked "
            "running.",
            icon=":material/pause_circle:",
        )


def store_badge(store: Store) -> None:
    """Which store the dashboard reads, at the bottom of the sidebar, and whether it is read-only here."""
    st.sidebar.caption("Store")
    st.sidebar.text(store.description)
    if (why := read_only(store)) is not None:
        st.sidebar.caption(
            f":material/lock: Read-only here: {plain(why)}. Everything can be read; tags, notes and "
            "deleting are off."
        )


def read_only(store: Store) -> str | None:
    """Why the store cannot be written from here (a SQLite file on a read-only mount), or None."""
    return store.read_only if isinstance(store, SQLiteStore) else None


# states the pages share


def missing_job(job_id: str) -> None:
    """A job the URL names that this user cannot see; whose it is, or whether it exists, is not said."""
    st.warning("No such job, or not yours:", icon=":material/search_off:")
    st.text(job_id)
    st.caption("Pick one of your jobs in the sidebar.")


def no_jobs(store: Store) -> None:
    """The empty state: no job has written a round yet, and how to add the callback."""
    st.info("No jobs yet. Add the callback to a Trainer and every prediction round shows up here.", icon="🌱")
    st.code(CALLBACK_SNIPPET, language="python")
    st.caption("The callback writes to the same store this dashboard reads:")
    st.text(store.description)


def round_label(epoch: int, step: int) -> str:
    return f"epoch {epoch} · step {step}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&])")


def plain(text: object) -> str:
    """Untrusted text made literal for Streamlit markdown: every markdown character backslash-escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))
