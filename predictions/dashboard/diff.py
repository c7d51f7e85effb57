"""Character diffs of untrusted model output, as escaped HTML or plain text.

Every piece of either text goes through `html.escape` before it is wrapped in a tag, so a prediction
like `<script>` is shown as those characters, never run. The edit operations come from rapidfuzz's
Levenshtein (the same distance the CER uses), so the diff shows exactly the edits the score counts.
"""

from __future__ import annotations

import html

import pandas as pd
from rapidfuzz.distance import Levenshtein

DIFF_CSS = """
<style>
.pm-diff{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;white-space:pre-wrap;
  word-break:break-word;line-height:1.5}
.pm-diff del{background:#fdd8d8;color:#8a1f1f;text-decoration:line-through}
.pm-diff ins{background:#d3f5dc;color:#135e2a;text-decoration:none}
.pm-diff .pm-cut{color:#777;font-style:italic}
</style>
"""
"""Deleted text struck through in red, inserted text in green; shown once per page before the diffs."""


DIFF_LIMIT = 3000
"""Characters of each text a diff compares. An edit script costs time quadratic in the length (two
unrelated texts of 300k characters take seconds), so longer texts are cut here, with a note: about 3 ms
for two unrelated texts of this length, so a sample's history of a hundred rounds stays well under
a second. The whole texts are in the prompt and prediction boxes and on the Predictions page."""

MIN_EQUAL_RUN = 3
"""Shorter runs of equal characters between two edits are folded into the edit: a wholly different
answer reads as 'this instead of that', not as confetti of one-letter matches."""


def segments(old: str, new: str) -> list[tuple[str, str, str]]:
    """The diff as `(kind, removed, added)` runs, kind `equal` or `edit`, short equal islands folded."""
    runs: list[list[str]] = []
    for op in Levenshtein.opcodes(old, new):
        kind = "equal" if op.tag == "equal" else "edit"
        removed, added = old[op.src_start : op.src_end], new[op.dest_start : op.dest_end]
        if runs and runs[-1][0] == kind == "edit":
            runs[-1][1] += removed
            runs[-1][2] += added
        else:
            runs.append([kind, removed, added])
    folded: list[list[str]] = []
    for i, (kind, removed, added) in enumerate(runs):
        island = kind == "equal" and len(removed) < MIN_EQUAL_RUN and 0 < i < len(runs) - 1
        if island or (kind == "edit" and folded and folded[-1][0] == "edit"):
            folded[-1][1] += removed
            folded[-1][2] += added
        else:
            folded.append([kind, removed, added])
    return [(kind, removed, added) for kind, removed, added in folded]


def cut_note(old: str, new: str) -> str | None:
    """What a diff of these texts leaves out, in words; None when both fit in `DIFF_LIMIT`."""
    longest = max(len(old), len(new))
    if longest <= DIFF_LIMIT:
        return None
    return f"… cut: the diff covers the first {DIFF_LIMIT:,} characters of {longest:,}"


def diff_html(old: str, new: str) -> str:
    """`new` against `old` as escaped HTML: `<del>` for what `old` had, `<ins>` for what `new` adds.

    Texts longer than `DIFF_LIMIT` are compared up to it, and a note says so.
    """
    parts = []
    for kind, removed, added in segments(old[:DIFF_LIMIT], new[:DIFF_LIMIT]):
        if kind == "equal":
            parts.append(html.escape(added))
            continue
        if removed:
            parts.append(f"<del>{html.escape(removed)}</del>")
        if added:
            parts.append(f"<ins>{html.escape(added)}</ins>")
    note = cut_note(old, new)
    if note:
        parts.append(f'<span class="pm-cut"> {note}</span>')
    return f'<span class="pm-diff">{"".join(parts)}</span>'


def diff_text(old: str, new: str) -> str:
    """The same diff as plain text, `[-removed-]{+added+}`, for places that cannot show HTML."""
    parts = []
    for kind, removed, added in segments(old[:DIFF_LIMIT], new[:DIFF_LIMIT]):
        if kind == "equal":
            parts.append(added)
            continue
        parts.append(f"[-{removed}-]" if removed else "")
        parts.append(f"{{+{added}+}}" if added else "")
    note = cut_note(old, new)
    return "".join(parts) + (f" [{note}]" if note else "")


HISTORY_CSS = """
<style>
.pm-history{max-height:560px;overflow:auto;border:1px solid rgba(128,128,128,.25);border-radius:.5rem}
.pm-history table{border-collapse:collapse;width:100%;font-size:.85rem}
.pm-history th{position:sticky;top:0;background:var(--background-color,#fff);text-align:left;
  padding:.35rem .5rem;border-bottom:1px solid rgba(128,128,128,.35);font-weight:600}
.pm-history td{padding:.35rem .5rem;border-bottom:1px solid rgba(128,128,128,.15);vertical-align:top}
.pm-history td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
</style>
"""


def _number(value: object, digits: int = 3) -> str:
    """A score for the table; an em dash for null (an unscored row)."""
    return "—" if value is None or value != value else f"{float(value):.{digits}f}"


HISTORY_HEADERS = ("Round", "Epoch", "Step", "CER", "Exact", "Overlap", "Length")
"""Number columns of the history table; the two diff columns follow."""


def plain_html(text: str) -> str:
    """A text with nothing to compare against, escaped and cut like a diff."""
    cut = f'<span class="pm-cut"> … cut after {DIFF_LIMIT:,} characters of {len(text):,}</span>'
    rest = cut if len(text) > DIFF_LIMIT else ""
    return f'<span class="pm-diff">{html.escape(text[:DIFF_LIMIT])}{rest}</span>'


def history_html(history: pd.DataFrame) -> str:
    """One table row per round of one sample: scores, the diff against the truth and the previous round.

    `history` is `Store.sample_history` (one sample, ordered by step), at most one row per round, so
    this loop is over rounds of one sample only. Every text cell is escaped by `diff_html`.
    """
    rows, previous = [], None
    for number, row in enumerate(history.itertuples(index=False), start=1):
        truth = row.ground_truth
        vs_truth = diff_html(truth, row.prediction) if isinstance(truth, str) else plain_html(row.prediction)
        vs_previous = "—" if previous is None else diff_html(previous, row.prediction)
        numbers = (number, row.epoch, row.step, _number(row.char_error_rate), _number(row.exact_match, 0),
                   _number(row.word_overlap), _number(row.length_ratio, 2))  # fmt: skip
        cells = "".join(f'<td class="num">{value}</td>' for value in numbers)
        rows.append(f"<tr>{cells}<td>{vs_truth}</td><td>{vs_previous}</td></tr>")
        previous = row.prediction
    head = "".join(
        f"<th>{name}</th>" for name in (*HISTORY_HEADERS, "Prediction vs ground truth", "vs previous")
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="pm-history">{table}</div>'
