"""Every page of `app.py` in Streamlit's AppTest, against seeded stores: what is shown, not only that
nothing raised. Runs start at `app.py` and `switch_page` to each page, as a user's clicks would."""

from __future__ import annotations

import html
import json
import os
import random
import re
import sqlite3
import string
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from predictions.dashboard import analysis, charts, palette, queries, router
from predictions.errors import StoreUnavailableError
from predictions.scoring.metrics import score
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery, PredictionRow
from tests import helpers_app
from tests.helpers_app import APP, assert_no_exception
from tests.pg_fixtures import EMAIL_A, PASSWORD, USER_A, USER_B, service_store
from tests.seeding import (
    BIG_JOB,
    COMPARE_JOBS,
    NO_TRUTH_JOB,
    SINGLE_JOB,
    XSS_IMG,
    XSS_JOB,
    XSS_SCRIPT,
    sample_task,
    seed_big,
    seed_compare,
    seed_no_ground_truth,
    seed_single_round,
    write_job,
    write_xss_job,
)

TRENDS, SAMPLES, PREDICTIONS, COMPARE = (
    "pages/trends.py",
    "pages/samples.py",
    "pages/predictions.py",
    "pages/compare.py",
)
PAGES = (TRENDS, SAMPLES, PREDICTIONS, COMPARE)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every kind of job in one file; the 100 x 50 job is written last, so it is the most recent."""
    path = tmp_path_factory.mktemp("dashboard") / "predictions.db"
    store = SQLiteStore(path)
    seed_no_ground_truth(store)
    seed_single_round(store)
    seed_compare(store)
    write_xss_job(store)
    seed_big(store, rounds=100, samples=50)
    store.close()
    return path


@pytest.fixture(scope="module")
def seeded(seeded_db: Path):
    """A second connection to the seeded file: the expected values come straight from the store."""
    store = SQLiteStore(seeded_db)
    yield store
    store.close()


def specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def chart_rows(at: AppTest, index: int) -> pd.DataFrame:
    """The rows of the chart's drawn layer (its last dataset), decoded from the Arrow bytes sent."""
    datasets = at.get("vega_lite_chart")[index].proto.datasets
    return pa.ipc.open_stream(datasets[-1].data.data).read_pandas()


def drawn_layer(spec: dict) -> dict:
    return spec["layer"][-1] if "layer" in spec else spec


def texts(at: AppTest) -> list[str]:
    """Every text a user can read on the page: markdown, code, dataframe cells, and html as it reads
    (tags dropped, entities decoded; a diff read as its new side, without the struck-out text)."""
    out = [el.value for el in (*at.markdown, *at.caption, *at.code, *at.text)]
    for element in at.get("html"):
        new_side = re.sub(r"<del>.*?</del>", "", element.proto.body, flags=re.S)
        out.append(html.unescape(re.sub(r"<[^>]+>", "", new_side)))
    for frame in at.dataframe:
        out += [str(value) for value in frame.value.to_numpy().ravel()]
    return out


# empty store


@pytest.mark.parametrize("page", PAGES)
def test_every_page_of_an_empty_store_shows_how_to_add_the_callback(open_app, tmp_path, page):
    at = open_app(tmp_path / "empty.db", page=page)
    assert "No jobs yet" in at.info[0].value
    assert "callbacks=[PredictionsCallback(eval_samples, num_samples=16)]" in at.code[0].value
    assert not at.get("vega_lite_chart") and not at.sidebar.selectbox


def test_app_tests_share_one_scan_of_the_installed_components(open_app, tmp_path):
    """helpers_app shares Streamlit's scan for installed components between AppTests. This fails once
    Streamlit no longer calls the function replaced, so the replacement cannot outlive its reason."""
    before = helpers_app.installed_components.cache_info()
    open_app(tmp_path / "empty.db")
    open_app(tmp_path / "empty.db")
    after = helpers_app.installed_components.cache_info()
    assert (after.hits + after.misses) - (before.hits + before.misses) == 2
    assert after.misses == 1


# sidebar


