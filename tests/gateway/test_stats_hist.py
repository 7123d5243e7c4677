"""The daily histograms behind the percentiles of whole days (gateway/kpis/figures.py
HIST_*): counts and means exact; median and p90 exact for lone values, otherwise within
the stated bin width of the exact nearest-rank figures."""

from __future__ import annotations

import random

from gateway.kpis.figures import Hist, hist_add, hist_bin, hist_summary, summarize


def histogram(values: list[float]) -> Hist:
    h: Hist = {}
    for v in values:
        hist_add(h, hist_bin(v), 1, v, v, v)
    return h


def test_few_distinct_samples_give_the_exact_figures() -> None:
    values = [600.0, 1200.0, 1200.0, 2700.0, 5.0]
    assert hist_summary(histogram(values)) == summarize(values)


def test_many_samples_stay_within_one_percent_or_a_second() -> None:
    rng = random.Random(13)
    for _ in range(20):
        values = [rng.lognormvariate(6, 1.5) for _ in range(rng.randint(1, 5000))]
        exact, approx = summarize(values), hist_summary(histogram(values))
        assert exact is not None and approx is not None
        assert approx.count == exact.count
        assert abs(approx.mean - exact.mean) < 1e-6 * exact.mean
        for a, b in ((approx.median, exact.median), (approx.p90, exact.p90)):
            assert abs(a - b) <= max(1.0, 0.01 * b), (a, b)


def test_bins_merge_as_days_add_up() -> None:
    one, two = histogram([100.0, 200.0]), histogram([150.0, 200.0, 4000.0])
    merged: Hist = {}
    for h in (one, two):
        for b, x in h.items():
            hist_add(merged, b, x.n, x.total, x.lo, x.hi)
    assert hist_summary(merged) == summarize([100.0, 200.0, 150.0, 200.0, 4000.0])
