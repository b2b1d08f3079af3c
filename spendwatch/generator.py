"""Synthetic LLM traffic: realistic, seasonal, deterministic for a seed, with known incidents.

`generate()` draws every call of the requested window with numpy (vectorised, no per-call
Python loop) and lets DuckDB write the landing layout of DESIGN.md in one `COPY`:
`<out>/date=YYYY-MM-DD/hour=HH/generator-0.jsonl`, one file per UTC hour. Injected incidents
are written to `<out>/incidents.json` (the ground truth the detector tests check against).

Traffic model: per (hour, feature, environment) the expected call count is
`calls_per_day × feature share × environment share × hour-of-day × day-of-week`, normalised so a
week averages `calls_per_day`; the count is Poisson. Each call draws a model from the feature's
mix (sometimes under a dated snapshot name), log-normal input/output tokens, prompt-cache reads
(and Anthropic cache writes) on the features that cache, retries and errors.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

WRITER_ID = "generator"

# Relative traffic by hour of day (UTC, 0..23) and day of week (Monday=0): a Tuesday afternoon
# is several times a Sunday night.
HOUR_OF_DAY = np.array(
    [0.25, 0.2, 0.18, 0.18, 0.2, 0.3, 0.5, 0.8, 1.1, 1.35, 1.5, 1.55,
     1.5, 1.55, 1.6, 1.6, 1.5, 1.3, 1.1, 0.9, 0.7, 0.55, 0.4, 0.3]
)  # fmt: skip
DAY_OF_WEEK = np.array([1.05, 1.15, 1.1, 1.05, 0.95, 0.45, 0.35])

ENVIRONMENTS = {"production": 0.85, "staging": 0.10, "dev": 0.05}


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
                {"claude-3-5-sonnet": 1.0}, 11000, 900, 0.85, "v4"),
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


INCIDENT_DETECTORS = {
    "volume_spike": ("volume_spike", "critical", {"multiplier": 3.5}),
    "prompt_bloat": ("cost_per_call", "critical", {"input_multiplier": 3.0}),
    "model_fallback": ("model_drift", "critical", {"model": "claude-3-opus", "share": 0.6}),
    "cache_drop": ("cache_efficiency", "critical", {"cache_hit_rate": 0.1}),
    "retry_storm": ("retry_storm", "critical", {"retry_share": 0.45, "error_share": 0.35}),
    "silence": ("telemetry_gap", "critical", {}),
}


def default_incidents(start: datetime, days: int) -> list[Incident]:
    """One incident of each type in the last days of the window, at fixed local offsets.

    They start at fixed offsets in the last six days, after at least two weeks of history, so
    a seasonal baseline exists for every one of them.
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
    incidents = []
    for kind, feature, day, hour, hours in plan:
        at = day0 + timedelta(days=day, hours=hour)
        if at < start + timedelta(days=14) or at + timedelta(hours=hours) > end:
            continue  # a window too short to give a baseline gets no incident
        detector, severity, params = INCIDENT_DETECTORS[kind]
        incidents.append(
            Incident(kind, feature, "production", _iso_hour(at), hours, detector, severity,
                     dict(params))
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
        if kind not in INCIDENT_DETECTORS:
            raise ValueError(
                f"{path}: incident {i} has type {kind!r}; expected one of "
                f"{', '.join(INCIDENT_DETECTORS)}"
            )
        if item.get("feature") not in FEATURE_NAMES:
            raise ValueError(f"{path}: incident {i} names unknown feature {item.get('feature')!r}")
        detector, severity, params = INCIDENT_DETECTORS[kind]
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


def generate(
    out: str | Path,
    start: datetime,
    days: int,
    calls_per_day: int = 20_000,
    seed: int = 42,
    incidents: list[Incident] | None = None,
) -> GenerationResult:
    """Write `days` of synthetic calls starting at `start` (floored to the hour, UTC)."""
    if days <= 0 or calls_per_day <= 0:
        raise ValueError("days and calls_per_day must be positive")
    start = _floor_hour(start)
    incidents = incidents or []
    out = Path(out)
    rng = np.random.default_rng(seed)
    n_hours = days * 24
    hour_starts = np.datetime64(start.replace(tzinfo=None), "s") + np.arange(n_hours) * 3600
    hod = (hour_starts.astype("datetime64[h]").astype(np.int64)) % 24
    dow = (hour_starts.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01: Thursday
    n_f = len(FEATURES)

    # Expected calls per (hour, feature, environment) cell, normalised to calls_per_day.
    season = HOUR_OF_DAY[hod] * DAY_OF_WEEK[dow]
    season = season / (HOUR_OF_DAY.sum() * DAY_OF_WEEK.mean()) * 24
    shares = np.array([f.share for f in FEATURES])[:, None] * np.array(list(ENVIRONMENTS.values()))
    lam = calls_per_day / 24 * season[:, None, None] * shares[None, :, :]

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
    env_names = list(ENVIRONMENTS)
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

    # Tokens: log-normal around the feature's medians; prompt bloat multiplies input.
    in_med = np.array([f.input_median for f in FEATURES])[f_idx] * input_mult.ravel()[cell]
    out_med = np.array([f.output_median for f in FEATURES])[f_idx]
    input_tokens = np.maximum(1, rng.lognormal(np.log(in_med), 0.45)).astype(np.int64)
    output_tokens = np.maximum(1, rng.lognormal(np.log(out_med), 0.55)).astype(np.int64)

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
        ) to '{out}' (
            format json, partition_by (date, hour), filename_pattern '{WRITER_ID}-{{i}}',
            file_extension 'jsonl', overwrite_or_ignore
        )
        """
    )
    con.close()


def _floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def _parse_hour(text: str) -> datetime:
    return _floor_hour(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _iso_hour(at: datetime) -> str:
    return _floor_hour(at).strftime("%Y-%m-%dT%H:00:00Z")