def test_job_picker_lists_the_most_recent_first_marks_running_jobs_and_keeps_the_url(
    open_app, seeded_db, seeded
):
    at = open_app(seeded_db)
    picker = at.sidebar.selectbox(key="job")
    jobs = seeded.list_jobs()
    assert picker.options == [job.label for job in jobs]
    assert (picker.value, at.query_params["job"]) == (BIG_JOB, BIG_JOB)
    assert f"● {dict((j.id, j.name) for j in jobs)[SINGLE_JOB]}" in picker.options
    picker.set_value(COMPARE_JOBS[1]).run()
    assert at.query_params["job"] == COMPARE_JOBS[1]
    assert at.caption[0].value == "lr 3e\\-4"  # the page names the picked job, markdown escaped
    assert at.sidebar.toggle(key="live").value is True  # a finished job: new runs still show live
    assert "This job has finished; new runs still appear while Live is on." in [
        caption.value for caption in at.sidebar.caption
    ]
    assert any(f"SQLite at {seeded_db}" == text.value for text in at.sidebar.text)
    picker.set_value(SINGLE_JOB).run()  # a running job is watched live
    assert at.sidebar.toggle(key="live").value is True


def test_a_run_started_while_a_finished_job_is_picked_appears_with_a_notice(open_app, tmp_path):
    db = tmp_path / "new.db"
    store = SQLiteStore(db)
    write_job(store, "done", rounds=2, samples=2, status="finished")
    at = open_app(db, job="done")
    assert not [c for c in at.sidebar.caption if c.value == "New run"]
    store.start_job("fresh", name="**fresh** <b>run</b>")  # what the live poll's rerun then reads
    at.run()
    picker = at.sidebar.selectbox(key="job")
    assert "● **fresh** <b>run</b>" in picker.options and picker.value == "done"
    assert "**fresh** <b>run</b>" in [text.value for text in at.sidebar.text]  # the name as text
    at.sidebar.button(key="open_new_fresh").click().run()
    assert at.sidebar.selectbox(key="job").value == "fresh" and at.query_params["job"] == "fresh"
    assert not [c for c in at.sidebar.caption if c.value == "New run"]


def backdate(db: Path, job_id: str, *, started_hours_ago: float, round_every_minutes: float) -> None:
    """Move a job's start and its rounds into the past, a round every `round_every_minutes`."""
    start = datetime.now(UTC) - timedelta(hours=started_hours_ago)
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE training_jobs SET started_at = ?, updated_at = ? WHERE id = ?",
            (start.isoformat(), start.isoformat(), job_id),
        )
        steps = [
            row[0]
            for row in connection.execute("SELECT step FROM training_rounds WHERE job_id = ?", (job_id,))
        ]
        for number, step in enumerate(sorted(steps), 1):
            written = (start + timedelta(minutes=number * round_every_minutes)).isoformat()
            connection.execute(
                "UPDATE training_rounds SET created_at = ?, updated_at = ? WHERE job_id = ? AND step = ?",
                (written, written, job_id, step),
            )


@pytest.mark.parametrize("live", [True, False])
def test_a_running_job_gone_quiet_is_flagged_and_a_busy_one_is_not(open_app, tmp_path, live):
    db = tmp_path / "quiet.db"
    store = SQLiteStore(db)
    write_job(store, "quiet", rounds=4, samples=2, status="running")
    write_job(store, "busy", rounds=4, samples=2, status="running")
    store.close()
    backdate(db, "quiet", started_hours_ago=3, round_every_minutes=5)  # last round 2 h 40 min ago
    quiet = open_app(db, job="quiet")
    if not live:
        quiet.sidebar.toggle(key="live").set_value(False).run()
    (warning,) = [w.value for w in quiet.sidebar.warning]
    assert warning.startswith("No new round for 2 h 40 min; rounds usually came every 5 min.")
    assert not open_app(db, job="busy").sidebar.warning


def test_a_link_opens_the_job_it_names_and_an_unknown_job_says_so_without_switching(open_app, seeded_db):
    assert open_app(seeded_db, job=COMPARE_JOBS[0]).sidebar.selectbox(key="job").value == COMPARE_JOBS[0]
    at = open_app(seeded_db, job="**someone else's** job")
    assert at.sidebar.selectbox(key="job").value is None
    assert [w.value for w in at.warning] == ["No such job, or not yours:"]
    assert "**someone else's** job" in [text.value for text in at.text]  # shown as text, not markdown
    assert not at.get("vega_lite_chart") and not at.metric
    at.sidebar.selectbox(key="job").set_value(BIG_JOB).run()
    assert at.query_params["job"] == BIG_JOB and not at.warning and at.metric


