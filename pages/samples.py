"""Samples: which samples improve, which stay bad, which regress; and one sample's answers, round by round."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from predictions.dashboard import analysis, charts, columns, diff, queries, router, widgets
from predictions.scoring.metrics import PRIMARY_METRIC, Metric
from predictions.store.records import Trends

LISTS = (
    ("Most improved", analysis.most_improved, "CER fell the most from the first round to the latest."),
    ("Still failing", analysis.still_failing, "Never right in any round, and still far off."),
    ("Regressed", analysis.regressed, "Right in an earlier round, wrong in the latest (best earlier CER)."),
)


def pick_sample(indices: list[int]) -> int:
    """The sample picker, kept in the URL as `?sample=`; a heatmap click or a list row also sets it."""
    if st.session_state.get("sample") not in indices:
        wanted = st.query_params.get("sample", "")
        st.session_state["sample"] = (
            int(wanted) if wanted.isdigit() and int(wanted) in indices else indices[0]
        )
    sample = st.selectbox("Sample", indices, key="sample", format_func=lambda i: f"Sample {i}", width=240)
    st.query_params["sample"] = str(sample)
    return sample


def choose_from_heatmap() -> None:
    """A heatmap click picks the clicked sample (runs before the rerun, so the picker shows it)."""
    index = analysis.selected_sample(st.session_state.get("heatmap"))
    if index is not None:
        st.session_state["sample"] = index


def choose_from_list(key: str, frame: pd.DataFrame) -> Callable[[], None]:
    """A callback picking the sample of the selected row of one of the lists."""

    def choose() -> None:
        rows = st.session_state[key]["selection"]["rows"]
        if rows:
            st.session_state["sample"] = int(frame["sample_index"].iloc[rows[0]])

    return choose


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def heatmap(view: widgets.View, summary: pd.DataFrame, sample: int, trends: Trends) -> None:
    """Samples by rounds, coloured by any metric of the job (CER unless another is chosen). Reads only
    the page's samples and the rounds it draws; the order comes from the store's per-sample summary."""
    metrics = {m.name: m for m in charts.shown(trends.metrics)}
    name = st.selectbox(
        "Colour by", list(metrics), key="heatmap_metric", format_func=lambda n: metrics[n].title, width=240
    )
    metric = metrics[name]
    if metric.name != PRIMARY_METRIC:
        summary = queries.sample_summary(view.store, view.ref(), metric.name)
    st.subheader(widgets.plain(f"{metric.label} by sample and round"))
    kept, shown, ranked = heatmap_page(summary, metric)
    steps = trends.rounds["step"].tolist()
    drawn, stride = analysis.drawn_steps(steps)
    matrix = queries.sample_matrix(view.store, view.ref(), metric.name, tuple(kept), tuple(drawn))
    frame = analysis.heatmap_frame(matrix, steps)
    if ranked:  # the chart lists samples in this order, not by index
        frame = frame.assign(rank=frame["sample_index"].map({s: i for i, s in enumerate(kept)}))
    chart = charts.heatmap_chart(frame, sample, metric)
    st.vega_lite_chart(spec=chart, on_select=choose_from_heatmap, key="heatmap")
    note = f" Showing every {ordinal(stride)} round, counted back from the latest." if stride > 1 else ""
    st.caption(f"Green is good, yellow half way, red bad. Click a cell to open that sample.{shown}{note}")


def heatmap_page(summary: pd.DataFrame, metric: Metric) -> tuple[list[int], str, bool]:
    """At most `HEATMAP_PAGE_SAMPLES` samples, worst latest value first (or by index), a page at a time:
    at 1,000 samples one chart would give each sample under a pixel. Returns the page's samples in the
    order shown, a note, and whether that order is a ranking (not by index)."""
    indices = summary["sample_index"].astype(int).tolist()
    size = analysis.HEATMAP_PAGE_SAMPLES
    if len(indices) <= size:
        return indices, "", False
    order, page = st.columns(2)
    worst = order.radio("Order", ("Worst first", "By sample"), key="heatmap_order", horizontal=True)
    if worst == "Worst first":
        indices = analysis.samples_worst_first(summary, metric.lower_is_better)
    starts = range(0, len(indices), size)
    chosen = page.selectbox(
        "Samples",
        range(len(starts)),
        key="heatmap_page",
        format_func=lambda p: (
            f"{starts[p] + 1:,} to {min(starts[p] + size, len(indices)):,} of {len(indices):,}"
        ),
    )
    kept = analysis.page_of(indices, chosen, size)
    return kept, f" {len(kept)} of {len(indices):,} samples on this page.", worst == "Worst first"


def sample_lists(summary: pd.DataFrame) -> None:
    """The three lists; selecting a row opens that sample."""
    for tab, (title, pick, about) in zip(st.tabs([title for title, _, _ in LISTS]), LISTS, strict=True):
        # a regression is judged against the sample's best earlier round, not its first (1.0 -> 0.11
        # read as an improvement when the sample had been right in between)
        earlier = "best_earlier_cer" if title == "Regressed" else "first_cer"
        frame = pick(summary)[["sample_index", earlier, "latest_cer"]]
        with tab:
            st.caption(about)
            if frame.empty:
                st.text("No sample.")
                continue
            key = f"list_{title.lower().replace(' ', '_')}"
            st.dataframe(
                columns.coloured(frame),
                hide_index=True,
                key=key,
                on_select=choose_from_list(key, frame),
                selection_mode="single-row",
                column_config=LIST_COLUMNS,
            )


LIST_COLUMNS = {
    "sample_index": st.column_config.NumberColumn("Sample", width=60),
    "first_cer": columns.cer("First CER", width=110),
    "best_earlier_cer": columns.cer(
        "Best earlier", width=110, help="the sample's best CER before its latest round"
    ),
    "latest_cer": columns.cer("Latest CER", width=110),  # three columns fit the side column at 1280 px
}


def model_input(config: dict, sample: int) -> None:
    """The exact text the model was given (template, truncation), as the monitor recorded it at start."""
    text = (config.get("model_inputs") or {}).get(str(sample))
    if text is not None:
        with st.expander(widgets.plain(f"Text given to the model ({config.get('rendering', 'raw')})")):
            st.code(text, language=None, wrap_lines=True)


def sample_detail(view: widgets.View, sample: int, trends: Trends) -> None:
    """The prompt, the ground truth, the sample against the job average, and every round's answer."""
    history = queries.sample_history(view.store, view.ref(), sample)
    if history.empty:
        st.info(f"Sample {sample} has no rows.")
        return
    truth, latest = history["ground_truth"].dropna(), history.iloc[-1]
    left, middle, right = st.columns(3)
    left.caption("Prompt")
    left.code(latest["prompt"], language=None, wrap_lines=True)
    right.caption(f"Latest prediction ({widgets.round_label(latest['epoch'], latest['step'])})")
    right.code(latest["prediction"], language=None, wrap_lines=True)
    if note := columns.replaced_note(int(latest.get("text_replacements", 0))):
        right.caption(note)
    middle.caption("Ground truth")
    middle.code(
        truth.iloc[-1] if not truth.empty else "(none: this sample is not scored)",
        language=None,
        wrap_lines=True,
    )
    model_input(trends.config, sample)
    if history["char_error_rate"].notna().any():
        st.vega_lite_chart(spec=charts.sample_chart(history, trends.rounds), key="sample_chart")
    st.caption("Every round's answer: red struck text is missing or wrong, green is added.")
    st.html(diff.DIFF_CSS + diff.HISTORY_CSS + diff.history_html(history))


def main() -> None:
    view = router.require_job()
    st.title("Samples")
    st.caption(widgets.plain(view.job.label))
    summary = queries.sample_summary(view.store, view.ref())
    trends = queries.trends(view.store, view.ref())
    if summary.empty:
        st.info(widgets.no_rounds_text(view.job, trends.config))
        return
    sample = pick_sample(summary["sample_index"].astype(int).tolist())
    if summary["latest_value"].notna().any():
        chart, lists = st.columns([3, 2])
        with chart:
            heatmap(view, summary, sample, trends)
        with lists:
            st.subheader("Samples to look at")
            sample_lists(analysis.sample_summary(summary))
    else:
        st.info("No ground truth, so no scores: the answers are below, compared round to round.", icon="📝")
    st.subheader(f"Sample {sample}")
    sample_detail(view, sample, trends)


main()
