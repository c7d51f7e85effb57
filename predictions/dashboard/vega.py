"""Vega-Lite specs as plain dicts: the few pieces the chart builders repeat (a channel, a tooltip, a layer)
and the finished spec, whose data frames travel as named datasets.

Streamlit's `st.vega_lite_chart` sends a spec's `datasets` frames to the browser as Arrow, as it does for an
Altair chart; building the dict ourselves skips Altair's schema validation on every rerun (about 60 ms of
CPU per chart), so the dashboard never imports Altair. A test validates every builder's spec against the
Vega-Lite schema instead.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pandas as pd

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.4.1.json"
"""The Vega-Lite version Streamlit 1.67 embeds (and Altair 6 wrote)."""
TYPES = {"Q": "quantitative", "N": "nominal", "O": "ordinal", "T": "temporal"}
SHORTHAND = re.compile(r"(?:(?P<op>\w+)\((?P<inner>\w+)\)|(?P<field>\w+)):(?P<type>[QNOT])")

Spec = dict[str, Any]


def channel(shorthand: str, **properties: Any) -> Spec:
    """An encoding channel from Altair's shorthand, `field:T` or `op(field):T` (T one of Q, N, O, T),
    with its properties as given (`title=None` hides a title)."""
    parts = SHORTHAND.fullmatch(shorthand)
    if parts is None:
        raise ValueError(
            f"channel {shorthand!r} is not 'field:T' or 'op(field):T' with T one of {''.join(TYPES)}"
        )
    if parts["op"]:
        return {"aggregate": parts["op"], "field": parts["inner"], "type": TYPES[parts["type"]], **properties}
    return {"field": parts["field"], "type": TYPES[parts["type"]], **properties}


def tooltip(*fields: tuple[str, ...] | str) -> list[Spec]:
    """Tooltip entries: a shorthand, or (shorthand, title) or (shorthand, title, number format); a title of
    None leaves the field's name."""
    entries = []
    for item in fields:
        shorthand, *rest = (item,) if isinstance(item, str) else item
        named = {
            key: value for key, value in zip(("title", "format"), rest, strict=False) if value is not None
        }
        entries.append(channel(shorthand, **named))
    return entries


def mark(kind: str, **properties: Any) -> Spec:
    return {"type": kind, **properties}


def view(data: pd.DataFrame | None, kind: Spec, **encoding: Any) -> Spec:
    """One mark over one frame (None: the frame of the layer around it)."""
    return {**({"data": data} if data is not None else {}), "mark": kind, "encoding": encoding}


def layer(*views: Spec, **properties: Any) -> Spec:
    """Views drawn on top of each other, the first at the bottom. When all draw the same frame, it moves to
    the layer, sent once (as Altair does)."""
    frames = [v.get("data") for v in views]
    if frames and frames[0] is not None and all(frame is frames[0] for frame in frames):
        views = tuple({k: v for k, v in each.items() if k != "data"} for each in views)
        properties = {"data": frames[0], **properties}
    return {"layer": list(views), **properties}


def chart(spec: Spec) -> Spec:
    """The spec Streamlit draws: its frames moved to top-level `datasets`, each named by its content, so the
    spec changes when the data does (the browser then redraws the chart, as it did for Altair's)."""
    datasets: dict[str, pd.DataFrame] = {}
    return {"$schema": SCHEMA, **_named(spec, datasets), "datasets": datasets}


def _named(spec: Spec, datasets: dict[str, pd.DataFrame]) -> Spec:
    spec = dict(spec)
    if isinstance(spec.get("data"), pd.DataFrame):
        name = dataset_name(spec["data"])
        datasets.setdefault(name, spec["data"])
        spec["data"] = {"name": name}
    for key in ("layer", "vconcat"):
        if key in spec:
            spec[key] = [_named(child, datasets) for child in spec[key]]
    return spec


def dataset_name(frame: pd.DataFrame) -> str:
    """A name that changes with the frame's index, columns, types or values (twice as fast here as
    `pd.util.hash_pandas_object`, which each rerun would pay for every chart)."""
    digest = hashlib.md5(usedforsecurity=False)
    for name, values in [(None, frame.index), *frame.items()]:
        array = values.to_numpy()
        digest.update(repr((name, str(values.dtype), len(array))).encode())
        digest.update(array.tobytes() if array.dtype.kind in "iufbmM" else repr(array.tolist()).encode())
    return f"data-{digest.hexdigest()}"
