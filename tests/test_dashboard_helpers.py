"""The dashboard's pure helpers on plain frames: headlines, the early warning, velocity, sample lists,
heatmap thinning, character diffs (escaped), the CSV export, and markdown escaping."""

from __future__ import annotations

import html
import io
import math
import random
import re
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from predictions.dashboard import analysis, csv_export, diff, widgets
from predictions.scoring.metrics import REGISTRY
from predictions.store.frames import MATRIX_COLUMNS, TREND_COLUMNS, custom_metric
from predictions.store.records import Job, Trends
from tests.seeding import BIG_JOB, XSS_IMG, XSS_SCRIPT, seed_big


def rounds_frame(
    cers: list[float | None], *, rounds_per_epoch: int = 1, steps_per_round: int = 10
) -> pd.DataFrame:
    """A trends frame with the given average CERs (None: an unscored round)."""
    n = len(cers)
    frame = pd.DataFrame(
        {
            "epoch": [r // rounds_per_epoch + 1 for r in range(n)],
            "step": [(r + 1) * steps_per_round for r in range(n)],
            "sample_count": [4] * n,
            "scored_count": [0 if c is None else 4 for c in cers],
            "avg_exact_match": [None if c is None else float(c == 0) for c in cers],
            "avg_char_error_rate": cers,
            "avg_length_ratio": [None if c is None else 1.0 for c in cers],
            "avg_word_overlap": [None if c is None else 1 - c for c in cers],
            "min_char_error_rate": cers,
            "max_char_error_rate": cers,
        }
    )
    return frame.astype({c: "float64" for c in TREND_COLUMNS if c.startswith(("avg_", "min_", "max_"))})


def matrix_frame(values: dict[int, list[float | None]]) -> pd.DataFrame:
    """Long-form CER matrix: sample index -> CER per round (steps 10, 20, ...)."""
    records = [
        (sample, 1, (r + 1) * 10, value) for sample, row in values.items() for r, value in enumerate(row)
    ]
    return pd.DataFrame.from_records(records, columns=list(MATRIX_COLUMNS)).astype({"value": "float64"})


# headlines


def test_latest_and_delta_skip_unscored_rounds():
    rounds = rounds_frame([0.8, 0.5, None])
    assert analysis.latest_and_delta(rounds, "avg_char_error_rate") == (0.5, pytest.approx(-0.3))
    assert analysis.latest_and_delta(rounds_frame([0.4]), "avg_char_error_rate") == (0.4, None)
    assert analysis.latest_and_delta(rounds_frame([None, None]), "avg_char_error_rate") == (None, None)


def test_last_round_per_epoch_keeps_the_epochs_final_round():
    rounds = rounds_frame([0.9, 0.8, 0.7, 0.6, 0.5], rounds_per_epoch=2)
    ends = analysis.last_round_per_epoch(rounds)
    assert ends["step"].tolist() == [20, 40, 50]
    assert ends["avg_char_error_rate"].tolist() == [0.8, 0.6, 0.5]


# the early warning


def test_regression_warning_fires_when_the_latest_round_is_clearly_worse():
    found = analysis.regression_warning(rounds_frame([0.8, 0.2, 0.25, 0.40]))
    assert found is not None
    assert (found.best_step, found.latest_step) == (20, 40)
    assert found.worse_by == pytest.approx(0.2)


@pytest.mark.parametrize(
    "cers",
    [
        [0.8, 0.5, 0.3],  # improving
        [0.8, 0.2, 0.21],  # noise: 0.01 worse
        [0.010, 0.005, 0.020],  # tiny CERs: 0.015 worse, under the absolute floor
        [0.5],  # one round
        [None, None],  # nothing scored
    ],
)
def test_regression_warning_stays_quiet_for_noise_and_progress(cers):
    assert analysis.regression_warning(rounds_frame(cers)) is None


def test_the_warning_and_the_best_round_follow_a_higher_is_better_metric_and_the_jobs_stop_metric():
    """Word overlap (1 - CER here) falls from 0.8 to 0.4: worse in its own direction, best at step 20."""
    rounds = rounds_frame([0.8, 0.2, 0.25, 0.6])
    overlap = REGISTRY["word_overlap"]
    found = analysis.regression_warning(rounds, overlap)
    assert (found.metric, found.best_step, found.best_value, found.latest_value) == (overlap, 20, 0.8, 0.4)
    assert found.worse_by == pytest.approx(0.4)
    assert analysis.regression_warning(rounds_frame([0.8, 0.2, 0.1]), overlap) is None  # getting better
    assert int(analysis.best_round(rounds, overlap)["step"]) == 20
    scorer = custom_metric("a_share", {"title": "A share", "higher_is_better": True})
    trends = Trends(
        "j", rounds.assign(avg_a_share=[0.1, 0.2, np.nan, 0.3]), None, (*REGISTRY.values(), scorer)
    )
    assert analysis.watched_metric(trends) == REGISTRY["char_error_rate"]  # no rule: the CER
    watched = replace(trends, config={"stop_after_regressions": 2, "stop_metric": "a_share"})
    assert analysis.watched_metric(watched) == scorer
    unscored = replace(watched, rounds=rounds.assign(avg_a_share=np.nan))
    assert analysis.watched_metric(unscored) == REGISTRY["char_error_rate"]  # no values to judge by


# learning velocity


def test_learning_velocity_is_the_cer_slope_per_100_steps_over_the_last_rounds():
    cers = [0.9, 0.9, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # the last five fall 0.1 a round of 10 steps
    velocity = analysis.learning_velocity(rounds_frame(cers))
    assert velocity.unit == "100 steps"
    assert velocity.rounds == analysis.VELOCITY_WINDOW
    assert velocity.change == pytest.approx(-1.0)


def test_learning_velocity_keeps_one_unit_as_epochs_end():
    """Within the first epoch and after several, the same unit: it does not switch mid-run."""
    cers = [0.9 - 0.05 * r for r in range(8)]  # 0.05 a round of 10 steps, 4 rounds an epoch
    within = analysis.learning_velocity(rounds_frame(cers[:3], rounds_per_epoch=4))
    later = analysis.learning_velocity(rounds_frame(cers, rounds_per_epoch=4))
    assert (within.unit, within.change) == ("100 steps", pytest.approx(-0.5))
    assert (later.unit, later.change) == ("100 steps", pytest.approx(-0.5))
    assert analysis.learning_velocity(rounds_frame([0.9])) is None


# sample lists


SAMPLES = {
    0: [0.9, 0.5, 0.1],  # improved
    1: [0.8, 0.7, 0.75],  # still failing: never right
    2: [0.6, 0.0, 0.4],  # regressed: right in round 2, wrong now
    3: [0.0, 0.0, 0.0],  # always right
    4: [None, None, None],  # unscored
}


def test_sample_summary_has_one_row_per_scored_sample():
    summary = analysis.sample_summary(analysis.matrix_summary(matrix_frame(SAMPLES)))
    assert summary["sample_index"].tolist() == [0, 1, 2, 3]
    row = summary.set_index("sample_index").loc[2]
    assert (row["first_cer"], row["best_cer"], row["latest_cer"], row["last_right_step"]) == (
        0.6,
        0.0,
        0.4,
        20,
    )
    assert math.isnan(summary.set_index("sample_index").loc[1, "last_right_step"])


def test_most_improved_still_failing_and_regressed():
    summary = analysis.sample_summary(analysis.matrix_summary(matrix_frame(SAMPLES)))
    assert analysis.most_improved(summary)["sample_index"].tolist() == [0, 2, 1]
    assert analysis.still_failing(summary)["sample_index"].tolist() == [1]
    assert analysis.regressed(summary)["sample_index"].tolist() == [2]
    regressed = summary.set_index("sample_index").loc[2]  # 0.6, 0.0, 0.4: judged against 0.0, not 0.6
    assert (regressed["best_earlier_cer"], regressed["latest_cer"]) == (0.0, 0.4)


def test_sample_lists_on_a_seeded_job_agree_with_a_direct_computation(sqlite_store):
    seed_big(sqlite_store, rounds=20, samples=30)
    matrix = sqlite_store.sample_matrix(BIG_JOB)
    wide = matrix.pivot(index="sample_index", columns="step", values="value")
    summary = analysis.sample_summary(sqlite_store.sample_summary(BIG_JOB))
    expected_regressed = {int(i) for i in wide.index if (wide.loc[i] == 0).any() and wide.loc[i].iloc[-1] > 0}
    assert set(analysis.regressed(summary, n=100)["sample_index"]) == expected_regressed
    expected_failing = {
        int(i)
        for i in wide.index
        if (wide.loc[i] > 0).all() and wide.loc[i].iloc[-1] >= analysis.STILL_FAILING_CER
    }
    assert set(analysis.still_failing(summary, n=100)["sample_index"]) == expected_failing
    assert expected_regressed and expected_failing  # the seed has both kinds


# heatmap


def test_the_heatmap_draws_every_kth_round_back_from_the_latest_numbered_among_all():
    matrix = matrix_frame({s: [0.5] * 120 for s in range(3)})
    drawn, stride = analysis.drawn_steps(matrix["step"], max_rounds=50)
    assert stride == 3 and len(drawn) == 40 and drawn[-1] == 1200 and drawn[0] == 30
    frame = analysis.heatmap_frame(matrix[matrix["step"].isin(drawn)], matrix["step"])
    assert frame["round"].nunique() == 40
    assert frame["round"].max() == 120 and frame["step"].max() == 1200 and frame["round"].min() == 3
    assert len(frame) == 3 * 40


def test_heatmap_frame_numbers_rounds_from_one_when_short():
    matrix = matrix_frame({0: [0.1, 0.2], 1: [0.3, 0.4]})
    assert analysis.drawn_steps(matrix["step"]) == ([10, 20], 1)
    frame = analysis.heatmap_frame(matrix, matrix["step"])
    assert sorted(frame["round"].unique().tolist()) == [1, 2]


def test_samples_worst_first_orders_by_the_latest_value_with_unscored_last():
    summary = analysis.matrix_summary(
        matrix_frame({0: [0.1, 0.2], 1: [0.9, 0.0], 2: [None, None], 3: [0.5, 0.2]})
    )
    assert analysis.samples_worst_first(summary) == [0, 3, 1, 2]  # ties by index
    assert analysis.samples_worst_first(summary, lower_is_better=False) == [1, 0, 3, 2]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"selection": {"sample": [{"sample_index": 7}]}}, 7),
        ({"selection": {"sample": []}}, None),
        ({"selection": {}}, None),
        (None, None),
    ],
)
def test_selected_sample_reads_the_chart_selection(event, expected):
    assert analysis.selected_sample(event) == expected


