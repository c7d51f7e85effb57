"""What SupabaseStore adds to the Store contract: keys and owners, request shapes, row caps, errors."""

from __future__ import annotations

import math
import ssl

import psycopg
import pytest

from predictions.errors import AuthError, ConfigError, StoreError, StoreUnavailableError
from predictions.store import open_store
from predictions.store.records import PredictionRow
from predictions.store.supabase import SupabaseStore
from predictions.store.supabase_rest import key_role, tls_context
from tests.pg_fixtures import USER_A, acting_as, service_store, user_store
from tests.postgrest_server import api_key, sign


def row(job_id="job", step=1, sample_index=0, prediction="x", **scores) -> PredictionRow:
    return PredictionRow(
        job_id, max(1, step // 10), step, sample_index, f"p{sample_index}", prediction, **scores
    )


def test_stores_open_on_one_shared_tls_context_that_verifies_certificates(monkeypatch):
    """Building a TLS context reads every authority's certificate (45 ms of CPU): a store opened builds
    none of its own, for REST or Auth, and the one shared still checks certificates and host names."""
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    built = []
    real = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(a) or real(*a, **k))
    for key in (api_key("anon"), api_key("service_role"), "sb_publishable_abc123"):
        SupabaseStore("https://xyz.supabase.co", key).close()
    assert built == []


@pytest.mark.parametrize(
    ("key", "role"),
    [
        (api_key("anon"), "anon"),
        (api_key("service_role"), "service_role"),
        ("sb_publishable_abc123", "anon"),
        ("sb_secret_abc123", "service_role"),
    ],
)
def test_the_key_tells_whether_a_sign_in_is_needed(key, role):
    assert key_role(key) == role
    store = SupabaseStore("https://xyz.supabase.co/", key)
    assert store.requires_sign_in is (role == "anon")
    assert store.description == "Supabase at https://xyz.supabase.co"
    store.close()


@pytest.mark.parametrize("key", ["not-a-key", "a.b.c", sign({"sub": USER_A}, "secret-" * 6)])
def test_a_key_that_is_no_supabase_key_is_a_config_error(key):
    with pytest.raises(ConfigError, match="SUPABASE_KEY is not a Supabase API key"):
        SupabaseStore("https://xyz.supabase.co", key)


def test_a_url_supabase_py_refuses_is_a_config_error():
    with pytest.raises(ConfigError, match=r"SUPABASE_URL='xyz\.supabase\.co'"):
        SupabaseStore("xyz.supabase.co", api_key("anon"))


def test_the_service_role_key_writes_for_the_configured_user_only(postgrest, monkeypatch):
    monkeypatch.delenv("PREDICTIONS_USER_ID", raising=False)
    ownerless = service_store(postgrest, user_id=None)
    with pytest.raises(ConfigError, match="PREDICTIONS_USER_ID is not set"):
        ownerless.write_predictions([row()])
    with pytest.raises(ConfigError, match="PREDICTIONS_USER_ID is not set"):
        ownerless.start_job("job")
    ownerless.close()
    monkeypatch.setenv("PREDICTIONS_USER_ID", USER_A)
    from_env = service_store(postgrest, user_id=None)
    from_env.write_predictions([row()])
    from_env.close()
    reader = user_store(postgrest, USER_A)
    assert reader.predictions_page("job").total_count == 1
    reader.close()
    monkeypatch.setenv("PREDICTIONS_USER_ID", "ada")
    with pytest.raises(ConfigError, match="PREDICTIONS_USER_ID='ada' is not a user id"):
        service_store(postgrest, user_id=None)


