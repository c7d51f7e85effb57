"""Row-level security and the API surface, through real Postgres: in SQL, over HTTP and in the store.

Two users each own one job, written by a training machine with the service-role key. User A must
neither read nor write user B's rows through any table or any function; anon must get nothing.
"""

from __future__ import annotations

import json
import time

import httpx
import psycopg
import pytest

from predictions.errors import AuthError, StoreError
from predictions.store.records import PageQuery, PredictionRow, RolloutRow, SeriesPoint
from predictions.store.supabase import SupabaseStore
from tests.helpers import prediction_rows
from tests.pg_fixtures import USER_A, USER_B, acting_as, service_store, user_store
from tests.postgrest_server import TEST_JWT_SECRET, sign


def rows(job_id: str, *, steps=(1, 2), samples=3, prediction="answer") -> list[PredictionRow]:
    return prediction_rows(
        job_id, steps=steps, samples=samples, prompt=f"{job_id} prompt ", prediction=prediction, truth="truth"
    )


def rollouts(job_id: str) -> list[RolloutRow]:
    """Two completions of one prompt (`q0`) at step 1."""
    return [
        RolloutRow(
            job_id=job_id,
            step=1,
            generation=0,
            group_index=0,
            completion_index=i,
            prompt_id="q0",
            prompt=f"{job_id} prompt",
            completion=f"{job_id} completion {i}",
            rewards={"accuracy": float(i)},
            reward=float(i),
            completion_tokens=3,
            truncated=False,
        )
        for i in range(2)
    ]


@pytest.fixture
def two_users(postgrest):
    """User A owns "a-job", user B owns "b-job"; both written with the service-role key."""
    for user_id, job_id in ((USER_A, "a-job"), (USER_B, "b-job")):
        store = service_store(postgrest, user_id)
        store.start_job(job_id, name=f"{job_id} name")
        store.write_predictions(rows(job_id))
        store.write_rollouts(rollouts(job_id))
        store.write_series([SeriesPoint(job_id, step, "loss", 1.0 / step) for step in (1, 2)])
        store.close()
    return postgrest


def call_rpc(server, token: str, function: str, arguments: dict) -> httpx.Response:
    headers = {"apikey": server.anon_key, "Authorization": f"Bearer {token}"}
    return server.request("POST", f"/rest/v1/rpc/{function}", json=arguments, headers=headers)


def dashboard_functions(conninfo: str) -> dict[str, list[str]]:
    """Every function the API exposes for the dashboard, with its argument names, from the catalog."""
    with psycopg.connect(conninfo) as conn:
        found = conn.execute(
            "select proname, coalesce(proargnames, '{}') from pg_proc"
            " where pronamespace = 'public'::regnamespace and proname like 'predictions!_%' escape '!'"
        ).fetchall()
    writes = ("predictions_delete_job", "predictions_set_job_details")
    no_rows = ("predictions_schema_version",)  # reads no table: anyone may ask (test_schema_version.py)
    return {name: arguments for name, arguments in found if name not in (*writes, *no_rows)}


def arguments_for(names: list[str], job_id: str) -> dict:
    given = {"p_job_id": job_id, "p_sample_index": 0, "p_field": "category", "p_prompt_id": "q0", "p_step": 1}
    return {name: given[name] for name in names if name in given}


def test_a_user_sees_only_their_own_jobs_and_rows_through_the_store(two_users):
    store = user_store(two_users, USER_A)
    assert [job.id for job in store.list_jobs()] == ["a-job"]
    assert store.trends("a-job").rounds["sample_count"].tolist() == [3, 3]
    assert store.trends("b-job").rounds.empty
    assert store.rounds("b-job").empty
    assert store.sample_history("b-job", 0).empty
    assert store.sample_matrix("b-job").empty
    assert store.predictions_page("b-job").total_count == 0
    store.close()