# diffs


def test_diff_text_marks_removed_and_added_characters():
    assert diff.diff_text("Paris", "Pxris") == "P[-a-]{+x+}ris"
    assert diff.diff_text("merci", "merci beaucoup") == "merci{+ beaucoup+}"
    assert diff.diff_text("abc", "") == "[-abc-]"
    assert diff.diff_text("same", "same") == "same"


def test_diff_folds_short_matches_between_edits():
    assert diff.diff_text("the red house", "la maison rouge") == "[-the red hous-]{+la maison roug+}e"


def sides(rendered: str) -> tuple[str, str]:
    """The old and the new text a rendered diff stands for: without `<ins>` or `<del>` runs, unescaped."""
    body = re.sub(r'^<span class="pm-diff">|</span>$', "", rendered)
    old = re.sub(r"<ins>.*?</ins>", "", body).replace("<del>", "").replace("</del>", "")
    new = re.sub(r"<del>.*?</del>", "", body).replace("<ins>", "").replace("</ins>", "")
    return html.unescape(old), html.unescape(new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("hello <world>", XSS_SCRIPT),
        (XSS_SCRIPT, XSS_IMG),
        ("a & b", "a &amp; b"),
        ("", XSS_IMG),
        ("Paris", "Pxris"),
    ],
)
def test_diff_html_escapes_both_texts_and_loses_no_character(old, new):
    rendered = diff.diff_html(old, new)
    tags = set(re.findall(r"</?([a-z]+)", rendered))
    assert tags <= {"span", "ins", "del"}
    assert sides(rendered) == (old, new)


