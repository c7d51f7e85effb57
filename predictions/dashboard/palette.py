"""The one colour scale for right and wrong, shared by every chart and table of the dashboard.

By error, 0 (right) to 1 (wholly wrong): green, then yellow at one half, then red; a higher-is-better
score is read as its error, 1 - score. Colours that carry no judgement (a trend line, the job
average) are neutral, so red and green always mean wrong and right.
"""

from __future__ import annotations

import math
from itertools import pairwise

RIGHT, HALF, WRONG = "#1a9850", "#fee08b", "#d73027"
STOPS = ((0.0, RIGHT), (0.5, HALF), (1.0, WRONG))
"""Error values and their colours; in between, colours are mixed linearly in RGB (as Vega does here)."""
TINT = 0.45
"""How much of a table cell's background is the scale's colour (the rest white): text stays readable."""
LINE, AVERAGE = "#4c78a8", "#9d9d9d"
"""Neutral colours: a metric's trend line, and the job average a sample is set against."""
SERIES = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
          "#bab0ac")  # fmt: skip
"""Vega's tableau10: one colour per compared job, by its place among the jobs picked."""


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _mix(a: str, b: str, share_of_b: float) -> str:
    mixed = (round(x + (y - x) * share_of_b) for x, y in zip(_rgb(a), _rgb(b), strict=True))
    return "#{:02x}{:02x}{:02x}".format(*mixed)


def error_colour(error: float) -> str:
    """The scale's colour of an error in [0, 1] (clamped)."""
    error = min(1.0, max(0.0, error))
    for (low, low_colour), (high, high_colour) in pairwise(STOPS):
        if error <= high:
            return _mix(low_colour, high_colour, (error - low) / (high - low))
    return WRONG


def error_scale(lower_is_better: bool = True, bounds: tuple[float | None, float | None] = (0.0, 1.0)) -> dict:
    """The same scale for a chart of a metric (a Vega-Lite scale): green at its best end, red at its worst.

    A metric with an open end (a length ratio, some user scores) spans the data instead of its bounds.
    """
    colours = [colour for _, colour in STOPS]
    colours = colours if lower_is_better else colours[::-1]
    low, high = bounds
    if low is None or high is None:
        return {"range": colours, "interpolate": "rgb"}
    return {"domain": [low, (low + high) / 2, high], "range": colours, "interpolate": "rgb", "clamp": True}


def error_cell(error: object) -> str:
    """CSS for a table cell holding an error (CER): the scale's colour, tinted; none for a missing value."""
    if not isinstance(error, int | float) or math.isnan(error):
        return ""
    return f"background-color: {_mix('#ffffff', error_colour(float(error)), TINT)}"


def score_cell(score: object) -> str:
    """CSS for a cell holding a higher-is-better score in [0, 1] (exact match rate, word overlap)."""
    if not isinstance(score, int | float) or math.isnan(score):
        return ""
    return error_cell(1.0 - float(score))