def test_no_dashboard_function_returns_another_users_rows(two_users, supabase_database):
    token_a, token_b = two_users.access_token(USER_A), two_users.access_token(USER_B)
    functions = dashboard_functions(supabase_database)
    assert len(functions) == 15
    for function, names in functions.items():
        as_a = call_rpc(two_users, token_a, function, arguments_for(names, "b-job"))
        as_a_missing = call_rpc(two_users, token_a, function, arguments_for(names, "no-such-job"))
        as_b = call_rpc(two_users, token_b, function, arguments_for(names, "b-job"))
        assert as_a.status_code == as_b.status_code == 200, (function, as_a.text)
        assert as_a.json() == as_a_missing.json(), function
        assert as_b.json() != as_a.json(), f"{function} shows B nothing of B's own: the test cannot fail"
        assert "b-job" not in as_a.text and USER_B not in as_a.text, function


def test_in_sql_a_user_reaches_only_their_own_rows_of_every_table(two_users, supabase_database):
    with acting_as(supabase_database, "authenticated", USER_A) as conn:
        for table in ("training_predictions", "training_jobs", "training_rollouts"):
            owners = conn.execute(f"select distinct user_id::text from {table}").fetchall()
            assert owners == [(USER_A,)], table
            assert (
                conn.execute(f"update {table} set user_id = user_id where user_id = %s", (USER_B,)).rowcount
                == 0
            )
            assert conn.execute(f"delete from {table} where user_id = %s", (USER_B,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(
                "insert into training_predictions (job_id, user_id, epoch, step, sample_index, prompt,"
                " prediction) values ('planted', %s, 1, 1, 0, 'p', 'x')",
                (USER_B,),
            )
        for table, key in (("training_jobs", "id"), ("training_predictions", "job_id")):
            conn.execute(f"update {table} set user_id = %s where {key} = 'a-job'", (USER_B,))
            owners = conn.execute(f"select distinct user_id::text from {table} where {key} = 'a-job'")
            assert owners.fetchall() == [(USER_A,)], "an owner cannot give a row away either"
    with acting_as(supabase_database, "service_role") as conn:
        assert conn.execute("select count(*) from training_predictions").fetchone() == (12,)


def test_a_user_cannot_write_rows_or_jobs_owned_by_another_user(two_users):
    store = user_store(two_users, USER_A)
    with pytest.raises(AuthError, match="row-level security"):
        store.write_predictions([PredictionRow("new-job", 1, 1, 0, "p", "x", user_id=USER_B)])
    with pytest.raises(AuthError, match="row-level security"):
        store.start_job("b-job", name="planted", user_id=USER_B)
    store.finish_job("b-job", status="failed")  # A has no "b-job": nothing happens
    store.close()
    owner_view = user_store(two_users, USER_B)
    (job,) = owner_view.list_jobs()
    assert (job.id, job.name, job.status) == ("b-job", "b-job name", "running")
    owner_view.close()


def test_the_same_job_id_for_two_users_is_two_isolated_jobs(postgrest):
    for user_id, answer in ((USER_A, "ada's answer"), (USER_B, "bob's answer")):
        store = user_store(postgrest, user_id)
        store.start_job("run-1", name=f"run-1 of {user_id[0]}")
        store.write_predictions(rows("run-1", steps=(1,) if user_id == USER_A else (1, 2), prediction=answer))
        store.close()
    expected = {USER_A: ("ada's answer", [1], "run-1 of a"), USER_B: ("bob's answer", [1, 2], "run-1 of b")}
    for user_id, (answer, steps, name) in expected.items():
        store = user_store(postgrest, user_id)
        (job,) = store.list_jobs()
        assert (job.id, job.user_id, job.name, job.round_count) == ("run-1", user_id, name, len(steps))
        assert store.trends("run-1").rounds["step"].tolist() == steps
        assert store.rounds("run-1")["sample_count"].tolist() == [3] * len(steps)
        assert set(store.sample_history("run-1", 0)["prediction"]) == {answer}
        assert set(store.predictions_page("run-1").rows["prediction"]) == {answer}
        assert len(store.sample_matrix("run-1")) == 3 * len(steps)
        store.close()


def b_view(server) -> dict:
    """Everything user B's dashboard shows of "b-job"."""
    store = user_store(server, USER_B)
    (job,) = store.list_jobs()
    view = {
        "job": (job.id, job.name, job.status, job.round_count, job.latest_step),
        "trends": store.trends("b-job").rounds.to_dict("list"),
        "history": store.sample_history("b-job", 0).drop(columns="created_at").to_dict("list"),
        "page": store.predictions_page("b-job").rows.drop(columns="created_at").to_dict("list"),
    }
    store.close()
    return view


def test_writing_under_another_users_job_id_before_and_after_them_changes_nothing_they_see(postgrest):
    intruder = user_store(postgrest, USER_A)
    intruder.start_job("b-job", name="planted before")
    intruder.write_predictions(rows("b-job", steps=(1, 5), prediction="planted before"))
    owner = service_store(postgrest, USER_B)
    owner.start_job("b-job", name="b-job name")
    owner.write_predictions(rows("b-job", prediction="bob's secret answer"))
    owner.close()
    before = b_view(postgrest)
    intruder.start_job("b-job", name="planted after")
    intruder.write_predictions(rows("b-job", steps=(1, 2, 3), prediction="planted after"))
    intruder.finish_job("b-job", status="failed")
    assert b_view(postgrest) == before
    assert before["job"] == ("b-job", "b-job name", "running", 2, 2)
    assert set(before["page"]["prediction"]) == {"bob's secret answer"}
    seen_by_a = intruder.predictions_page("b-job", PageQuery(limit=1000)).rows
    assert set(seen_by_a["prediction"]) == {"planted before", "planted after"}
    assert [job.name for job in intruder.list_jobs()] == ["planted after"]
    intruder.close()


def test_a_job_is_deleted_by_its_owner_only(two_users, supabase_database):
    for user_id in (USER_B, None):
        other = user_store(two_users, USER_A) if user_id else SupabaseStore(two_users.url, two_users.anon_key)
        with pytest.raises(StoreError):
            other.delete_job("b-job")
        other.close()
    intruder = service_store(two_users, USER_A)
    with pytest.raises(StoreError, match="no job 'b-job' of yours to delete"):
        intruder.delete_job("b-job")
    intruder.close()
    with (
        acting_as(supabase_database, "authenticated", USER_A) as conn,
        pytest.raises(psycopg.errors.NoDataFound),
    ):
        conn.execute("select predictions_delete_job('b-job', %s)", (USER_B,))
    assert b_view(two_users)["job"] == ("b-job", "b-job name", "running", 2, 2)
    owner = user_store(two_users, USER_B)
    owner.delete_job("b-job")
    assert owner.list_jobs() == []
    assert owner.predictions_page("b-job").total_count == 0
    owner.close()
    with acting_as(supabase_database, "service_role") as conn:
        assert conn.execute("select count(*) from training_rounds where job_id = 'b-job'").fetchone() == (0,)
        assert conn.execute("select count(*) from training_predictions").fetchone() == (6,)
        for table in ("training_rollouts", "training_rollout_steps"):  # B's went with B's job, A's stay
            owners = conn.execute(f"select user_id::text, count(*) from {table} group by 1").fetchall()
            assert owners == [(USER_A, 2 if table == "training_rollouts" else 1)], table


def test_anon_reads_and_writes_nothing(two_users, supabase_database):
    anon = SupabaseStore(two_users.url, two_users.anon_key)
    assert anon.requires_sign_in
    with pytest.raises(AuthError, match="sign in first"):
        anon.list_jobs()
    with pytest.raises(AuthError, match="sign in first"):
        anon.write_predictions(rows("anon-job"))
    anon.close()
    for function, names in dashboard_functions(supabase_database).items():
        response = call_rpc(two_users, two_users.anon_key, function, arguments_for(names, "b-job"))
        assert response.status_code == 401, function
        assert response.json()["code"] == "42501"
    with acting_as(supabase_database, "anon") as conn:
        for table in ("training_predictions", "training_jobs"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"select count(*) from {table}")


def test_the_service_role_sees_every_user_or_the_one_it_names(two_users):
    store = service_store(two_users, user_id=None)
    jobs = {job.id: job.user_id for job in store.list_jobs()}
    assert jobs == {"a-job": USER_A, "b-job": USER_B}
    store.close()
    store = service_store(two_users, USER_A)
    assert [job.id for job in store.list_jobs()] == ["a-job"]
    assert store.predictions_page("b-job").total_count == 0
    store.close()


@pytest.mark.parametrize(
    "job_id",
    [
        "run'; DROP TABLE training_predictions; --",
        'a,b.(c):d"e\\f',
        "eq.1&id=eq.x#frag + %20 %s ? * ;",
        "ünï 🙂\ttab $$ $1 {}",
    ],
)
def test_job_ids_full_of_metacharacters_are_stored_and_read_back_verbatim(postgrest, job_id):
    writer = service_store(postgrest, USER_A)
    writer.start_job(job_id, name=job_id)
    writer.write_predictions(rows(job_id, steps=(1,), samples=2))
    writer.finish_job(job_id)
    writer.close()
    reader = user_store(postgrest, USER_A)
    (job,) = reader.list_jobs()
    assert (job.id, job.name, job.status, job.round_count) == (job_id, job_id, "finished", 1)
    assert reader.sample_history(job_id, 1)["job_id"].tolist() == [job_id]
    assert reader.predictions_page(job_id).total_count == 2
    assert len(reader.sample_matrix(job_id)) == 2
    reader.close()


@pytest.mark.parametrize(
    ("method", "path", "prefer"),
    [
        ("GET", "/rest/v1/training_predictions?select=*", None),
        ("GET", "/rest/v1/training_jobs", None),
        ("DELETE", "/rest/v1/training_predictions?job_id=eq.a-job", None),
        (
            "POST",
            "/rest/v1/training_predictions?on_conflict=job_id,step,sample_index",
            "return=representation",
        ),
        ("POST", "/rest/v1/training_predictions", "return=minimal"),
        ("PATCH", "/rest/v1/training_jobs?id=neq.a-job", "return=minimal"),
        ("GET", "/rest/v1/rpc/predictions_list_jobs", None),
        ("POST", "/rest/v1/rpc/predictions_list_jobs?select=id", None),
        ("POST", "/rest/v1/auth_users", "return=minimal"),
        ("GET", "/storage/v1/bucket", None),
        ("POST", "/auth/v1/token?grant_type=id_token", None),
    ],
)
def test_calls_the_store_never_makes_get_501(postgrest, method, path, prefer):
    headers = {"apikey": postgrest.service_key, "Authorization": f"Bearer {postgrest.service_key}"}
    if prefer:
        headers["Prefer"] = prefer
    response = postgrest.request(method, path, headers=headers, json={"status": "failed"})
    assert response.status_code == 501, response.text
    assert response.json()["code"] == "PGRST501"


def test_forged_and_expired_tokens_are_refused(postgrest):
    now = int(time.time())
    forged = sign({"role": "service_role", "iat": now, "exp": now + 60}, "not-the-" + TEST_JWT_SECRET)
    expired = sign({"role": "authenticated", "sub": USER_A, "iat": now - 120, "exp": now - 60})
    for token, code in ((forged, "PGRST301"), (expired, "PGRST303")):
        response = call_rpc(postgrest, token, "predictions_list_jobs", {})
        assert (response.status_code, response.json()["code"]) == (401, code)
    store = SupabaseStore(postgrest.url, postgrest.anon_key, access_token=expired)
    with pytest.raises(AuthError, match="JWT expired"):
        store.list_jobs()
    store.close()
    assert json.loads(call_rpc(postgrest, postgrest.service_key, "predictions_list_jobs", {}).text) == []


def test_a_machine_configured_for_another_user_cannot_take_over_a_job(two_users):
    intruder = service_store(two_users, USER_B)
    intruder.start_job("a-job", name="renamed")
    intruder.write_predictions(rows("a-job", steps=(1,), samples=1, prediction="rewritten"))
    assert {job.id for job in intruder.list_jobs()} == {"a-job", "b-job"}
    assert intruder.sample_history("a-job", 0)["prediction"].tolist() == ["rewritten"]
    intruder.close()
    owner = user_store(two_users, USER_A)
    (job,) = owner.list_jobs()
    assert (job.id, job.user_id, job.name) == ("a-job", USER_A, "a-job name")
    assert owner.sample_history("a-job", 0)["prediction"].tolist() == ["answer", "answer"]
    owner.close()