def test_history_html_has_a_row_per_round_and_escapes_predictions():
    history = pd.DataFrame(
        {
            "epoch": [1, 2],
            "step": [10, 20],
            "prediction": [XSS_SCRIPT, XSS_IMG],
            "ground_truth": ["hi", "hi"],
            "exact_match": [0.0, 0.0],
            "char_error_rate": [1.0, 1.0],
            "length_ratio": [12.5, 14.0],
            "word_overlap": [0.0, 0.0],
        }
    )
    rendered = diff.history_html(history)
    assert rendered.count("<tr>") == 3  # header and two rounds
    assert "<script" not in rendered and "<img" not in rendered
    unscored = diff.history_html(history.assign(ground_truth=None, char_error_rate=np.nan))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in unscored and "—" in unscored


def megabyte_text(seed: int) -> str:
    """A million characters no other seed's text resembles: the worst case of an edit script."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_lowercase + " <>&", k=1_000_000))


def test_a_diff_of_megabyte_texts_is_cut_with_a_note():
    """Only the cut is diffed, which keeps it fast: the time is bench/bench_diff.py's figure."""
    old, new = megabyte_text(1), megabyte_text(2)
    rendered = diff.diff_html(old, new)
    body, note = rendered.rsplit('<span class="pm-cut">', 1)
    assert "the diff covers the first 3,000 characters of 1,000,000" in note
    assert sides(body + "</span>") == (old[: diff.DIFF_LIMIT], new[: diff.DIFF_LIMIT])
    assert diff.diff_text(old, new).endswith(
        "[… cut: the diff covers the first 3,000 characters of 1,000,000]"
    )
    assert diff.cut_note("short", "texts") is None


