"""Chart builders are plain functions: a data frame in, a Vega-Lite spec (a dict) out, checked on the spec.

The product builds specs without Altair, so nothing validates them at run time: every builder's spec is
validated here against the Vega-Lite v6 schema (the one Altair ships), so a chart that would not draw
fails here, without Streamlit or a browser.
"""

from __future__ import annotations

import functools
import json

import jsonschema
import pandas as pd
import pytest
from altair.vegalite.v6.schema import SCHEMA_URL
from altair.vegalite.v6.schema.core import load_schema

from predictions.dashboard import analysis, charts, palette, rollout_charts, vega
from predictions.scoring.metrics import Metric
from tests.seeding import BIG_JOB, seed_big
from tests.test_dashboard_helpers import rounds_frame


def to_dict(spec: dict) -> dict:
    """The spec with its datasets' frames as rows, as the browser receives them."""
    rows = {name: json.loads(frame.to_json(orient="records")) for name, frame in spec["datasets"].items()}
    return {**spec, "datasets": rows}


def layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def dataset(spec: dict, index: int = 0) -> list[dict]:
    """The rows of the `index`-th dataset the spec carries."""
    return list(to_dict(spec)["datasets"].values())[index]


def tooltip_fields(encoding: dict) -> list[str]:
    return [item["field"] for item in encoding["tooltip"]]