# trends


def test_trends_headlines_are_the_stores_aggregates(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB)
    trends = seeded.trends(BIG_JOB)
    cer = trends.rounds["avg_char_error_rate"]
    metrics = {metric.label: metric for metric in at.metric}
    assert metrics["CER"].value == f"{cer.iloc[-1]:.3f}"
    assert metrics["CER"].delta == f"{cer.iloc[-1] - cer.iloc[-2]:+.3f}"
    assert metrics["Exact match"].value == f"{trends.rounds['avg_exact_match'].iloc[-1]:.3f}"
    assert metrics["Improvement"].value == f"{trends.overall_improvement:.1f}%"
    velocity = analysis.learning_velocity(trends.rounds)
    assert metrics["Velocity"].value == f"{velocity.change:+.3f}"


def test_an_unchanged_perfect_round_says_so_without_an_arrow(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "flat.db")
    for round_number in (1, 2):
        scores = score("4", "4").as_dict()
        store.write_predictions(
            [PredictionRow("flat", round_number, 10 * round_number, 0, "2+2=", "4", "4", **scores)]
        )
    store.close()
    at = open_app(tmp_path / "flat.db", job="flat")
    metrics = {metric.label: metric for metric in at.metric}
    assert (metrics["CER"].delta, metrics["CER"].color) == ("no change", MetricProto.MetricColor.GRAY)
    assert [header.value for header in at.subheader] == ["Answers in the latest round"]
    assert "matches its ground truth exactly" in at.success[0].value


def test_trends_charts_every_metric_per_round_with_tooltips(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB)
    charts = specs(at)
    assert [spec["title"] for spec in charts] == [
        "Character error rate",
        "Exact match",
        "Length ratio",
        "Word overlap (F1)",
    ]
    band = charts[0]["layer"][0]
    assert (band["mark"]["type"], band["encoding"]["y2"]["field"]) == ("area", "max_char_error_rate")
    for index, spec in enumerate(charts):
        line = drawn_layer(spec)
        assert (line["encoding"]["x"]["field"], line["encoding"]["y"]["field"]) == ("step", "value")
        assert [t["field"] for t in line["encoding"]["tooltip"]][:4] == [
            "epoch",
            "step",
            "value",
            "sample_count",
        ]
        assert len(chart_rows(at, index)) == 100
    rows = chart_rows(at, 0)
    expected = seeded.trends(BIG_JOB).rounds["avg_char_error_rate"]
    assert rows["value"].to_numpy() == pytest.approx(expected.to_numpy())
    assert set(rows["sample_count"]) == {50}


def test_trends_by_epoch_draws_each_epochs_last_round(open_app, seeded_db):
    at = open_app(seeded_db, job=BIG_JOB)
    at.segmented_control(key="trends_x").set_value("epoch").run()
    assert drawn_layer(specs(at)[0])["encoding"]["x"]["field"] == "epoch"
    rows = chart_rows(at, 0)
    assert rows["epoch"].tolist() == list(range(1, 11))
    assert rows["step"].tolist() == [100 * e for e in range(1, 11)]
    assert any("last round" in caption.value for caption in at.caption)


def test_trends_warn_when_the_latest_round_is_clearly_worse_than_the_best(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=COMPARE_JOBS[2])
    found = analysis.regression_warning(seeded.trends(COMPARE_JOBS[2]).rounds)
    (warning,) = at.warning
    assert "worse than the best round" in warning.value
    assert f"checkpoint from step {found.best_step}" in warning.value
    assert "The run has failed" in warning.value and "Consider stopping" not in warning.value  # it ended
    assert not open_app(seeded_db, job=COMPARE_JOBS[1]).warning


def test_trends_of_a_single_round(open_app, seeded_db):
    at = open_app(seeded_db, job=SINGLE_JOB)
    assert any("Only one round so far" in info.value for info in at.info)
    metrics = {metric.label: metric for metric in at.metric}
    assert metrics["CER"].delta == "" and metrics["Improvement"].value == "—"
    assert metrics["Velocity"].value == "—"
    assert [len(chart_rows(at, i)) for i in range(4)] == [1, 1, 1, 1]


