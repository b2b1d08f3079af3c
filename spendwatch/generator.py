"""Synthetic LLM traffic: shaped like real traffic, deterministic for a seed, with known incidents.

`generate()` draws every call of the requested window with numpy (vectorised, no per-call
Python loop) and lets DuckDB write the landing layout of DESIGN.md in one `COPY`:
`<out>/date=YYYY-MM-DD/hour=HH/generator-0.jsonl`, one file per UTC hour. Injected incidents
are written to `<out>/incidents.json` (the ground truth the detector tests check against).

Volume: per (hour, feature, environment) the expected call count is `calls_per_day × feature
share × environment share × hour-of-day × day-of-week`, normalised so a week averages
`calls_per_day`, times what real traffic adds to a smooth curve (`TrafficModel`, calibrated
against the real traces in `../shared/data/traffic`: overdispersed and autocorrelated hours,
day-to-day level changes, a trend, overnight level shifts, one-hour bursts and dips); the count
is Poisson around that. A caller may instead pass the expected counts (`volume=`), e.g. a real
request series scaled to a feature, as the detection evaluation does. Each call draws a model
from the feature's mix (sometimes under a dated snapshot name), input and output tokens from the
shapes of real LLM requests (`TOKEN_SHAPES`, Azure LLM inference trace 2023) scaled to the
feature's medians, prompt-cache reads (and Anthropic cache writes) on the features that cache,
retries and errors.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import duckdb
import numpy as np

from spendwatch.config import REPO_DIR

WRITER_ID = "generator"

# Relative traffic by hour of day (UTC, 0..23) and day of week (Monday=0): a Tuesday afternoon
# is several times a Sunday night.
HOUR_OF_DAY = np.array(
    [0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.5, 0.8, 1.1, 1.35, 1.5, 1.55,
     1.5, 1.55, 1.6, 1.6, 1.5, 1.3, 1.1, 0.9, 0.7, 0.55, 0.4, 0.3]
)  # fmt: skip
DAY_OF_WEEK = np.array([1.1, 1.15, 1.12, 1.08, 1.0, 0.6, 0.5])

ENVIRONMENTS = {"production": 0.85, "staging": 0.10, "dev": 0.05}


@dataclass(frozen=True)
class TrafficModel:
    """What real request streams add to a smooth seasonal curve, per (feature, environment)
    series, as multiplicative factors of its expected hourly calls.

    Calibrated against the real traces in `../shared/data/traffic` (statistics in
    `benchmarks/real_traffic.py`; `tests/test_traffic_model.py` holds the two together):
    against the median of the same hour of the week over the previous four weeks, real service
    traffic (an AWS load balancer, NYC taxi demand, the busier tweet-volume series) strays by a
    log-MAD of 0.08-0.46, with a 90th percentile of 1.15-1.7x, a 99th of 1.5-3.6x, 1-14 % of
    hours at 1.5x or more, and days 12-33 % off the same weekday a week before. The defaults
    sit inside those ranges, near their middle (0.28, 1.45x, 2.0x, 8 %, 21 %).
    `smooth()` is the old model: Poisson noise around the curve, nothing else.
    """

    hour_sigma: float = 0.15  # log-normal noise of an hour (overdispersion beyond Poisson)
    hour_rho: float = 0.6  # AR(1) correlation of consecutive hours' noise
    day_sigma: float = 0.1  # AR(1) innovations of the daily level (log)
    day_phi: float = 0.6  # persistence of the daily level
    trend_sigma: float = 0.04  # per-series trend, log per week (≈ ±4 % a week)
    shifts_per_week: float = 0.08  # overnight level shifts per series-week (they stay)
    shift_range: tuple[float, float] = (0.7, 1.45)  # their size (log-uniform)
    bursts_per_week: float = 0.7  # one-hour bursts per series-week
    burst_range: tuple[float, float] = (1.3, 2.0)  # their size (log-uniform)
    dips_per_week: float = 0.25  # one- or two-hour dips (a partial outage upstream)
    dip_range: tuple[float, float] = (0.35, 0.7)

    @classmethod
    def smooth(cls) -> TrafficModel:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (1, 1), 0.0, (1, 1), 0.0, (1, 1))

    def factors(self, n_hours: int, n_series: int, rng: np.random.Generator) -> np.ndarray:
        """(n_hours, n_series) multiplicative factors, mean about 1, for hourly series that
        start at midnight UTC (a level shift happens between 00:00 and 06:00)."""
        n_days = -(-n_hours // 24)
        log = np.zeros((n_hours, n_series))
        # autocorrelated hour noise, stationary AR(1) with marginal sd hour_sigma
        noise = rng.normal(0.0, 1.0, (n_hours, n_series))
        ar = np.empty_like(noise)
        ar[0] = noise[0]
        innovation = np.sqrt(1 - self.hour_rho**2)
        for h in range(1, n_hours):
            ar[h] = self.hour_rho * ar[h - 1] + innovation * noise[h]
        log += self.hour_sigma * ar
        # daily level: AR(1) around 0
        day = np.zeros((n_days, n_series))
        day_noise = rng.normal(0.0, self.day_sigma, (n_days, n_series))
        for d in range(1, n_days):
            day[d] = self.day_phi * day[d - 1] + day_noise[d]
        log += np.repeat(day, 24, axis=0)[:n_hours]
        # trend
        weeks = np.arange(n_hours)[:, None] / 168.0
        log += weeks * rng.normal(0.0, self.trend_sigma, (1, n_series))
        # overnight level shifts that stay
        for series in range(n_series):
            for _ in range(rng.poisson(self.shifts_per_week * n_hours / 168)):
                at = int(rng.integers(0, n_days)) * 24 + int(rng.integers(0, 6))
                log[at:, series] += rng.uniform(*np.log(self.shift_range))
        # one-hour bursts and short dips
        for rate, size, longest in (
            (self.bursts_per_week, self.burst_range, 1),
            (self.dips_per_week, self.dip_range, 2),
        ):
            count = rng.poisson(rate * n_hours / 168 * n_series)
            hours = rng.integers(0, n_hours, count)
            series = rng.integers(0, n_series, count)
            lengths = rng.integers(1, longest + 1, count)
            sizes = rng.uniform(*np.log(size), count)
            for h, s_, n, v in zip(hours, series, lengths, sizes, strict=True):
                log[h : h + n, s_] += v
        factors = np.exp(log)
        return factors / factors.mean(axis=0, keepdims=True)


#: Shapes of real prompt and completion lengths (quantiles as multiples of the median), from
#: 28,185 requests of the Azure LLM inference trace 2023 (a coding and a conversation
#: service; CC-BY-4.0). A feature scales a shape to its own medians; the two are drawn
#: independently (their log correlation is below 0.1 in the trace).
TOKEN_QUANTILES = np.array(
    [0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1]
)
TOKEN_SHAPES = {
    ("code", "input"): [0.00204, 0.0116, 0.0511, 0.1, 0.262, 0.524, 0.732, 1.0, 1.3, 1.66,
                        2.17, 3.53, 4.97, 5.06, 5.06],
    ("code", "output"): [0.462, 0.462, 0.462, 0.538, 0.615, 0.692, 0.846, 1.0, 1.23, 1.54,
                         2.23, 4.23, 6.92, 19.3, 146.0],
    ("conv", "input"): [0.00196, 0.0284, 0.177, 0.203, 0.379, 0.395, 0.689, 1.0, 1.05, 1.11,
                        1.29, 2.68, 4.0, 4.06, 13.8],
    ("conv", "output"): [0.0543, 0.124, 0.318, 0.419, 0.597, 0.705, 0.798, 1.0, 1.37, 2.98,
                         3.1, 3.29, 3.5, 4.66, 7.75],
}  # fmt: skip
MAX_OUTPUT_TOKENS = 16_384


def draw_tokens(shape: str, kind: str, median: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Token counts with the real `shape` ('code' | 'conv') of `kind` ('input' | 'output'),
    scaled to `median` (one per call): inverse CDF, log-linear between the quantiles."""
    log_ratio = np.interp(rng.random(median.size), TOKEN_QUANTILES,
                          np.log(TOKEN_SHAPES[(shape, kind)]))  # fmt: skip
    return np.maximum(1, np.round(median * np.exp(log_ratio))).astype(np.int64)


