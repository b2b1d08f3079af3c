"""The generator's traffic is shaped like the real traces in ../shared/data/traffic (read there,
never copied): its hours stray from their usual as far and as often as real services' do, its
days move like theirs, its counts are overdispersed, and its token lengths have the real
shapes. The old model (Poisson around a smooth curve) is shown to fail the same comparison."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from benchmarks.real_traffic import SERVICE_SERIES, ShapeStats, data_dir, hourly_series, shape_stats
from spendwatch.generator import (
    FEATURES,
    TOKEN_QUANTILES,
    TrafficModel,
    draw_tokens,
    expected_volume,
)

START = datetime(2026, 9, 7, tzinfo=UTC)  # a Monday
WEEKS = 8
COMPARED = ("q10", "q90", "q99", "log_mad", "share_above_1_5", "week_over_week")


@pytest.fixture(scope="module")
def real() -> dict[str, ShapeStats]:
    series = hourly_series()
    return {name: shape_stats(series[name]) for name in SERVICE_SERIES}


def generated(model: TrafficModel, seeds=(1, 2, 3)) -> dict[str, float]:
    """Median over seeds and the five demo features (production) of the shape statistics."""
    rows = []
    index = pd.date_range(START.replace(tzinfo=None), periods=WEEKS * 168, freq="h")
    for seed in seeds:
        rng = np.random.default_rng(seed)
        counts = rng.poisson(expected_volume(START, WEEKS * 168, 20_000, model, rng))
        for f in range(len(FEATURES)):
            rows.append(shape_stats(pd.Series(counts[:, f, 0], index=index)).__dict__)
    return pd.DataFrame(rows).median().to_dict()


def test_generated_hours_stray_like_real_services(real: dict[str, ShapeStats]) -> None:
    ours = generated(TrafficModel())
    for stat in COMPARED:
        values = [getattr(s, stat) for s in real.values()]
        assert min(values) <= ours[stat] <= max(values), (stat, ours[stat], values)
    # overdispersed: squared deviations far above the Poisson level of 1
    assert ours["dispersion"] > 2, ours["dispersion"]


def test_poisson_around_a_smooth_curve_is_calmer_than_real_services(
    real: dict[str, ShapeStats],
) -> None:
    """The old model fails the comparison: its days never move, its tails are thinner than
    any service's, its hours calmer than most, and its counts are plain Poisson."""
    smooth = generated(TrafficModel.smooth())
    for stat in ("q99", "share_above_1_5", "week_over_week"):
        values = [getattr(s, stat) for s in real.values()]
        assert smooth[stat] < min(values), (stat, smooth[stat], values)
    for stat in ("log_mad", "q90"):
        values = [getattr(s, stat) for s in real.values()]
        assert smooth[stat] < float(np.median(values)), (stat, smooth[stat], values)
    assert smooth["dispersion"] < 1.2


@pytest.mark.parametrize("workload", ["code", "conv"])
def test_token_lengths_have_the_real_shapes(workload: str) -> None:
    trace = pd.read_csv(data_dir() / "token_lengths.csv")
    trace = trace[trace.workload == workload]
    rng = np.random.default_rng(0)
    for column, kind in (("context_tokens", "input"), ("generated_tokens", "output")):
        real = trace[column].to_numpy(dtype=float)
        median = np.median(real)
        drawn = draw_tokens(workload, kind, np.full(50_000, median), rng)
        for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.95):
            ours, theirs = np.quantile(drawn, q), np.quantile(real, q)
            assert abs(ours / theirs - 1) < 0.12, (workload, column, q, ours, theirs)
    assert TOKEN_QUANTILES[0] == 0 and TOKEN_QUANTILES[-1] == 1
