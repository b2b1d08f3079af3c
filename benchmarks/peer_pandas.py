"""The peer of `make bench`: the floor's work (benchmarks/floor.sql) written in pandas, the way a
user would by hand — read every JSONL file of the landing folder into one DataFrame, merge the
price list, aggregate per hour × feature × environment, then a rolling 168-hour mean and
standard deviation per series.

Same pricing rules as the floor (a name's own price rows first, else its canonical model's via
the exact aliases; long-context tier; batch discount), so the two must agree: the harness's smoke
test holds them to it. This is a benchmark peer, not spendwatch code: the warehouse prices calls
in SQL only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = [
    "occurred_at", "provider", "model", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "feature", "environment", "service_tier",
]  # fmt: skip
PRICE_COLUMNS = [
    "long_threshold", "input_price", "output_price", "cache_read_price", "cache_write_price",
    "long_input_price", "long_output_price", "long_cache_read_price", "long_cache_write_price",
    "batch_discount",
]  # fmt: skip


def read_prices(seeds: Path) -> pd.DataFrame:
    raw = pd.read_csv(seeds / "model_prices.csv", parse_dates=["valid_from", "valid_to"])
    return pd.DataFrame(
        {
            "provider": raw["provider"].str.lower(),
            "price_model": raw["model"],
            "valid_from": raw["valid_from"],
            "valid_to": raw["valid_to"].fillna(pd.Timestamp.max),
            "long_threshold": raw["long_context_threshold_tokens"],
            "input_price": raw["input_usd_per_mtok"],
            "output_price": raw["output_usd_per_mtok"],
            "cache_read_price": raw["cache_read_usd_per_mtok"].fillna(raw["input_usd_per_mtok"]),
            "cache_write_price": raw["cache_write_usd_per_mtok"].fillna(raw["input_usd_per_mtok"]),
            "long_input_price": raw["long_input_usd_per_mtok"].fillna(raw["input_usd_per_mtok"]),
            "long_output_price": raw["long_output_usd_per_mtok"].fillna(raw["output_usd_per_mtok"]),
            "long_cache_read_price": raw["long_cache_read_usd_per_mtok"]
            .fillna(raw["cache_read_usd_per_mtok"])
            .fillna(raw["long_input_usd_per_mtok"])
            .fillna(raw["input_usd_per_mtok"]),
            "long_cache_write_price": raw["long_cache_write_usd_per_mtok"]
            .fillna(raw["cache_write_usd_per_mtok"])
            .fillna(raw["long_input_usd_per_mtok"])
            .fillna(raw["input_usd_per_mtok"]),
            "batch_discount": raw["batch_discount"].fillna(0.0),
        }
    )


def read_calls(landing: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(landing.glob("date=*/hour=*/*.jsonl")):
        frame = pd.read_json(path, lines=True, convert_dates=False)
        frames.append(frame.reindex(columns=COLUMNS))  # keep what the work needs
    calls = pd.concat(frames, ignore_index=True)
    calls["occurred_at"] = pd.to_datetime(calls["occurred_at"], utc=True).dt.tz_localize(None)
    calls["provider"] = calls["provider"].str.strip().str.lower()
    calls["model"] = calls["model"].str.strip()
    calls["environment"] = calls["environment"].fillna("production").str.lower()
    calls["service_tier"] = calls["service_tier"].fillna("standard").str.lower()
    for column in ("cache_read_tokens", "cache_write_tokens"):
        calls[column] = calls[column].fillna(0).astype("int64")
    return calls


def price(calls: pd.DataFrame, seeds: Path) -> pd.Series:
    """The cost of each call in USD (NaN when no price row is valid at occurred_at)."""
    prices = read_prices(seeds)
    aliases = pd.read_csv(seeds / "model_aliases.csv")
    aliases = aliases[aliases["match_type"].str.lower() == "exact"]
    names = zip(aliases["provider"].str.lower(), aliases["alias"], strict=True)
    canonical = dict(zip(names, aliases["model"], strict=True))
    keys = calls[["provider", "model", "occurred_at"]].copy()
    keys["row"] = np.arange(len(keys))
    keys["canonical"] = [
        canonical.get(key, key[1]) for key in zip(keys["provider"], keys["model"], strict=True)
    ]  # fmt: skip

    def valid_rows(model_column: str) -> pd.DataFrame:
        merged = keys.merge(
            prices, left_on=["provider", model_column], right_on=["provider", "price_model"]
        )
        valid = (merged["occurred_at"] >= merged["valid_from"]) & (
            merged["occurred_at"] < merged["valid_to"]
        )
        return merged.loc[valid, ["row", *PRICE_COLUMNS]]

    own = valid_rows("model")
    by_canonical = valid_rows("canonical")
    chosen = pd.concat([own, by_canonical[~by_canonical["row"].isin(own["row"])]])
    p = chosen.set_index("row").reindex(np.arange(len(calls)))
    long = calls["input_tokens"].to_numpy() > p["long_threshold"].to_numpy()  # NaN → False
    tier = {
        name: np.where(long, p[f"long_{name}"], p[name])
        for name in ("input_price", "output_price", "cache_read_price", "cache_write_price")
    }
    uncached = calls["input_tokens"] - calls["cache_read_tokens"] - calls["cache_write_tokens"]
    factor = np.where(calls["service_tier"] == "batch", 1 - p["batch_discount"], 1.0)
    cost = factor * (
        uncached * tier["input_price"]
        + calls["cache_read_tokens"] * tier["cache_read_price"]
        + calls["cache_write_tokens"] * tier["cache_write_price"]
        + calls["output_tokens"] * tier["output_price"]
    )
    return cost / 1e6


def hourly_feature_cost(landing: Path, seeds: Path) -> pd.DataFrame:
    """One row per (hour_at, feature, environment) with calls, cost_usd and the trailing
    168-hour mean and sample standard deviation of both (the hour itself excluded)."""
    calls = read_calls(landing)
    calls["cost_usd"] = price(calls, seeds)
    calls["hour_at"] = calls["occurred_at"].dt.floor("h")
    hourly = (
        calls.groupby(["hour_at", "feature", "environment"], sort=True)
        .agg(calls=("model", "size"), cost_usd=("cost_usd", "sum"))
        .reset_index()
        .sort_values(["feature", "environment", "hour_at"], ignore_index=True)
    )
    rolling = (
        hourly.groupby(["feature", "environment"], sort=False)
        .rolling("168h", on="hour_at", closed="left")[["calls", "cost_usd"]]
        .agg(["mean", "std"])
    )
    rolling.columns = ["calls_baseline", "calls_stddev", "cost_usd_baseline", "cost_usd_stddev"]
    return hourly.merge(rolling.reset_index(), on=["hour_at", "feature", "environment"])