# samples


def test_samples_heatmap_lists_and_detail(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB, page=SAMPLES)
    heatmap = specs(at)[0]
    assert heatmap["mark"]["type"] == "rect"
    assert heatmap["params"][0]["select"]["fields"] == ["sample_index"]
    assert at.get("vega_lite_chart")[0].proto.selection_mode == ["sample"]
    rows = chart_rows(at, 0)
    assert (rows["round"].nunique(), rows["sample_index"].nunique()) == (50, 50)  # 100 rounds thinned
    assert any("every 2nd round" in caption.value for caption in at.caption)
    summary = analysis.sample_summary(seeded.sample_summary(BIG_JOB))
    lists = [frame.value for frame in at.dataframe]
    assert lists[0]["sample_index"].tolist() == analysis.most_improved(summary)["sample_index"].tolist()
    assert lists[1]["sample_index"].tolist() == analysis.still_failing(summary)["sample_index"].tolist()
    assert lists[2]["sample_index"].tolist() == analysis.regressed(summary)["sample_index"].tolist()


def test_a_click_on_the_heatmap_opens_that_sample_and_outlines_its_row(open_app, seeded_db):
    """The heatmap's `sample` selection, as the browser sends a click, read by `analysis.selected_sample`."""
    at = open_app(seeded_db, job=BIG_JOB, page=SAMPLES)
    helpers_app.click_chart(at, "heatmap", {"sample": [{"sample_index": 7, "round": 3}]})
    assert_no_exception(at)
    assert at.query_params["sample"] == "7" and at.subheader[-1].value == "Sample 7"
    assert at.selectbox(key="sample").value == 7
    stroke = specs(at)[0]["encoding"]["stroke"]
    assert stroke["condition"]["test"] == "(datum.sample_index === 7)"  # the clicked row outlined


def test_picking_a_sample_shows_its_prompt_truth_and_every_round(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB, page=SAMPLES)
    at.selectbox(key="sample").set_value(7).run()
    assert_no_exception(at)
    assert at.query_params["sample"] == "7"
    assert at.subheader[-1].value == "Sample 7"
    prompt, truth = sample_task(7)
    assert [code.value for code in at.code][:2] == [prompt, truth]
    assert at.code[2].value == seeded.sample_history(BIG_JOB, 7)["prediction"].iloc[-1]
    (history,) = at.get("html")
    assert history.proto.body.count("<tr>") == 101  # a header and 100 rounds
    assert drawn_layer(specs(at)[1])["encoding"]["color"]["field"] == "series"


def test_a_sample_of_megabyte_answers_opens_with_its_diffs_cut(open_app, tmp_path):
    """Uncut, these diffs would take minutes; the cut diff is timed in bench/bench_diff.py. Scores are
    written as given: scoring two unrelated megabyte texts is slow too, but that is the callback's cost,
    not a page's."""
    rng = random.Random(0)
    truth = "".join(rng.choices(string.ascii_lowercase + " ", k=1_000_000))
    store = SQLiteStore(tmp_path / "long.db")
    for step in (10, 20, 30):
        answer = "".join(rng.choices(string.ascii_lowercase + " ", k=1_000_000))
        scores = {"exact_match": 0.0, "char_error_rate": 0.9, "length_ratio": 1.0, "word_overlap": 0.0}
        store.write_predictions(
            [PredictionRow("long", 1, step, 0, "Write a long essay.", answer, truth, **scores)]
        )
    store.close()
    at = open_app(tmp_path / "long.db", job="long", page=SAMPLES)
    (history,) = at.get("html")
    assert history.proto.body.count("the diff covers the first 3,000 characters of 1,000,000") == 5
    assert len(history.proto.body) < 100_000


def test_a_link_opens_the_sample_it_names(open_app, seeded_db):
    at = open_app(seeded_db, job=BIG_JOB, page=SAMPLES, sample="12")
    assert at.selectbox(key="sample").value == 12


# predictions table