@dataclass(frozen=True)
class ModelSpec:
    provider: str
    name: str
    snapshots: tuple[str, ...] = ()  # dated names that resolve to `name`


MODELS = {
    "gpt-4o-mini": ModelSpec("openai", "gpt-4o-mini", ("gpt-4o-mini-2024-07-18",)),
    "gpt-4o": ModelSpec("openai", "gpt-4o", ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20")),
    "claude-3-5-haiku": ModelSpec("anthropic", "claude-3-5-haiku", ("claude-3-5-haiku-20241022",)),
    "claude-3-5-sonnet": ModelSpec(
        "anthropic",
        "claude-3-5-sonnet",
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-20240620"),
    ),
    "claude-3-opus": ModelSpec("anthropic", "claude-3-opus", ("claude-3-opus-20240229",)),
}
MODEL_KEYS = list(MODELS)


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    team_id: str
    endpoint: str
    share: float  # of all calls
    models: dict[str, float]  # model key -> share of the feature's calls
    input_median: float
    output_median: float
    cache_hit_rate: float = 0.0  # share of calls that read the prompt cache
    prompt_version: str = "v1"
    input_shape: str = "conv"  # TOKEN_SHAPES: code (completion-like) or conv (chat-like)
    output_shape: str = "conv"


FEATURES = [
    FeatureSpec("smart-reply", "team-messaging", "/api/v1/reply", 0.34,
                {"gpt-4o-mini": 0.9, "gpt-4o": 0.1}, 700, 60),
    FeatureSpec("chat-assistant", "team-support", "/api/v1/chat", 0.24,
                {"gpt-4o": 0.7, "gpt-4o-mini": 0.3}, 2500, 380, 0.8, "v7"),
    FeatureSpec("rag-search", "team-search", "/api/v1/search", 0.2,
                {"gpt-4o-mini": 1.0}, 4200, 220, 0.85, "v3"),
    FeatureSpec("summarization", "team-docs", "/api/v1/summarize", 0.14,
                {"claude-3-5-haiku": 0.8, "claude-3-5-sonnet": 0.2}, 6000, 320, 0.8, "v2"),
    FeatureSpec("code-review", "team-devtools", "/api/v1/review", 0.08,
                {"claude-3-5-sonnet": 1.0}, 11000, 900, 0.85, "v4", "code", "conv"),
]  # fmt: skip
FEATURE_NAMES = [f.name for f in FEATURES]

BASE_RETRY_SHARE = 0.03
BASE_ERROR_SHARE = 0.015


@dataclass
class Incident:
    """One injected incident: what changes, where, from when, for how long."""

    type: str  # volume_spike | prompt_bloat | model_fallback | cache_drop | retry_storm | silence
    feature: str
    environment: str
    start: str  # ISO hour, UTC
    hours: int
    detector: str = ""  # the detector expected to find it
    severity: str = ""  # the severity expected at its peak
    params: dict = field(default_factory=dict)

    @property
    def start_at(self) -> datetime:
        return _parse_hour(self.start)


# How each incident type changes the traffic, and the severity it reaches at its peak. Which
# detector should find it is the `detectors` seed's generator_incident column (the one list of
# detectors); incident_detectors() joins the two.
INCIDENT_SHAPES = {
    "volume_spike": ("critical", {"multiplier": 3.5}),
    "prompt_bloat": ("critical", {"input_multiplier": 4.0}),
    "model_fallback": ("critical", {"model": "claude-3-opus", "share": 0.6}),
    "cache_drop": ("critical", {"cache_hit_rate": 0.1}),
    "retry_storm": ("critical", {"retry_share": 0.45, "error_share": 0.35}),
    "silence": ("critical", {}),
}


@cache
def incident_detectors() -> dict[str, str]:
    """Incident type → the detector expected to find it, from seeds/detectors.csv."""
    with (REPO_DIR / "seeds" / "detectors.csv").open(newline="") as f:
        seeded = {row["generator_incident"]: row["detector"]
                  for row in csv.DictReader(f) if row["generator_incident"]}  # fmt: skip
    if set(seeded) != set(INCIDENT_SHAPES):
        raise ValueError(
            f"seeds/detectors.csv names generator incidents {sorted(seeded)}; the generator "
            f"knows {sorted(INCIDENT_SHAPES)}"
        )
    return seeded


def incident_spec(kind: str) -> tuple[str, str, dict]:
    """(detector, severity, params) of an incident type."""
    severity, params = INCIDENT_SHAPES[kind]
    return incident_detectors()[kind], severity, dict(params)


def default_incidents(start: datetime, days: int) -> list[Incident]:
    """One incident of each type in the last days of the window, at fixed local offsets, and
    two fresh ones in its last two hours.

    They start at fixed offsets in the last six days, after at least two weeks of history, so
    a seasonal baseline exists for every one of them. The fresh ones are what a demo run alerts
    on (the older incidents are history by then): smart-reply falling back to claude-3-opus
    (a model it may not use, 7x the price of its dearest allowed one: critical) and
    chat-assistant to claude-3-5-sonnet (not allowed, 1.4x: a warning).
    """
    end = start + timedelta(days=days)
    day0 = (end - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
    plan = [
        ("volume_spike", "smart-reply", 0, 14, 3),
        ("prompt_bloat", "summarization", 1, 10, 4),
        ("model_fallback", "code-review", 2, 15, 3),
        ("cache_drop", "rag-search", 3, 9, 4),
        ("retry_storm", "chat-assistant", 3, 16, 2),
        ("silence", "smart-reply", 4, 11, 3),
    ]
    fresh = _floor_hour(end) - timedelta(hours=2) - day0
    incidents = []
    for kind, feature, day, hour, hours in plan:
        at = day0 + timedelta(days=day, hours=hour)
        if at < start + timedelta(days=14) or at + timedelta(hours=hours) > end:
            continue  # a window too short to give a baseline gets no incident
        detector, severity, params = incident_spec(kind)
        incidents.append(
            Incident(kind, feature, "production", _iso_hour(at), hours, detector, severity,
                     dict(params))
        )  # fmt: skip
    for feature, model, severity in (
        ("chat-assistant", "claude-3-5-sonnet", "warning"),
        ("smart-reply", "claude-3-opus", "critical"),
    ):
        at = day0 + fresh
        if at >= start + timedelta(days=14):
            incidents.append(
                Incident("model_fallback", feature, "production", _iso_hour(at), 2,
                         "model_drift", severity, {"model": model, "share": 0.6})
            )  # fmt: skip
    return incidents


def load_incidents(spec: str, start: datetime, days: int) -> list[Incident]:
    """`default`, `none`, or the path of a JSON list of incidents (fields of `Incident`)."""
    if spec == "default":
        return default_incidents(start, days)
    if spec == "none":
        return []
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--incidents must be 'default', 'none' or a JSON file; {spec!r} is none")
    incidents = []
    for i, item in enumerate(json.loads(path.read_text())):
        kind = item.get("type")
        if kind not in INCIDENT_SHAPES:
            raise ValueError(
                f"{path}: incident {i} has type {kind!r}; expected one of "
                f"{', '.join(INCIDENT_SHAPES)}"
            )
        if item.get("feature") not in FEATURE_NAMES:
            raise ValueError(f"{path}: incident {i} names unknown feature {item.get('feature')!r}")
        detector, severity, params = incident_spec(kind)
        incidents.append(
            Incident(
                type=kind, feature=item["feature"],
                environment=item.get("environment", "production"),
                start=_iso_hour(_parse_hour(item["start"])), hours=int(item.get("hours", 1)),
                detector=item.get("detector", detector), severity=item.get("severity", severity),
                params={**params, **item.get("params", {})},
            )
        )  # fmt: skip
    return incidents


@dataclass
class GenerationResult:
    out: Path
    calls: int
    hours: int
    files: int
    incidents: list[Incident]


def expected_volume(
    start: datetime,
    n_hours: int,
    calls_per_day: float,
    traffic: TrafficModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """Expected calls per (hour, feature, environment) from `start` (a UTC hour): the seasonal
    curve normalised so a week averages `calls_per_day`, times the feature and environment
    shares, times the irregularities `traffic` draws for each series."""
    hour_starts = np.datetime64(start.replace(tzinfo=None), "s") + np.arange(n_hours) * 3600
    hod = (hour_starts.astype("datetime64[h]").astype(np.int64)) % 24
    dow = (hour_starts.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01: Thursday
    season = HOUR_OF_DAY[hod] * DAY_OF_WEEK[dow]
    season = season / (HOUR_OF_DAY.sum() * DAY_OF_WEEK.mean()) * 24
    shares = np.array([f.share for f in FEATURES])[:, None] * np.array(list(ENVIRONMENTS.values()))
    lam = calls_per_day / 24 * season[:, None, None] * shares[None, :, :]
    factors = traffic.factors(n_hours + start.hour, lam[0].size, rng)[start.hour :]
    return lam * factors.reshape(lam.shape)


def generate(
    out: str | Path,
    start: datetime,
    days: int,
    calls_per_day: int = 20_000,
    seed: int = 42,
    incidents: list[Incident] | None = None,
    traffic: TrafficModel | None = None,
    volume: np.ndarray | None = None,
    environments: list[str] | None = None,
) -> GenerationResult:
    """Write `days` of synthetic calls starting at `start` (floored to the hour, UTC).

    `traffic` shapes the volume (default `TrafficModel()`; `TrafficModel.smooth()` for Poisson
    around the seasonal curve). `volume`, an array (hours, features, environments) of expected
    calls, replaces that volume model altogether; `environments` then names its last axis
    (default: production, staging, dev)."""
    if days <= 0 or calls_per_day <= 0:
        raise ValueError("days and calls_per_day must be positive")
    start = _floor_hour(start)
    incidents = incidents or []
    out = Path(out)
    rng = np.random.default_rng(seed)
    n_hours = days * 24
    hour_starts = np.datetime64(start.replace(tzinfo=None), "s") + np.arange(n_hours) * 3600
    n_f = len(FEATURES)
    env_names = list(environments or ENVIRONMENTS)

    if volume is not None:
        lam = np.asarray(volume, dtype=float)
        if lam.shape != (n_hours, n_f, len(env_names)):
            raise ValueError(
                f"volume has shape {lam.shape}; expected (hours, features, environments) = "
                f"{(n_hours, n_f, len(env_names))}"
            )
    else:
        if environments is not None:
            raise ValueError("environments names the last axis of volume; pass both or neither")
        lam = expected_volume(start, n_hours, calls_per_day, traffic or TrafficModel(), rng)

    # Per-cell knobs that incidents turn.
    volume = np.ones_like(lam)
    input_mult = np.ones_like(lam)
    fallback_share = np.zeros_like(lam)
    fallback_model = np.zeros_like(lam, dtype=np.int64)
    hit_rate = np.broadcast_to(
        np.array([f.cache_hit_rate for f in FEATURES])[None, :, None], lam.shape
    ).copy()
    retry_share = np.full_like(lam, BASE_RETRY_SHARE)
    error_share = np.full_like(lam, BASE_ERROR_SHARE)
    for inc in incidents:
        h0 = int((inc.start_at - start) / timedelta(hours=1))
        hs = slice(max(h0, 0), max(min(h0 + inc.hours, n_hours), 0))
        fi, ei = FEATURE_NAMES.index(inc.feature), env_names.index(inc.environment)
        p = inc.params
        if inc.type == "volume_spike":
            volume[hs, fi, ei] = p["multiplier"]
        elif inc.type == "prompt_bloat":
            input_mult[hs, fi, ei] = p["input_multiplier"]
        elif inc.type == "model_fallback":
            fallback_share[hs, fi, ei] = p["share"]
            fallback_model[hs, fi, ei] = MODEL_KEYS.index(p["model"])
        elif inc.type == "cache_drop":
            hit_rate[hs, fi, ei] = p["cache_hit_rate"]
        elif inc.type == "retry_storm":
            retry_share[hs, fi, ei] = p["retry_share"]
            error_share[hs, fi, ei] = p["error_share"]
        elif inc.type == "silence":
            volume[hs, fi, ei] = 0.0

    counts = rng.poisson(lam * volume)
    cell = np.repeat(np.arange(counts.size), counts.ravel())
    n = cell.size
    h_idx, f_idx, e_idx = np.unravel_index(cell, counts.shape)

    # Model: the feature's mix, or the incident's fallback model.
    mix = np.zeros((n_f, len(MODEL_KEYS)))
    for i, f in enumerate(FEATURES):
        for key, share in f.models.items():
            mix[i, MODEL_KEYS.index(key)] = share
    cum = np.cumsum(mix, axis=1)[f_idx]
    model_idx = (rng.random(n)[:, None] > cum).sum(axis=1).clip(max=len(MODEL_KEYS) - 1)
    falls_back = rng.random(n) < fallback_share.ravel()[cell]
    model_idx = np.where(falls_back, fallback_model.ravel()[cell], model_idx)
    # A quarter of calls name a dated snapshot instead of the model itself.
    names = [[m.name, *m.snapshots] for m in MODELS.values()]
    name_table = np.array([n for group in names for n in group])
    name_offset = np.cumsum([0] + [len(g) for g in names])[:-1]
    use_snapshot = rng.random(n) < 0.25
    n_snapshots = np.array([len(g) - 1 for g in names])[model_idx]
    nth_snapshot = 1 + (rng.random(n) * np.maximum(n_snapshots, 1)).astype(np.int64)
    pick = np.where(use_snapshot & (n_snapshots > 0), nth_snapshot, 0)
    model_name = name_table[name_offset[model_idx] + pick]
    provider = np.array([m.provider for m in MODELS.values()])[model_idx]

    # Tokens: the real shapes, scaled to the feature's medians; prompt bloat multiplies input.
    in_med = np.array([f.input_median for f in FEATURES])[f_idx] * input_mult.ravel()[cell]
    out_med = np.array([f.output_median for f in FEATURES])[f_idx].astype(float)
    input_tokens = np.zeros(n, dtype=np.int64)
    output_tokens = np.zeros(n, dtype=np.int64)
    for i, f in enumerate(FEATURES):
        mine = f_idx == i
        input_tokens[mine] = draw_tokens(f.input_shape, "input", in_med[mine], rng)
        output_tokens[mine] = draw_tokens(f.output_shape, "output", out_med[mine], rng)
    output_tokens = np.minimum(output_tokens, MAX_OUTPUT_TOKENS)

    # Prompt cache: a hit reads most of the prompt; Anthropic misses often write the cache.
    hits = rng.random(n) < hit_rate.ravel()[cell]
    cache_read = np.where(hits, (input_tokens * rng.uniform(0.55, 0.9, n)).astype(np.int64), 0)
    caches = np.array([f.cache_hit_rate > 0 for f in FEATURES])[f_idx]
    writes = caches & ~hits & (provider == "anthropic") & (rng.random(n) < 0.5)
    cache_write = np.where(writes, (input_tokens * 0.6).astype(np.int64), 0)

    # Retries and errors; a failed call returns no output.
    retried = rng.random(n) < retry_share.ravel()[cell]
    attempt = np.where(retried, 2 + (rng.random(n) < 0.3), 1)
    failed = rng.random(n) < error_share.ravel()[cell]
    output_tokens = np.where(failed, 0, output_tokens)
    status = np.where(failed, "error", "ok")
    latency_ms = np.round(150 + output_tokens * rng.uniform(8, 14, n) + input_tokens * 0.02, 1)

    offsets_ms = rng.integers(0, 3_600_000, n)
    occurred_ms = hour_starts.astype(np.int64)[h_idx] * 1000 + offsets_ms
    ids = rng.integers(0, np.iinfo(np.int64).max, (n, 2), dtype=np.int64)

    columns = {
        "id_hi": ids[:, 0],
        "id_lo": ids[:, 1],
        "occurred_ms": occurred_ms,
        "provider": provider,
        "model": model_name,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "feature": np.array(FEATURE_NAMES)[f_idx],
        "endpoint": np.array([f.endpoint for f in FEATURES])[f_idx],
        "environment": np.array(env_names)[e_idx],
        "team_id": np.array([f.team_id for f in FEATURES])[f_idx],
        "user_no": rng.zipf(1.6, n) % 5000,
        "prompt_version": np.array([f.prompt_version for f in FEATURES])[f_idx],
        "status": status,
        "attempt": attempt,
        "latency_ms": latency_ms,
        "region": np.array(["us-east-1", "eu-west-1"])[(rng.random(n) < 0.3).astype(np.int64)],
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_landing(columns, out)
    (out / "incidents.json").write_text(json.dumps([asdict(i) for i in incidents], indent=2) + "\n")
    files = sum(1 for _ in out.glob(f"date=*/hour=*/{WRITER_ID}-*.jsonl"))
    return GenerationResult(out, n, n_hours, files, incidents)


def _write_landing(columns: dict[str, np.ndarray], out: Path) -> None:
    """One COPY: DuckDB formats the JSON and writes one file per UTC hour folder."""
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    con.register("calls", columns)
    con.execute(
        f"""
        copy (
            with timed as (
                select
                    *,
                    make_timestamp(occurred_ms * 1000) as ts,
                    lpad(to_hex(id_hi), 16, '0') || lpad(to_hex(id_lo), 16, '0') as hex
                from calls
            )
            select
                strftime(ts, '%Y-%m-%d') as date,
                strftime(ts, '%H') as hour,
                lower(substr(hex, 1, 8) || '-' || substr(hex, 9, 4) || '-' || substr(hex, 13, 4)
                    || '-' || substr(hex, 17, 4) || '-' || substr(hex, 21, 12)) as event_id,
                strftime(ts, '%Y-%m-%dT%H:%M:%S.%gZ') as occurred_at,
                provider, model, input_tokens, output_tokens,
                cache_read_tokens, cache_write_tokens,
                feature, endpoint, environment, team_id,
                'user-' || lpad(user_no::varchar, 4, '0') as user_id,
                prompt_version, status, attempt, latency_ms,
                {{'region': region}} as tags
            from timed
            order by ts
        ) to $out (
            format json, partition_by (date, hour), filename_pattern '{WRITER_ID}-{{i}}',
            file_extension 'jsonl', overwrite_or_ignore
        )
        """,
        {"out": str(out)},  # a parameter, never pasted into the SQL: any folder name works
    )
    con.close()


def _floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _parse_hour(text: str) -> datetime:
    return _floor_hour(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _iso_hour(at: datetime) -> str:
    return _floor_hour(at).strftime("%Y-%m-%dT%H:00:00Z")