def test_open_store_returns_supabase_when_url_and_key_are_set(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPABASE_URL", "https://xyz.supabase.co")
    monkeypatch.setenv("SUPABASE_KEY", api_key("anon"))
    store = open_store(env_file=tmp_path / "absent.env")
    assert isinstance(store, SupabaseStore)
    assert (store.description, store.requires_sign_in) == ("Supabase at https://xyz.supabase.co", True)
    store.close()


def test_duplicate_keys_in_one_write_keep_the_last(store):
    store.write_predictions([row(prediction="first"), row(sample_index=1), row(prediction="last")])
    page = store.predictions_page("job")
    assert page.total_count == 2
    assert page.rows["prediction"].tolist() == ["last", "x"]


def test_a_round_is_one_request_and_a_huge_write_is_chunked(postgrest):
    store = user_store(postgrest, USER_A, chunk_rows=7)
    postgrest.api.calls.clear()
    store.write_predictions([row(sample_index=i) for i in range(7)])
    store.write_predictions([row(step=2, sample_index=i) for i in range(20)])
    assert postgrest.api.calls == [("POST", "/rest/v1/training_predictions")] * 4
    assert store.predictions_page("job").total_count == 27
    store.close()


def test_a_100_round_by_50_sample_matrix_arrives_whole_past_the_row_cap(postgrest):
    writer = service_store(postgrest, USER_A)
    for step in range(1, 101):
        writer.write_predictions([row(step=step, sample_index=i, char_error_rate=i / 50) for i in range(50)])
    writer.close()
    reader = user_store(postgrest, USER_A)
    matrix = reader.sample_matrix("job")
    assert len(matrix) == 5000
    assert matrix[["sample_index", "step"]].drop_duplicates().shape[0] == 5000
    assert matrix.loc[(matrix.sample_index == 49) & (matrix.step == 100), "value"].item() == 49 / 50
    assert reader.trends("job").rounds.shape[0] == 100
    assert reader.rounds("job")["sample_count"].tolist() == [50] * 100
    reader.close()


def test_the_test_server_enforces_the_row_cap_on_row_sets(postgrest, supabase_database):
    """So the matrix test above could fail: a function returning rows is cut to 1000 like PostgREST."""
    with psycopg.connect(supabase_database) as conn:
        conn.execute(
            "create function public.test_numbers(p_count integer) returns setof integer"
            " language sql as 'select generate_series(1, p_count)'"
        )
    try:
        store = service_store(postgrest, USER_A)
        assert len(store._rest.client.rpc("test_numbers", {"p_count": 5000}).execute().data) == 1000
        store.close()
    finally:
        with psycopg.connect(supabase_database) as conn:
            conn.execute("drop function public.test_numbers(integer)")


def test_non_finite_scores_are_stored_as_null(store):
    store.write_predictions([row(char_error_rate=math.nan, length_ratio=math.inf, exact_match=0.0)])
    history = store.sample_history("job", 0)
    assert history["char_error_rate"].isna().all() and history["exact_match"].tolist() == [0.0]


def test_timestamps_are_iso_utc_text(postgrest):
    store = user_store(postgrest, USER_A)
    store.start_job("job")
    store.write_predictions([row()])
    store.finish_job("job")
    (job,) = store.list_jobs()
    for stamp in (job.started_at, job.updated_at, job.finished_at, store.rounds("job")["created_at"][0]):
        assert stamp.endswith("+00:00") and "T" in stamp, stamp
    store.close()


def test_postgrest_errors_keep_message_code_hint_and_details(postgrest):
    store = user_store(postgrest, USER_A)
    with pytest.raises(StoreError, match="metric='prompt' is not a metric") as raised:
        store._rpc("sample_matrix", p_job_id="job", p_metric="prompt")
    assert type(raised.value) is StoreError
    assert (raised.value.code, raised.value.hint) == (
        "22023",
        "valid: exact_match, char_error_rate, length_ratio, word_overlap or a user scorer's name",
    )
    with pytest.raises(
        StoreError, match=r"limit=5000 is out of range \(code 22023\); hint: valid: 1 to 1000"
    ):
        store._rpc("page", p_job_id="job", p_limit=5000)
    with pytest.raises(StoreError, match="PGRST202"):
        store._rpc("no_such_function")
    store.close()


def test_a_server_that_cannot_be_reached_is_unavailable_not_broken():
    store = SupabaseStore("http://127.0.0.1:9", api_key("service_role"), user_id=USER_A, timeout_s=2)
    with pytest.raises(StoreUnavailableError, match=r"Supabase at http://127\.0\.0\.1:9 cannot be reached"):
        store.write_predictions([row()])
    with pytest.raises(StoreUnavailableError):
        store.list_jobs()
    store.close()


def test_a_key_signed_by_another_project_is_an_auth_error(postgrest):
    store = SupabaseStore(
        postgrest.url, api_key("service_role", "another-project-secret-" * 2), user_id=USER_A
    )
    with pytest.raises(AuthError, match="Invalid API key"):
        store.start_job("job")
    store.close()


def test_every_read_is_bounded_however_much_is_stored(postgrest, supabase_database):
    with acting_as(supabase_database, "service_role") as conn:
        conn.execute(
            "insert into training_jobs (id, user_id)"
            " select 'job-' || n, %s from generate_series(1, 1005) as n",
            (USER_A,),
        )
        conn.execute(
            "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
            " prediction) select 'long', %s, 1, n, 0, 'p', 'x' from generate_series(1, 10005) as n",
            (USER_A,),
        )
        bounded = {
            "jobs": "jsonb_array_length(predictions_list_jobs(5000))",
            "trends": "jsonb_array_length(predictions_trends('long') -> 'rounds')",
            "rounds": "jsonb_array_length(predictions_rounds('long'))",
            "history": "jsonb_array_length(predictions_sample_history('long', 0))",
        }
        counts = {name: conn.execute(f"select {call}").fetchone()[0] for name, call in bounded.items()}
    assert counts == {"jobs": 1000, "trends": 10000, "rounds": 10000, "history": 10000}