def test_predictions_table_filters_sorts_and_pages(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB, page=PREDICTIONS)
    assert len(at.dataframe[0].value) == 50
    assert at.caption[1].value.startswith("5000 matching rows")
    at.selectbox(key="table_round").set_value(1000).run()
    at.selectbox(key="table_sort").set_value("char_error_rate").run()
    assert at.toggle(key="table_desc").value is True
    table = at.dataframe[0].value
    assert set(table["step"]) == {1000}
    assert table["char_error_rate"].is_monotonic_decreasing
    at.toggle(key="table_wrong").set_value(True).run()
    wrong = seeded.predictions_page(BIG_JOB, PageQuery(step=1000, wrong_only=True)).total_count
    assert at.caption[1].value.startswith(f"{wrong} matching rows")
    assert not at.dataframe[0].value["exact_match"].any()


def test_predictions_table_pages_and_shows_scores_as_bars(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=BIG_JOB, page=PREDICTIONS)
    at.selectbox(key="table_limit").set_value(25).run()
    (pager,) = at.get("pagination")
    assert pager.num_pages == 200
    pager.set_value(3).run()
    page = seeded.predictions_page(BIG_JOB, PageQuery(limit=25, offset=50))
    table = at.dataframe[0].value
    assert table["sample_index"].tolist() == page.rows["sample_index"].tolist()
    assert table["step"].tolist() == page.rows["step"].tolist()
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["char_error_rate"]["type_config"]["type"] == "progress"
    assert columns["word_overlap"]["type_config"]["type"] == "progress"
    assert columns["exact_match"]["type_config"]["type"] == "checkbox"
    assert at.get("download_button")[0].proto.label == "Download the whole job as CSV"


# compare


def test_compare_overlays_the_chosen_jobs(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=COMPARE_JOBS[0], page=COMPARE)
    picked = [COMPARE_JOBS[2], COMPARE_JOBS[0], COMPARE_JOBS[1]]  # not in name order
    at.multiselect(key="compare_jobs").set_value(picked).run()
    spec = specs(at)[0]
    assert spec["encoding"]["color"]["field"] == "job"
    in_order = ["lr 1e-3", "lr 1e-4", "lr 3e-4"]
    assert spec["encoding"]["color"]["scale"]["domain"] == in_order  # colours and legend as picked
    assert spec["encoding"]["color"]["sort"] == in_order
    assert spec["encoding"]["color"]["scale"]["range"] == list(palette.SERIES[:3])
    assert spec["height"] == charts.compare_height(3)  # the plot keeps its height above 3 legend rows
    rows = chart_rows(at, 0)
    assert sorted(rows["job"].unique()) == ["lr 1e-3", "lr 1e-4", "lr 3e-4"]
    assert len(rows) == 36
    summary = at.dataframe[0].value
    assert summary["job"].tolist() == in_order
    cer = seeded.trends(COMPARE_JOBS[2]).rounds["avg_char_error_rate"]
    row = summary.set_index("job").loc["lr 1e-3"]
    assert (row["first"], row["best"], row["latest"]) == pytest.approx((cer.iloc[0], cer.min(), cer.iloc[-1]))
    at.segmented_control(key="compare_metric").set_value("word_overlap").run()
    assert specs(at)[0]["title"] == "Word overlap (F1)"
    overlap = seeded.trends(COMPARE_JOBS[2]).rounds["avg_word_overlap"]
    row = at.dataframe[0].value.set_index("job").loc["lr 1e-3"]  # the summary follows the metric shown
    assert (row["best"], row["latest"]) == pytest.approx((overlap.max(), overlap.iloc[-1]))
    header = json.loads(at.dataframe[0].proto.columns)["latest"]["label"]
    assert header == "Latest Word overlap" or "overlap" in header.lower()


def test_compare_defaults_to_the_picked_job_and_the_next_most_recent(open_app, seeded_db, seeded):
    at = open_app(seeded_db, job=COMPARE_JOBS[0], page=COMPARE)
    others = [job.id for job in seeded.list_jobs() if job.id != COMPARE_JOBS[0]]
    assert at.multiselect(key="compare_jobs").value == [COMPARE_JOBS[0], *others[:2]]