def test_a_history_of_megabyte_answers_is_cut_and_bounded():
    rounds = 10
    history = pd.DataFrame(
        {
            "epoch": range(1, rounds + 1),
            "step": range(10, 10 * rounds + 1, 10),
            "prediction": [megabyte_text(seed)[: 1_000_000 - seed] for seed in range(rounds)],
            "ground_truth": [megabyte_text(99)] * rounds,
            "exact_match": [0.0] * rounds,
            "char_error_rate": [1.0] * rounds,
            "length_ratio": [1.0] * rounds,
            "word_overlap": [0.0] * rounds,
        }
    )
    rendered = diff.history_html(history)
    assert rendered.count("… cut") == 2 * rounds - 1  # vs the truth every round, vs the previous after one
    assert len(rendered) < 2 * rounds * 2 * diff.DIFF_LIMIT * 6  # bounded, whatever the texts' length
    unscored = diff.history_html(history.head(1).assign(ground_truth=None))
    assert "… cut after 3,000 characters of 1,000,000" in unscored


# CSV export and escaping


def test_job_csv_pages_through_every_row(sqlite_store, monkeypatch):
    seed_big(sqlite_store, rounds=7, samples=30)
    monkeypatch.setattr(csv_export, "CSV_PAGE_ROWS", 50)  # 210 rows: five requests
    frame = pd.read_csv(io.StringIO(csv_export.job_csv(sqlite_store, BIG_JOB)))
    assert len(frame) == 210
    assert not frame.duplicated(["step", "sample_index"]).any()
    assert {"prompt", "prediction", "char_error_rate"} <= set(frame.columns)


def test_job_csv_of_an_unknown_job_is_only_the_header(sqlite_store):
    assert csv_export.job_csv(sqlite_store, "nope").strip().split(",")[:3] == ["job_id", "epoch", "step"]


def test_plain_escapes_markdown_and_html():
    assert widgets.plain("<b>x</b> *y* [z](u) :smile:") == (
        r"\<b\>x\<\/b\> \*y\* \[z\]\(u\) \:smile\:".replace(r"\/", "/")
    )


# a running job gone quiet

START = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def running_job(round_minutes: list[int], status: str = "running") -> tuple[Job, list[str]]:
    """A job started at START whose rounds were written `round_minutes` after it."""
    times = [(START + timedelta(minutes=m)).isoformat() for m in round_minutes]
    last = times[-1] if times else START.isoformat()
    return Job("job", status=status, started_at=START.isoformat(), last_active=last), times


