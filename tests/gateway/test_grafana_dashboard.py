"""The sample Grafana dashboard (docs/grafana/switchboard.json) asks only for series the
gateway exports, with labels they have."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gateway.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "switchboard.json"


def test_every_series_on_the_dashboard_is_exported_with_its_labels() -> None:
    board = json.loads(DASHBOARD.read_text())
    # Each metric's name and declared label names (a labelled one has no sample yet).
    exported: dict[str, set[str]] = {}
    for attr in vars(Metrics()).values():
        name, names = getattr(attr, "_name", None), getattr(attr, "_labelnames", None)
        if name is not None and names is not None:
            exported[str(name).removesuffix("_total")] = set(names)
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        for series, labels in re.findall(r"(switchboard_[a-z_]+)(?:\{([^}]*)\})?", expr):
            base = re.sub(r"_(bucket|count|sum|total)$", "", series)
            assert base in exported, f"{series} is not exported"
            for label in re.findall(r"([a-z_]+)\s*=~?", labels):
                assert label in exported[base] or label == "le", f"{series} has no {label}"
    assert {p["title"] for p in board["panels"]} >= {
        "First response time",
        "Resolution time",
        "Backlog by queue",
        "Waiting by queue",
        "Agents online",
        "CSAT (30 days, % of 4-5)",
    }