def test_one_sample_across_jobs_offers_the_tracked_samples_and_starts_at_a_shared_one(open_app, tmp_path):
    """Jobs that track other samples (num_samples of a larger set, as a search's trials or two datasets):
    the picker offers what they track, starting at one every chosen job has; sample 0 is in none."""
    db, tracked = tmp_path / "p.db", {"trial-0": (1, 5, 6), "trial-1": (5, 6, 9)}
    store = SQLiteStore(db)
    for job_id, samples in tracked.items():
        store.start_job(job_id, name=job_id)
        store.write_predictions(
            [
                PredictionRow(
                    job_id, 1, 10, i, f"p{i}", f"{job_id} a{i}", f"a{i}", **score(f"a{i}", f"a{i}").as_dict()
                )
                for i in samples
            ]
        )
    store.close()
    at = open_app(db, job="trial-0", page=COMPARE)
    at.multiselect(key="compare_jobs").set_value(list(tracked)).run()
    picker = at.selectbox(key="compare_sample")
    assert picker.options == ["1 (not in every chosen job)", "5", "6", "9 (not in every chosen job)"]
    assert picker.value == 5
    answers = at.dataframe[-1].value
    assert answers["prediction"].tolist() == ["trial-0 a5", "trial-1 a5"]
    picker.set_value(9).run()
    assert at.dataframe[-1].value["prediction"].tolist() == ["trial-1 a9"]


# a job without ground truth


def test_a_job_without_ground_truth_on_every_page(open_app, seeded_db):
    at = open_app(seeded_db, job=NO_TRUTH_JOB)
    assert "no ground truth" in at.info[0].value and not at.metric and not at.get("vega_lite_chart")
    assert len(at.dataframe[0].value) == 5  # the latest round's answers, capped at five
    at.switch_page(SAMPLES).run()
    assert_no_exception(at)
    assert "No ground truth" in at.info[0].value and not at.get("vega_lite_chart")
    assert at.get("html")[0].proto.body.count("<tr>") == 4
    at.switch_page(PREDICTIONS).run()
    assert at.caption[1].value.startswith("18 matching rows")
    at.toggle(key="table_wrong").set_value(True).run()
    assert any("never counted as wrong" in caption.value for caption in at.caption)
    at.switch_page(COMPARE).run()
    at.multiselect(key="compare_jobs").set_value([NO_TRUTH_JOB]).run()
    assert_no_exception(at)
    assert "nothing to overlay" in at.info[0].value


# untrusted model output


@pytest.mark.parametrize("page", PAGES)
def test_html_in_predictions_is_shown_as_text_on_every_page(open_app, seeded_db, page):
    at = open_app(seeded_db, job=XSS_JOB, page=page)
    shown = texts(at)
    assert any(XSS_IMG in text for text in shown)  # the latest answer, literally
    if page in (SAMPLES, PREDICTIONS):
        assert any(XSS_SCRIPT in text for text in shown)
    for element in at.get("html"):
        assert "<script" not in element.proto.body and "<img" not in element.proto.body
    for element in (*at.markdown, *at.caption):
        assert not element.proto.allow_html
    assert all("<b>" not in caption.value for caption in at.caption)  # the job's name, escaped


# the store: unreachable, failing, signed in


