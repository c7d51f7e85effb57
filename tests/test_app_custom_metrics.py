"""A job with two user scorers and a metadata field on every page in AppTest: each metric gets its
headline, trend chart, heatmap choice, table column (sorted and filtered) and a place in Compare, and
Trends splits a metric by group, from the store's own aggregates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predictions.dashboard import palette, widgets
from predictions.store import SQLiteStore
from predictions.store.records import PageQuery
from tests.test_app_pages import COMPARE, PREDICTIONS, SAMPLES, chart_rows, specs
from tests.test_custom_metrics_contract import custom_rows

JOB = "custom-job"
SCORERS = {
    "answer": {"title": "Numeric answer", "higher_is_better": True, "bounds": [0.0, 1.0]},
    "quality": {"title": "Quality", "higher_is_better": False, "bounds": [None, None]},
}


@pytest.fixture(scope="module")
def custom_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("custom") / "predictions.db"
    store = SQLiteStore(path)
    store.start_job(JOB, name="Custom", config={"scorers": SCORERS, "metadata_fields": ["category"]})
    store.write_predictions(custom_rows(JOB))
    store.close()
    return path


@pytest.fixture(scope="module")
def stored(custom_db: Path):
    store = SQLiteStore(custom_db)
    yield store
    store.close()


def test_trends_give_each_user_metric_a_headline_and_a_chart(open_app, custom_db, stored):
    at = open_app(custom_db, job=JOB)
    rounds = stored.trends(JOB).rounds
    headlines = {metric.label: metric for metric in at.metric}
    assert headlines["Numeric answer"].value == f"{rounds['avg_answer'].iloc[-1]:.3f}"
    assert headlines["Quality"].value == f"{rounds['avg_quality'].iloc[-1]:.3f}"
    titles = [spec.get("title") for spec in specs(at)]
    assert titles[:6] == [
        "Character error rate", "Exact match", "Length ratio", "Word overlap (F1)",
        "Numeric answer", "Quality",
    ]  # fmt: skip
    drawn = chart_rows(at, 5)
    assert drawn["value"].tolist() == pytest.approx(rounds["avg_quality"].tolist())
    band = specs(at)[5]["layer"][0]
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == ("min_quality", "max_quality")


def test_trends_split_a_metric_by_group_as_the_store_groups_it(open_app, custom_db, stored):
    at = open_app(custom_db, job=JOB)
    assert at.selectbox(key="trends_group_by").value == "category"
    at.selectbox(key="trends_group_metric").set_value("answer").run()
    colours = [spec.get("encoding", {}).get("color", {}).get("field") for spec in specs(at)]
    index = colours.index("group")
    drawn = chart_rows(at, index).sort_values(["step", "group"], ignore_index=True)
    expected = stored.group_trends(JOB, "category")
    expected = expected.assign(group=expected["group"].fillna("(none)")).sort_values(["step", "group"])
    assert drawn["group"].tolist() == expected["group"].tolist()
    assert drawn["value"].tolist() == pytest.approx(expected["avg_answer"].tolist())


def test_the_heatmap_colours_by_a_user_metric(open_app, custom_db, stored):
    at = open_app(custom_db, job=JOB, page=SAMPLES)
    at.selectbox(key="heatmap_metric").set_value("quality").run()
    rect = ("rect", {"type": "rect"})  # a layered chart (the sample's) has no mark on top
    (heatmap,) = [spec for spec in specs(at) if spec.get("mark") in rect]
    assert heatmap["encoding"]["color"]["title"] == "Quality"
    assert heatmap["encoding"]["color"]["scale"]["range"][0] == palette.RIGHT  # lower is better: low is green
    assert any(h.value == "Quality by sample and round" for h in at.subheader)


def test_the_table_has_a_sortable_filterable_column_per_user_metric(open_app, custom_db, stored):
    at = open_app(custom_db, job=JOB, page=PREDICTIONS)
    columns = json.loads(at.dataframe[0].proto.columns)
    assert columns["answer"]["type_config"]["type"] == "progress"
    assert columns["quality"]["label"] == "Quality"
    at.selectbox(key="table_sort").set_value("quality").run()
    assert at.toggle(key="table_desc").value is True  # lower is better: the worst (highest) first
    table = at.dataframe[0].value
    assert table["quality"].dropna().is_monotonic_decreasing
    at.selectbox(key="table_filter_metric").set_value("quality").run()
    at.number_input(key="table_filter_high").set_value(0.5).run()
    expected = stored.predictions_page(JOB, PageQuery(metric_range=("quality", None, 0.5))).total_count
    assert at.caption[1].value.startswith(f"{expected} matching rows")
    assert (at.dataframe[0].value["quality"] <= 0.5).all()


def test_compare_offers_every_metric_of_the_chosen_jobs(open_app, custom_db, stored):
    at = open_app(custom_db, job=JOB, page=COMPARE)
    control = at.segmented_control(key="compare_metric")
    assert {"Numeric answer", "Quality"} <= set(control.options)
    control.set_value("answer").run()
    assert specs(at)[0]["title"] == "Numeric answer"
    assert chart_rows(at, 0)["value"].tolist() == pytest.approx(
        stored.trends(JOB).rounds["avg_answer"].tolist()
    )


BEACON = "![x](http://127.0.0.1:9/beacon.png) <img src=x>"


def test_a_scorer_title_in_markdown_is_shown_as_text_on_every_page(open_app, tmp_path):
    path = tmp_path / "markdown.db"
    store = SQLiteStore(path)
    scorers = {"quality": {"title": BEACON, "higher_is_better": False, "bounds": [None, None]}}
    config = {"scorers": scorers, "rendering": BEACON, "model_inputs": {"0": "x"}}
    store.start_job("md", name=BEACON, config=config)
    store.write_predictions(custom_rows("md"))
    store.close()
    escaped = widgets.plain(BEACON)
    trends = open_app(path, job="md")
    (card,) = [metric for metric in trends.metric if "beacon" in metric.label]
    assert card.label == escaped and "![" not in card.label  # Markdown would fetch the image
    samples = open_app(path, job="md", page=SAMPLES, sample="0")
    samples.selectbox(key="heatmap_metric").set_value("quality").run()
    rendered = [h.value for h in samples.subheader] + [e.label for e in samples.expander]
    assert any(escaped in text for text in rendered)
    assert [text for text in rendered if "beacon" in text and "![" in text] == []