def test_a_running_job_is_silent_after_three_of_its_usual_gaps_and_ten_minutes():
    job, times = running_job([2, 4, 6, 8])  # a round every 2 minutes, the last at 9:08
    assert analysis.silence(job, times, START + timedelta(minutes=17)) is None  # 9 min: under 10
    found = analysis.silence(job, times, START + timedelta(minutes=20))
    assert found == analysis.Silence(since=timedelta(minutes=12), usual_gap=timedelta(minutes=2))


def test_a_slow_run_is_judged_by_its_own_pace():
    job, times = running_job([180, 360])  # three-hour epochs
    assert analysis.silence(job, times, START + timedelta(minutes=360 + 120)) is None
    found = analysis.silence(job, times, START + timedelta(minutes=360 + 600))
    assert found is not None and found.usual_gap == timedelta(hours=3)


def test_finished_jobs_and_jobs_without_a_pace_are_never_silent():
    later = START + timedelta(days=2)
    assert analysis.silence(running_job([2, 4], status="finished")[0], [], later) is None
    assert analysis.silence(*running_job([]), later) is None  # started, no round yet: no pace to judge


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(40, "40 s"), (60, "1 min"), (12 * 60 + 5, "12 min"), (7200, "2 h"), (7500, "2 h 5 min")],
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert analysis.human_duration(timedelta(seconds=seconds)) == text


NOW = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "text"),
    [
        (None, ""),
        ("2026-12-06T20:59:40+00:00", "just now"),
        ("2026-12-06T20:48:00.123456+00:00", "11 min ago"),
        ("2026-12-06T17:30:00+00:00", "3 h 30 min ago"),
        ("2026-12-06T19:00:00", "2 h ago"),  # a naive time is UTC, as SQLite stores it
        ("2026-11-30T08:05:00+01:00", "30 Nov 2026, 07:05 UTC"),
        ("2026-12-07T09:00:00+00:00", "7 Dec 2026, 09:00 UTC"),  # a clock ahead is not 'ago'
    ],
)
def test_times_read_as_people_read_them(stamp, text):
    assert analysis.human_time(stamp, NOW) == text


def test_the_keys_table_shows_no_raw_time_and_no_none():
    from predictions.dashboard.forms import KEY_COLUMNS, KEY_WIDTHS, key_rows
    from predictions.store.ingest_keys import IngestKey

    keys = [
        IngestKey("1", "gpu-box", "pk_ab12", "2026-12-06T20:50:00+00:00", "2026-12-06T20:58:30+00:00"),
        IngestKey(
            "2", "old <b>box</b>", "pk_cd34", "2026-11-01T10:00:00+00:00", None, "2026-12-01T12:00:00+00:00"
        ),
    ]
    rows = key_rows(keys, NOW)
    assert list(rows.columns) == list(KEY_COLUMNS.values()) == list(KEY_WIDTHS)
    assert rows.to_dict("records") == [
        {"Label": "gpu-box", "Starts with": "pk_ab12…", "Created": "10 min ago", "Last used": "1 min ago",
         "Revoked": ""},
        {"Label": "old <b>box</b>", "Starts with": "pk_cd34…", "Created": "1 Nov 2026, 10:00 UTC",
         "Last used": "", "Revoked": "1 Dec 2026, 12:00 UTC"},
    ]  # fmt: skip


def test_the_job_caption_says_no_rounds_once():
    from predictions.dashboard.widgets import job_caption
    from predictions.store.records import Job

    assert job_caption(Job("j", status="running")) == "running · no rounds yet"
    assert job_caption(Job("j", status="failed")) == "failed · no rounds"  # an ended job writes none
    job = Job("j", status="finished", latest_epoch=2, latest_step=40, round_count=1)
    assert job_caption(job) == "finished · 1 round · epoch 2 · step 40"


def test_a_page_without_rounds_says_why_without_promising_rounds_an_ended_job_never_writes():
    from predictions.dashboard.widgets import no_rounds_text
    from predictions.store.records import Job

    assert "yet" in no_rounds_text(Job("j", status="running"))
    assert no_rounds_text(Job("j", status="failed")) == "This job has failed without a prediction round."
    rl = no_rounds_text(Job("j", status="finished"), {"kind": "rollouts"})
    assert "RL job" in rl and "Rollouts page" in rl and "yet" not in rl