def test_an_unreachable_store_shows_a_message_and_the_app_recovers(
    open_app, tmp_path, seeded_db, monkeypatch
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    at = open_app(blocker / "predictions.db")
    assert "cannot be reached" in at.error[0].value
    monkeypatch.setenv("PREDICTIONS_DB", str(seeded_db))
    at.button(key="retry_store").click().run()
    assert_no_exception(at)
    assert not at.error and at.sidebar.selectbox(key="job").value == BIG_JOB


def test_a_store_failing_mid_session_shows_a_message(open_app, seeded_db, monkeypatch):
    at = open_app(seeded_db, job=COMPARE_JOBS[1])

    def locked(self, *args, **options):
        raise StoreUnavailableError(f"{self.description}: database is locked")

    monkeypatch.setattr(SQLiteStore, "sample_summary", locked)
    queries.sample_summary.clear()  # read again, not answered from what an earlier test's page cached
    at.switch_page(SAMPLES).run()
    assert_no_exception(at)
    assert "database is locked" in at.error[0].value
    assert at.sidebar.selectbox(key="job").value == COMPARE_JOBS[1]


@pytest.fixture
def two_users_jobs(postgrest):
    """A Supabase API (the PostgREST-protocol test server) holding one job for each of two users."""
    for user_id, job_id in ((USER_A, "ada-run"), (USER_B, "bob-run")):
        writer = service_store(postgrest, user_id)
        writer.start_job(job_id, name=job_id.title())
        writer.write_predictions([PredictionRow(job_id, 1, 10, 0, "prompt", XSS_SCRIPT, "answer")])
        writer.close()
    return postgrest


def test_supabase_sign_in_is_per_session(two_users_jobs, monkeypatch):
    monkeypatch.setenv("SUPABASE_URL", two_users_jobs.url)
    monkeypatch.setenv("SUPABASE_KEY", two_users_jobs.anon_key)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert at.text_input(key="sign_in_email") and not at.sidebar.selectbox
    at.text_input(key="sign_in_email").input(EMAIL_A)
    at.text_input(key="sign_in_password").input("wrong password")
    at.button[0].click().run()
    assert "Sign-in failed" in at.error[0].value and "Invalid login credentials" in at.error[0].value
    at.text_input(key="sign_in_password").input(PASSWORD)
    at.button[0].click().run()
    assert_no_exception(at)
    assert at.sidebar.selectbox(key="job").options == ["● Ada-Run"]  # this user's jobs only
    assert any(text.value == f"Signed in as {EMAIL_A}" for text in at.sidebar.text)
    other = AppTest.from_file(APP, default_timeout=60).run()  # another browser session
    assert other.text_input(key="sign_in_email") and not other.sidebar.selectbox
    at.sidebar.button(key="sign_out").click().run()
    assert at.text_input(key="sign_in_email") and not at.sidebar.selectbox


# performance: a job of 100 rounds x 100 samples


def test_trends_and_samples_of_a_100_by_100_job_render_every_round_and_a_page_of_samples(open_app, tmp_path):
    """Their speed is measured by bench/bench_pages.py and bench_scale.py (docs/benchmarks.md), not by a
    timed test. The heatmap shows 50 samples a page, worst latest CER first; every sample is on a page."""
    store = SQLiteStore(tmp_path / "big.db")
    seed_big(store, rounds=100, samples=101)
    at = open_app(tmp_path / "big.db", job=BIG_JOB)
    assert len(chart_rows(at, 0)) == 100
    at.switch_page(SAMPLES).run()
    assert_no_exception(at)
    rows = chart_rows(at, 0)
    assert (rows["round"].nunique(), rows["sample_index"].nunique()) == (50, 50)
    latest = store.sample_matrix(BIG_JOB).sort_values("step").groupby("sample_index")["value"].last()
    worst = latest.sort_index().sort_values(ascending=False, kind="stable").index.tolist()
    assert rows.sort_values("rank")["sample_index"].drop_duplicates().tolist() == worst[:50]
    assert specs(at)[0]["encoding"]["y"]["sort"]["field"] == "rank"
    page = at.selectbox(key="heatmap_page")
    assert page.options == ["1 to 50 of 101", "51 to 100 of 101", "101 to 101 of 101"]
    page.set_value(2).run()
    assert chart_rows(at, 0)["sample_index"].unique().tolist() == worst[100:]
    at.radio(key="heatmap_order").set_value("By sample").run()
    assert sorted(chart_rows(at, 0)["sample_index"].unique().tolist()) == [100]  # page 3 by index
    store.close()


def test_the_dashboard_never_imports_torch_transformers_or_altair(seeded_db):
    """Nor Altair: the charts are plain Vega-Lite specs, so no rerun pays for Altair's schema validation."""
    script = "; ".join(
        [
            "import sys",
            "from streamlit.testing.v1 import AppTest",
            f"at = AppTest.from_file({APP!r}, default_timeout=60).run()",
            "assert at.get('vega_lite_chart')",  # charts drawn
            *[f"at.switch_page({page!r}).run()" for page in PAGES[1:]],
            "assert not at.exception",
            "print(sorted(name for name in ('torch', 'transformers', 'altair') if name in sys.modules))",
        ]
    )
    env = {**os.environ, "PREDICTIONS_DB": str(seeded_db), "SUPABASE_URL": "", "SUPABASE_KEY": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_every_page_is_in_pages_named_after_its_url_path_and_routed():
    """The design card's `pages/`: every file there is a page of the router, named after its URL path.

    A process's first runs take Streamlit's legacy folder router, which finds a page by its file name:
    a file named otherwise would answer "Page not found" there. Trends answers at `/` and `/trends`.
    """
    root = Path(APP).parent
    paths = [Path(path) for path, *_ in router.PAGES]
    assert sorted((root / "pages").glob("*.py")) == sorted(root / path for path in paths)
    assert [(path.parent.name, path.stem) for path in paths] == [("pages", url) for *_, url in router.PAGES]
    assert router.PAGES[0][0] == TRENDS and set(PAGES) <= {path for path, *_ in router.PAGES}


def test_a_page_run_without_app_py_routes_itself(open_app, seeded_db):
    """Every AppTest run starts on Streamlit's legacy `pages/` router (AppTest resets it each run), so
    switching to a page runs the page file first, without app.py: it routes itself, sidebar and all."""
    at = open_app(seeded_db, job=BIG_JOB, page=SAMPLES)
    assert [title.value for title in at.main.title] == ["Samples"]  # the page ran once, with its view
    assert [title.value for title in at.sidebar.title] == ["Predictions Monitor"]
    assert at.sidebar.selectbox(key="job").value == BIG_JOB


def test_no_bare_string_in_the_app_or_a_page_would_be_written_onto_the_page():
    """Streamlit's magic writes every bare expression of a script; only the module docstring is exempt."""
    import ast

    root = Path(APP).parent
    for path in [Path(APP), *(root / page for page, *_ in router.PAGES)]:
        body = ast.parse(path.read_text()).body
        bare = [n.lineno for n in body[1:] if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)]
        assert bare == [], f"{path.name}: bare strings at lines {bare}"


def test_worst_answers_list_only_wrong_ones(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "worst.db")
    pairs = [("Paris", "Paris"), ("Rome", "Rome"), ("Lyon", "Paris"), ("Oslo", "Oslo"), ("Bern", "Rome")]
    for step in (1, 2):
        store.write_predictions(
            [
                PredictionRow("w", 1, step, i, f"q{i}", p, t, **score(p, t).as_dict())
                for i, (p, t) in enumerate(pairs)
            ]
        )
    store.close()
    at = open_app(tmp_path / "worst.db", job="w")
    assert "Worst answers in the latest round" in [header.value for header in at.subheader]
    assert at.dataframe[-1].value["prediction"].tolist() == ["Lyon", "Bern"]  # no right answer listed


def test_a_long_job_list_is_searched_by_name_id_or_model(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "many.db")
    for i in range(205):
        store.start_job(f"run-{i:03d}", name=f"sweep {i}", model="gpt-small" if i != 3 else "llama-tiny")
    store.close()
    at = open_app(tmp_path / "many.db")
    picker = at.sidebar.selectbox(key="job")
    assert len(picker.options) == 200 and picker.value == "run-204"  # the most recent first
    captions = [c.value for c in at.sidebar.caption]
    assert "The 200 most recent jobs are listed; find any by name, id, model or tag." in captions
    at.sidebar.text_input(key="job_search").input("LLAMA").run()
    assert at.sidebar.selectbox(key="job").options == ["● sweep 204", "● sweep 3"]  # the picked one stays
    assert "1 job matches, most recent first." in [c.value for c in at.sidebar.caption]
    at.sidebar.selectbox(key="job").set_value("run-003").run()
    assert at.query_params["job"] == "run-003"
    at.sidebar.text_input(key="job_search").input("run-00").run()
    assert len(at.sidebar.selectbox(key="job").options) == 10
    at.sidebar.text_input(key="job_search").input("").run()  # the picked job, older than the 200 listed
    picker = at.sidebar.selectbox(key="job")
    assert len(picker.options) == 201 and picker.value == "run-003" and at.query_params["job"] == "run-003"


def test_a_link_to_an_old_job_opens_it_among_the_recent_ones(open_app, tmp_path):
    store = SQLiteStore(tmp_path / "old.db")
    for i in range(203):
        store.start_job(f"run-{i:03d}", name=f"sweep {i}")
    store.write_predictions([PredictionRow("run-000", 1, 1, 0, "q", "a", "a", **score("a", "a").as_dict())])
    store.start_job("run-999")  # the old job's round is no longer among the 200 most recent
    store.close()
    at = open_app(tmp_path / "old.db", job="run-001")
    assert at.sidebar.selectbox(key="job").value == "run-001" and not at.exception
    assert "No such job, or not yours:" not in [w.value for w in at.warning]
