"""Every KPI in `/v1/stats` states its definition in the API document."""

from __future__ import annotations

from gateway.api.openapi import document
from gateway.kpis.figures import DEFINITIONS, Group, figures


def test_each_figure_answered_is_defined_in_the_document() -> None:
    answered = set(figures(Group(), 0.0))
    props = document()["components"]["schemas"]["Figures"]["properties"]
    assert set(props) == answered == set(DEFINITIONS)
    for name, prop in props.items():
        assert prop["description"] == DEFINITIONS[name], name
