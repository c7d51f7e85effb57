"""The house as docs/architecture.md describes it: what may sit directly under predictions/, which
modules stay free of torch, and the central record matching the metric registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from predictions.scoring.metrics import METRICS, REGISTRY
from predictions.store.records import PredictionRow, RolloutRow

ROOT = Path(__file__).resolve().parent.parent
TRAINING_ONLY = ("torch", "transformers", "accelerate", "trl", "deepspeed")
LIGHT_PACKAGES = ("predictions.dashboard", "predictions.store", "predictions.scoring", "predictions.delivery")
"""Everything watching a run needs: none of it may load torch (lint-imports checks the imports; this
checks what loading them actually pulls in, lazy imports and dependencies included)."""


def documented_top_modules() -> set[str]:
    """The files docs/architecture.md lists under "Modules outside sub-packages"."""
    text = (ROOT / "docs/architecture.md").read_text()
    section = text.split("## Modules outside sub-packages", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^- `predictions/([\w.]+\.py)`", section, flags=re.MULTILINE))


def test_every_module_directly_under_predictions_is_one_the_architecture_names():
    present = {path.name for path in (ROOT / "predictions").glob("*.py")}
    documented = documented_top_modules()
    assert "__init__.py" in documented  # the section was found and read
    assert present == documented, "add a reason to docs/architecture.md, or move the module into a layer"


def test_the_package_face_and_the_dashboard_load_no_torch():
    script = f"""
import importlib, json, pkgutil, sys
import predictions
loaded = {{"import predictions": sorted(m for m in {TRAINING_ONLY!r} if m in sys.modules)}}
for package in {LIGHT_PACKAGES!r} + ("predictions.config",):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), package + "."):
        importlib.import_module(info.name)
print(json.dumps({{**loaded, "modules": sorted(m for m in {TRAINING_ONLY!r} if m in sys.modules)}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"import predictions": [], "modules": []}


def test_the_rows_have_a_field_for_each_built_in_metric():
    """The built-in metrics are columns of both tables: a metric added to the registry needs its field."""
    assert tuple(REGISTRY) == METRICS
    for record in (PredictionRow, RolloutRow):
        names = [field.name for field in fields(record)]
        assert set(METRICS) <= set(names), record
        assert all(REGISTRY[name].name == name for name in METRICS)
