"""The real traces in `../shared/data/traffic/` (read there, never copied into the project) and
the statistics that compare a traffic shape with them.

- `hourly_series()`: the 12 real hourly request series of NAB (tweet volumes, NYC taxi, an
  AWS load balancer) plus `burstgpt`, real LLM API traffic rebuilt hourly from BurstGPT's daily
  request totals and the hour-of-week profile of its first week of tokens.
- `labelled_windows()`: NAB's labelled anomaly windows.
- `shape_stats()`: how far each hour strays from the median of the same hour of the week over
  the previous four weeks (quantiles and log-MAD of that ratio), how much a day's total moves
  against the same weekday a week before, and the dispersion index (squared deviation over the
  usual count: 1 for Poisson noise).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """`$SPENDWATCH_TRAFFIC_DATA`, else `../shared/data/traffic` beside the checkout."""
    path = Path(os.environ.get("SPENDWATCH_TRAFFIC_DATA") or REPO.parent / "shared/data/traffic")
    if not (path / "hourly_requests.csv").is_file():
        raise FileNotFoundError(
            f"real traffic traces not found in {path}: set SPENDWATCH_TRAFFIC_DATA to the folder "
            "holding hourly_requests.csv (shared/data/traffic of the workspace)"
        )
    return path


def hourly_series(folder: Path | None = None) -> dict[str, pd.Series]:
    """name -> hourly request counts indexed by naive UTC hour, gaps filled with 0."""
    folder = folder or data_dir()
    frame = pd.read_csv(folder / "hourly_requests.csv", parse_dates=["hour_at"])
    frame["hour_at"] = frame["hour_at"].dt.tz_convert(None)
    out: dict[str, pd.Series] = {}
    for name, rows in frame.groupby("series"):
        s = rows.set_index("hour_at")["requests"].astype(float).sort_index()
        out[str(name)] = s.reindex(pd.date_range(s.index[0], s.index[-1], freq="h"), fill_value=0)
    out["burstgpt"] = _burstgpt(folder)
    return out


def _burstgpt(folder: Path) -> pd.Series:
    """BurstGPT's 61 daily request totals spread over the hours of each day by the hour profile
    of the same weekday in its first (hourly) week. The day numbers are undated: day 0 is put
    on a Monday."""
    daily = pd.read_csv(folder / "burstgpt_daily.csv").sort_values("day")
    week = pd.read_csv(folder / "burstgpt_hourly_tokens.csv").sort_values("hour")
    profile = week["total_tokens"].to_numpy(dtype=float).reshape(7, 24)
    profile = (profile + 1.0) / (profile + 1.0).sum(axis=1, keepdims=True)
    values = np.concatenate(
        [req * profile[day % 7] for day, req in zip(daily["day"], daily["requests"], strict=True)]
    )
    index = pd.date_range("2023-01-02", periods=values.size, freq="h")  # a Monday
    return pd.Series(values, index=index)


def labelled_windows(folder: Path | None = None) -> pd.DataFrame:
    """series, start_at, end_at (naive UTC) of NAB's labelled anomalies."""
    frame = pd.read_csv((folder or data_dir()) / "known_anomalies.csv",
                        parse_dates=["start_at", "end_at"])  # fmt: skip
    for column in ("start_at", "end_at"):
        frame[column] = frame[column].dt.tz_convert(None)
    return frame[["series", "start_at", "end_at"]]


@dataclass(frozen=True)
class ShapeStats:
    """How an hourly count series strays from the median of the same hour of the week over the
    previous four weeks (as many of them as there are)."""

    hours: int
    q10: float
    q50: float
    q90: float
    q99: float
    log_mad: float  # 1.4826 × median |ln ratio|: the robust hourly spread
    share_above_1_5: float  # of hours at >= 1.5× their usual
    week_over_week: float  # stddev of ln(a day's total / the same weekday's a week before)
    dispersion: float  # median of (count - usual)² / usual: 1 for Poisson noise


def shape_stats(counts: pd.Series) -> ShapeStats:
    s = pd.Series(counts.to_numpy(dtype=float), index=pd.DatetimeIndex(counts.index))
    hour_of_week = s.index.dayofweek * 24 + s.index.hour
    usual = s.groupby(hour_of_week).transform(
        lambda x: x.shift(1).rolling(4, min_periods=1).median()
    )
    ok = usual > 0
    ratio = (s[ok] / usual[ok]).dropna()
    log_ratio = np.log(ratio[ratio > 0])
    daily = s.resample("D").sum().iloc[1:-1]
    daily = daily.where(daily > 0)
    return ShapeStats(
        hours=int(ratio.size),
        q10=float(ratio.quantile(0.10)),
        q50=float(ratio.quantile(0.50)),
        q90=float(ratio.quantile(0.90)),
        q99=float(ratio.quantile(0.99)),
        log_mad=float(1.4826 * (log_ratio - log_ratio.median()).abs().median()),
        share_above_1_5=float((ratio >= 1.5).mean()),
        week_over_week=float(np.log(daily / daily.shift(7)).dropna().std()),
        dispersion=float((((s - usual) ** 2) / usual)[ok].median()),
    )


#: the real series whose counts are large enough (a mean above ~200 an hour) that their
#: hourly variability is the service's own, not the shot noise of counting a few events
SERVICE_SERIES = ("aws_elb_requests", "nyc_taxi", "tweets_AMZN", "tweets_FB", "tweets_GOOG")