def test_cer_chart_has_a_min_max_band_under_a_line_with_tooltips():
    rounds = rounds_frame([0.8, 0.5, None, 0.3]).assign(min_char_error_rate=0.1, max_char_error_rate=0.9)
    band, line = layers(charts.trend_chart(rounds, "char_error_rate"))
    assert band["mark"]["type"] == "area"
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == (
        "min_char_error_rate",
        "max_char_error_rate",
    )
    assert line["mark"]["type"] == "line" and line["mark"]["point"]
    assert line["encoding"]["x"]["field"] == "step"
    assert line["encoding"]["y"]["field"] == "value"
    assert line["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert tooltip_fields(line["encoding"])[:4] == ["epoch", "step", "value", "sample_count"]
    rows = dataset(charts.trend_chart(rounds, "char_error_rate"))
    assert [row["value"] for row in rows] == [0.8, 0.5, 0.3]  # the unscored round is left out, not 0


@pytest.mark.parametrize("metric", ["exact_match", "word_overlap"])
def test_bounded_metrics_are_single_lines_from_0_to_1(metric):
    (line,) = layers(charts.trend_chart(rounds_frame([0.8, 0.4]), metric, x="epoch"))
    assert line["encoding"]["x"]["field"] == "epoch"
    assert line["encoding"]["y"]["scale"]["domain"] == [0, 1]
    assert line["encoding"]["tooltip"][2]["title"] == charts.METRIC_TITLES[metric]


def test_length_ratio_shows_the_ideal_of_one_and_fits_rambling():
    rounds = rounds_frame([0.8, 0.4]).assign(avg_length_ratio=[3.0, 1.2])
    chart = charts.trend_chart(rounds, "length_ratio")
    rule, line = layers(chart)
    assert rule["mark"]["type"] == "rule"
    assert dataset(chart, 0) == [{"ideal": 1.0}]
    assert line["encoding"]["y"]["scale"]["domain"][1] >= 3.0


def test_heatmap_colours_cer_green_to_red_and_selects_a_sample_on_click():
    matrix = pd.DataFrame(
        {"sample_index": [0, 0, 1, 1], "epoch": 1, "step": [10, 20, 10, 20], "value": [0.9, 0.1, 0.0, 0.5]}
    )
    frame = analysis.heatmap_frame(matrix, matrix["step"])
    spec = charts.heatmap_chart(frame, selected=1)
    assert spec["mark"]["type"] == "rect"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("round", "ordinal")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("sample_index", "ordinal")
    assert enc["color"]["field"] == "value"
    assert enc["color"]["scale"] == {
        "domain": [0.0, 0.5, 1.0],
        "range": [palette.RIGHT, palette.HALF, palette.WRONG],
        "interpolate": "rgb",
        "clamp": True,
    }  # the scale the tables use too
    assert enc["stroke"]["condition"]["test"] == "(datum.sample_index === 1)"
    (param,) = spec["params"]
    assert param["name"] == "sample"
    assert param["select"] == {"type": "point", "fields": ["sample_index"], "on": "click", "clear": False}
    assert set(tooltip_fields(enc)) == {"sample_index", "round", "epoch", "step", "value"}


def test_heatmap_of_100_rounds_by_100_samples_stays_small(sqlite_store):
    seed_big(sqlite_store, rounds=100, samples=100)
    steps = sqlite_store.trends(BIG_JOB).rounds["step"]
    drawn, stride = analysis.drawn_steps(steps)
    frame = analysis.heatmap_frame(sqlite_store.sample_matrix(BIG_JOB, steps=drawn), steps)
    chart = charts.heatmap_chart(frame)
    assert stride == 2 and len(dataset(chart)) == 50 * 100
    assert len(json.dumps(to_dict(chart))) < 600_000
    assert chart["height"] == 720  # capped, however many samples


def test_sample_chart_compares_the_sample_with_the_job_average():
    rounds = rounds_frame([0.8, 0.6, 0.4])
    history = pd.DataFrame({"epoch": [1, 2, 3], "step": [10, 20, 30], "char_error_rate": [1.0, 0.0, 0.2]})
    chart = charts.sample_chart(history, rounds)
    average, sample = layers(chart)  # the sample drawn last, on top of the average where they meet
    assert average["encoding"]["color"]["field"] == sample["encoding"]["color"]["field"] == "series"
    assert average["mark"]["strokeDash"] == [4, 3] and sample["mark"]["strokeWidth"] > 2
    assert [row["series"] for row in dataset(chart, 0)] == ["Job average"] * 3
    assert [row["value"] for row in dataset(chart, 1)] == [1.0, 0.0, 0.2]
    scale = sample["encoding"]["color"]["scale"]
    assert scale["range"] == [palette.LINE, palette.AVERAGE]  # neither red nor green: no judgement


def test_the_colour_scale_runs_green_to_yellow_to_red_by_error():
    assert palette.error_colour(0.0) == palette.RIGHT
    assert palette.error_colour(0.5) == palette.HALF
    assert palette.error_colour(1.0) == palette.WRONG == palette.error_colour(7.0)
    redness = []  # red minus green: rises from green through yellow to red
    for error in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        r, g, _ = (int(palette.error_colour(error)[i : i + 2], 16) for i in (1, 3, 5))
        redness.append(r - g)
    assert redness == sorted(set(redness)) and redness[0] < 0 < redness[-1]
    assert palette.error_cell(float("nan")) == "" and palette.score_cell(None) == ""
    assert palette.score_cell(0.9) == palette.error_cell(0.1)


def test_compare_chart_draws_one_coloured_line_per_job():
    a = rounds_frame([0.9, 0.5]).assign(job="run a", round=[1, 2])
    b = rounds_frame([0.8, 0.7, 0.6]).assign(job="run b", round=[1, 2, 3])
    chart = spec = charts.compare_chart(pd.concat([a, b]), "word_overlap", x="round")
    assert spec["encoding"]["color"]["field"] == "job"
    assert spec["encoding"]["x"]["field"] == "round"
    assert spec["title"] == "Word overlap (F1)"
    rows = dataset(chart)
    assert sorted({row["job"] for row in rows}) == ["run a", "run b"] and len(rows) == 5


def test_compare_reads_a_late_difference_of_two_hundredths_in_job_order():
    """Two runs from CER 0.9 down to 0.2 and 0.22: far enough apart to read, coloured in the order picked."""
    late = [0.9, 0.7, 0.5, 0.35, 0.25]
    picked = [
        rounds_frame([*late, 0.22]).assign(job="zeta (picked first)"),
        rounds_frame([*late, 0.20]).assign(job="alpha"),
    ]
    spec = charts.compare_chart(pd.concat(picked), "char_error_rate")
    colour = spec["encoding"]["color"]
    assert colour["scale"]["domain"] == colour["sort"] == ["zeta (picked first)", "alpha"]
    low, high = spec["encoding"]["y"]["scale"]["domain"]
    assert 0 <= low <= 0.20 and 0.9 <= high <= 1  # every value drawn, within bounds
    assert spec["height"] == charts.compare_height(2)  # the legend's rows on top of the plot's height
    apart = charts.COMPARE_PLOT * 0.02 / (high - low)
    assert apart >= 10, f"0.02 of CER is {apart:.1f} px"  # the browser test measures the plot drawn
    assert spec["title"] == "Character error rate"


def test_a_compared_job_keeps_its_colour_whichever_jobs_have_values_to_draw():
    picked = ["first", "no rounds", "third"]
    frame = pd.concat([rounds_frame([0.5, 0.4]).assign(job=name) for name in ("third", "first")])
    colour = charts.compare_chart(frame, "char_error_rate", series=picked)["encoding"]["color"]
    assert colour["scale"]["domain"] == ["first", "third"]  # the legend: the jobs drawn, in picked order
    assert colour["scale"]["range"] == [palette.SERIES[0], palette.SERIES[2]]  # each its place's colour
    spec = charts.compare_chart(frame, "char_error_rate", series=picked)
    assert spec["height"] == charts.compare_height(2)


def test_compare_keeps_a_flat_run_and_an_open_metric_on_screen():
    flat = charts.compare_chart(rounds_frame([0.5, 0.5]).assign(job="a"), "char_error_rate")
    assert flat["encoding"]["y"]["scale"]["domain"] == pytest.approx([0.49, 0.51])
    ratio = charts.compare_chart(rounds_frame([0.5, 0.5]).assign(job="a"), "length_ratio")
    low, high = ratio["encoding"]["y"]["scale"]["domain"]
    assert low < 1.0 < high  # the drawn ratio, 1.0


def series_frame(names: tuple[str, ...]) -> pd.DataFrame:
    rows = [(name, step, 1.0 / step) for name in names for step in (1, 2, 3)]
    return pd.DataFrame(rows, columns=["name", "step", "value"])


@pytest.mark.parametrize(
    ("logged", "legend"),
    [
        (("loss", "learning_rate"), ["Training loss"]),
        (("loss", "eval_loss", "learning_rate"), ["Training loss", "Eval loss"]),
        (("eval_loss",), ["Eval loss"]),
    ],
)
def test_the_loss_legend_lists_only_the_losses_logged(logged, legend):
    spec = charts.loss_chart(series_frame(logged), rounds_frame([0.8, 0.5, 0.3]))
    scale = spec["vconcat"][0]["encoding"]["color"]["scale"]
    assert scale["domain"] == legend
    colours = {"Training loss": palette.LINE, "Eval loss": palette.AVERAGE}
    assert scale["range"] == [colours[title] for title in legend]  # each series keeps its colour


@pytest.mark.parametrize(
    ("logged", "titles"),
    [
        (("loss", "eval_loss", "learning_rate"), ["Loss", "Answers: Character error rate", "Learning rate"]),
        (
            ("eval_loss",),
            ["Loss", "Answers: Character error rate"],
        ),  # a search's trial: no learning rate logged
        (("learning_rate",), ["Answers: Character error rate", "Learning rate"]),
    ],
)
def test_a_series_never_logged_gets_no_chart(logged, titles):
    spec = charts.loss_chart(series_frame(logged), rounds_frame([0.8, 0.5, 0.3]))
    assert [panel["title"] for panel in spec["vconcat"]] == titles


OPEN_METRIC = Metric(
    "length_score", "Length score", "Len", lower_is_better=True, bounds=(0.0, None), ideal=2.0
)
STEPS = pd.DataFrame(
    {
        "step": [1, 2], "rollout_count": 8, "group_count": 2, "zero_std_groups": [0, 2],
        "avg_reward": [0.1, 0.5], "std_reward": [0.05, None], "avg_completion_tokens": [10.0, 12.5],
        "min_completion_tokens": [5, 6], "max_completion_tokens": [20, 21], "truncated_count": [0, 2],
    }
)  # fmt: skip
REWARDS = pd.DataFrame({"step": [1, 2], "name": "format", "avg": [0.2, 0.4], "std": [0.1, None]})
PROMPT = pd.DataFrame(
    {"step": [1, 1, 2], "completion_index": [0, 1, 0], "reward": [0.1, None, 0.5], "completion_tokens": 3}
)


def every_chart(rows: slice) -> dict[str, dict]:
    """Every builder's spec, over the first `rows` of representative frames (slice(0) for empty ones)."""
    rounds = rounds_frame([0.8, 0.5, None, 0.3]).assign(avg_length_score=[5.0, 3.0, None, 2.5]).iloc[rows]
    matrix = pd.DataFrame(
        {"sample_index": [0, 0, 1], "epoch": 1, "step": [10, 20, 10], "value": [0.9, 0.1, 0.0]}
    )
    heatmap = analysis.heatmap_frame(matrix, matrix["step"]).iloc[rows]
    jobs = pd.concat([rounds.assign(job=f"job {i}") for i in range(12)])
    history = pd.DataFrame({"epoch": [1, 2], "step": [10, 20], "char_error_rate": [1.0, 0.2]}).iloc[rows]
    return {
        "trend with band": charts.trend_chart(rounds, "char_error_rate"),
        "trend with ideal": charts.trend_chart(rounds, "length_ratio", x="epoch"),
        "trend of an open user metric": charts.trend_chart(rounds, OPEN_METRIC),
        "heatmap": charts.heatmap_chart(heatmap, selected=1),
        "heatmap ranked": charts.heatmap_chart(heatmap.assign(rank=0), metric="word_overlap"),
        "sample": charts.sample_chart(history, rounds),
        "compare": charts.compare_chart(jobs, "char_error_rate", series=["job 3", "job 0"]),
        "compare groups": charts.compare_chart(
            jobs.rename(columns={"job": "group"}), "length_ratio", by="group"
        ),
        "loss": charts.loss_chart(series_frame(("loss", "eval_loss", "learning_rate")).iloc[rows], rounds),
        "rewards": rollout_charts.reward_chart(
            rollout_charts.reward_frame(STEPS.iloc[rows], REWARDS.iloc[rows])
        ),
        "lengths": rollout_charts.length_chart(STEPS.iloc[rows]),
        "flat groups": rollout_charts.flat_groups_chart(STEPS.iloc[rows]),
        "prompt": rollout_charts.prompt_chart(PROMPT.iloc[rows]),
    }


@functools.cache
def vega_lite_v6() -> jsonschema.Validator:
    schema = load_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def test_the_schema_check_rejects_a_spec_that_would_not_draw():
    spec = charts.trend_chart(rounds_frame([0.5]), "char_error_rate")
    assert vega_lite_v6().is_valid(to_dict(spec))
    spec["layer"][-1]["mark"]["type"] = "lines"
    assert not vega_lite_v6().is_valid(to_dict(spec))
    assert not vega_lite_v6().is_valid({**to_dict(spec), "height": "tall"})


@pytest.mark.parametrize("rows", [slice(None), slice(0)], ids=["with data", "empty"])
def test_every_chart_is_valid_vega_lite_v6(rows):
    """What Altair checked on every rerun, checked once here: each spec, its datasets as rows."""
    for name, spec in every_chart(rows).items():
        errors = [error.message for error in vega_lite_v6().iter_errors(to_dict(spec))]
        assert not errors, f"{name}: {errors[:3]}"
        assert spec["$schema"] == SCHEMA_URL  # the version Streamlit's embedded Vega-Lite draws


def test_a_chart_sends_each_frame_once_named_by_its_content():
    """A name changes with the data, so the browser redraws a chart whose data changed (as with Altair);
    a frame drawn by every layer is sent once, on the layer."""
    spec = charts.trend_chart(rounds_frame([0.8, 0.5]), "char_error_rate")
    assert list(spec["data"]) == ["name"] and all("data" not in view for view in spec["layer"])
    assert list(spec["datasets"]) == [spec["data"]["name"]]
    same = charts.trend_chart(rounds_frame([0.8, 0.5]), "char_error_rate")
    later = charts.trend_chart(rounds_frame([0.8, 0.5, 0.4]), "char_error_rate")
    assert same["data"] == spec["data"]  # the same rows again: the same name, no redraw
    assert later["data"] != spec["data"]
    changed = rounds_frame([0.8, 0.5]).assign(sample_count=5)
    assert charts.trend_chart(changed, "char_error_rate")["data"] != spec["data"]


def test_a_channel_names_what_its_shorthand_may_be():
    assert vega.channel("mean(reward):Q") == {"aggregate": "mean", "field": "reward", "type": "quantitative"}
    assert vega.channel("step:O", title=None) == {"field": "step", "type": "ordinal", "title": None}
    with pytest.raises(ValueError, match="'field:T' or 'op\\(field\\):T'"):
        vega.channel("step")
