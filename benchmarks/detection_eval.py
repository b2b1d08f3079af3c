"""`make eval-detection`: how the detectors do on real traffic shapes.

For every real hourly series in `../shared/data/traffic/` (NAB's twelve and BurstGPT's LLM API
traffic) a *world* is built: the last `weeks` weeks of the series, moved by whole weeks so its
hours keep their weekday, become the hourly volume of the five demo features (each scaled to its
share of `calls_per_day`, each at its own models and prices), in an environment named after the
series. Calls are drawn around that volume by the generator (Poisson counts, real token-length
shapes, caching, retries). Into every feature of every world three incidents are injected at
random hours after its first week, a week apart and away from NAB's labelled windows, their kinds
taken in turn so the seeds together cover every kind the feature can have: volume ×1.8 (a
warning) and ×3, prompt growth (input ×4), a fallback to a dearer model the policy allows (cost
per call) and to one it does not (model drift), cache loss, a retry storm (60 % retries),
silence. Then the warehouse is built (ingest + `dbt build`, no Dagster: its bookkeeping is
not what is measured here) and scored:

- recall: a critical incident must come back at critical severity in its first hour, a warning
  incident within its first two hours, from the detector expected for it. Incidents that the
  configured guards rule out (fewer calls than min_calls, less money at stake than the
  materiality floors of seeds/alert_thresholds.csv) are counted apart, not as misses.
- false incidents per feature-week: incidents of marts.anomalies (distinct incident_key) that
  overlap no injected incident (nor the 3 hours after it) and no NAB labelled window, over the
  hours after each world's first week; "critical" counts those with a critical hour.
- NAB windows that raised anything, and the naive rule on the same data (hourly cost above the
  mean + 2σ of the previous 168 hours, per feature and environment, grouped into incidents the
  same way).

`python -m benchmarks.detection_eval [--seeds 1 2 3] [--weeks 8] [--series a b] [--project DIR]
[--keep DIR [--rescore]] [--write-docs [--docs-section NAME]]` prints the table (per series and
in total) and with --write-docs puts it into docs/detection.md. `--project` builds with another
checkout's dbt project (the "before" table); `--keep` keeps the warehouses and `--rescore` only
re-runs the detectors on kept ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from benchmarks.real_traffic import hourly_series, labelled_windows
from orchestration.lib.ingest import load_window
from spendwatch.generator import FEATURES, Incident, generate

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "detection.md"
MARK = "eval-detection"  # docs/detection.md: <!-- eval-detection[-suffix]:begin/end -->
END = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday: every world ends in the week before it
FIRST_SCORED_DAY = 7  # a world's first week builds its baselines; incidents and scoring after
GRACE_HOURS = 3  # findings this long after an injected incident still belong to it
INCIDENT_HOURS = 3
INCIDENTS_PER_FEATURE = 3  # per world and seed

# feature -> (kind, params, expected detector, expected severity, min expected calls an hour)
# A dearer model the policy allows exists only for two features; caching only for four.
PLANS: dict[str, list[tuple[str, str, dict, str, str, float]]] = {}


def _plans() -> dict[str, list[tuple[str, str, dict, str, str, float]]]:
    caching = {f.name for f in FEATURES if f.cache_hit_rate > 0}
    allowed_dearer = {"smart-reply": "gpt-4o", "summarization": "claude-3-5-sonnet"}
    forbidden = {
        "smart-reply": "claude-3-opus", "chat-assistant": "claude-3-opus",
        "rag-search": "gpt-4o", "summarization": "claude-3-opus", "code-review": "claude-3-opus",
    }  # fmt: skip
    plans = {}
    for f in FEATURES:
        plan = [
            ("volume_x1.8", "volume_spike", {"multiplier": 1.8}, "volume_spike", "warning", 60),
            ("volume_x3", "volume_spike", {"multiplier": 3.0}, "volume_spike", "critical", 40),
            ("prompt_growth", "prompt_bloat", {"input_multiplier": 4.0}, "cost_per_call",
             "critical", 60),
            ("fallback_not_allowed", "model_fallback", {"model": forbidden[f.name], "share": 0.6},
             "model_drift", "critical", 20),
            ("retry_storm", "retry_storm", {"retry_share": 0.6, "error_share": 0.4},
             "retry_storm", "critical", 60),
            ("silence", "silence", {}, "telemetry_gap", "warning", 30),
        ]  # fmt: skip
        if f.name in allowed_dearer:
            plan.append(("fallback_allowed", "model_fallback",
                         {"model": allowed_dearer[f.name], "share": 0.9}, "cost_per_call",
                         "critical", 60))  # fmt: skip
        if f.name in caching:
            plan.append(("cache_loss", "cache_drop", {"cache_hit_rate": 0.1}, "cache_efficiency",
                         "critical", 60))  # fmt: skip
        plans[f.name] = plan
    return plans


@dataclass
class World:
    name: str
    hours: pd.DatetimeIndex  # naive UTC, on the common calendar
    requests: np.ndarray
    windows: list[tuple[datetime, datetime]]  # NAB windows, moved like the series


@dataclass
class Injected:
    world: str
    feature: str
    label: str
    incident: Incident
    expected_calls: float


@dataclass
class Score:
    series: str
    feature_weeks: float = 0.0
    incidents: Counter = field(default_factory=Counter)  # label -> injected (alert-worthy)
    found: Counter = field(default_factory=Counter)
    guarded: Counter = field(default_factory=Counter)  # below the configured guards
    false: int = 0
    false_critical: int = 0
    false_by_detector: Counter = field(default_factory=Counter)
    naive_false: int = 0
    windows: int = 0
    windows_hit: int = 0


def build_worlds(weeks: int, names: list[str] | None) -> list[World]:
    series = hourly_series()
    windows = labelled_windows()
    worlds = []
    wanted = {n.lower() for n in names or []}
    for name, s in series.items():
        if wanted and name.lower() not in wanted:
            continue
        s = s.iloc[-weeks * 168 :]
        last = s.index[-1].to_pydatetime()
        shift_weeks = int(
            (END.replace(tzinfo=None) - timedelta(hours=1) - last) // timedelta(weeks=1)
        )
        shift = timedelta(weeks=shift_weeks)
        moved = [
            (row.start_at.to_pydatetime() + shift, row.end_at.to_pydatetime() + shift)
            for row in windows[windows.series == name].itertuples()
        ]
        # the warehouse lower-cases environments (staging normalises them)
        worlds.append(World(name.lower(), s.index + shift, s.to_numpy(dtype=float), moved))
    return worlds


def volume_array(worlds: list[World], start: datetime, n_hours: int, calls_per_day: float):
    shares = np.array([f.share for f in FEATURES])
    lam = np.zeros((n_hours, len(FEATURES), len(worlds)))
    base = pd.Timestamp(start.replace(tzinfo=None))
    for w, world in enumerate(worlds):
        offset = int((world.hours[0] - base) / pd.Timedelta(hours=1))
        scale = calls_per_day / 24 / max(world.requests.mean(), 1e-9)
        lam[offset : offset + world.requests.size, :, w] = (
            world.requests[:, None] * scale * shares[None, :]
        )
    return lam


def place_incidents(
    worlds: list[World], lam: np.ndarray, start: datetime, rng: np.random.Generator, seed: int
) -> list[Injected]:
    """At most INCIDENTS_PER_FEATURE incidents per feature and world, a week apart (real
    features do not break every other day, and an incident stays in the spread of its series
    for two weeks), their kinds taken in turn so that the seeds together cover every kind."""
    plans = _plans()
    placed: list[Injected] = []
    base = start.replace(tzinfo=None)
    for w, world in enumerate(worlds):
        first = int((world.hours[0] - pd.Timestamp(base)) / pd.Timedelta(hours=1))
        lo, hi = first + FIRST_SCORED_DAY * 24, first + world.requests.size - INCIDENT_HOURS - 1
        blocked = np.zeros(lam.shape[0], dtype=bool)
        for a, b in world.windows:
            i = int((a - base) / timedelta(hours=1)) - 6
            j = int((b - base) / timedelta(hours=1)) + 6
            blocked[max(i, 0) : max(j, 0)] = True
        for f, feature in enumerate(FEATURES):
            taken = blocked.copy()
            plan = plans[feature.name]
            turn = (seed * INCIDENTS_PER_FEATURE + w + f) % len(plan)
            for p in [(turn + k) % len(plan) for k in range(INCIDENTS_PER_FEATURE)]:
                label, kind, params, detector, severity, min_expected = plan[p]
                ok = [
                    h for h in range(lo, hi)
                    if not taken[h : h + INCIDENT_HOURS].any()
                    and lam[h : h + INCIDENT_HOURS, f, w].min() >= min_expected
                ]  # fmt: skip
                if not ok:
                    continue
                h = int(rng.choice(ok))
                taken[max(h - 168, 0) : h + INCIDENT_HOURS + 168] = True
                at = start + timedelta(hours=h)
                when = at.strftime("%Y-%m-%dT%H:00:00Z")
                incident = Incident(kind, feature.name, world.name, when, INCIDENT_HOURS,
                                    detector, severity, dict(params))  # fmt: skip
                placed.append(Injected(world.name, feature.name, label, incident,
                                       float(lam[h, f, w])))  # fmt: skip
    return placed


def build_warehouse(home: Path, project: Path, worlds, lam, start, days, seed, injected) -> None:
    landing = home / "landing" / "calls"
    began = time.monotonic()
    result = generate(landing, start, days, seed=seed, incidents=[i.incident for i in injected],
                      volume=lam, environments=[w.name for w in worlds])  # fmt: skip
    end = start + timedelta(days=days)
    for day in range(0, days, 7):  # a week at a time: the ingest holds a window's lines
        a, b = start + timedelta(days=day), min(start + timedelta(days=day + 7), end)
        load_window(home / "warehouse.duckdb", landing, a, b, now=end)
    print(f"  {result.calls:,} calls generated and loaded in {time.monotonic() - began:.0f} s",
          flush=True)  # fmt: skip
    dbt_build(home, project)


DBT_VARS: dict = {}  # --vars for every dbt build of this run (to compare settings)


def dbt_build(home: Path, project: Path, *select: str) -> None:
    """`dbt build` (models and seeds, no tests) of `project` against the warehouse in `home`."""
    began = time.monotonic()
    env = {**os.environ, "SPENDWATCH_HOME": str(home), "DBT_PROFILES_DIR": str(project),
           "DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}  # fmt: skip
    dbt = Path(sys.executable).with_name("dbt")
    proc = subprocess.run(
        [str(dbt), "build", *select, "--exclude", "resource_type:unit_test", "resource_type:test",
         *(["--vars", json.dumps(DBT_VARS)] if DBT_VARS else []),
         "--target-path", str(home / f"target-{project.name}"), "--log-path", str(home / "logs")],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"dbt build failed in {home}:\n{proc.stdout[-3000:]}")
    print(f"  dbt build {time.monotonic() - began:.0f} s", flush=True)


def _hits(spans: list[tuple[datetime, datetime]], a: datetime, b: datetime) -> bool:
    return any(x < b and a < y for x, y in spans)


def score(home: Path, worlds: list[World], injected: list[Injected], start: datetime,
          lam: np.ndarray, scores: dict[str, Score]) -> None:  # fmt: skip
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        anomalies = con.execute(
            """select incident_key, detector, severity, feature, environment, hour_at
               from marts.anomalies where feature is not null"""
        ).df()
        hourly = con.execute(
            """select hour_at, feature, environment, cost_usd, calls, priced_calls
               from marts.agg_hourly_feature_cost order by environment, feature, hour_at"""
        ).df()
    finally:
        con.close()
    base = start.replace(tzinfo=None)
    one_hour = timedelta(hours=1)
    guards = _thresholds()
    series_of = hourly.groupby(["environment", "feature"])
    per_call = series_of.cost_usd.sum().astype(float) / series_of.priced_calls.sum().clip(lower=1)
    for w, world in enumerate(worlds):
        sc = scores.setdefault(world.name, Score(world.name))
        scored_from = world.hours[0].to_pydatetime() + timedelta(days=FIRST_SCORED_DAY)
        scored_to = world.hours[-1].to_pydatetime() + one_hour
        sc.feature_weeks += len(FEATURES) * (scored_to - scored_from) / timedelta(weeks=1)
        mine = [i for i in injected if i.world == world.name]
        spans = defaultdict(list)
        for i in mine:
            a = i.incident.start_at.replace(tzinfo=None)
            spans[i.feature].append((a, a + timedelta(hours=i.incident.hours + GRACE_HOURS)))
        rows = anomalies[anomalies.environment == world.name]
        # recall
        for i in mine:
            a = i.incident.start_at.replace(tzinfo=None)
            f = [x.name for x in FEATURES].index(i.feature)
            h = int((a - base) / one_hour)
            first = hourly[(hourly.environment == i.world) & (hourly.feature == i.feature)
                           & (hourly.hour_at == a)]  # fmt: skip
            usual = lam[max(h - 168, 0) : h, f, w].sum() / max(min(h, 168), 1) * 24
            if first.empty or not _alert_worthy(i, first.iloc[0], per_call[(i.world, i.feature)],
                                                usual, guards):  # fmt: skip
                sc.guarded[i.label] += 1
                continue
            sc.incidents[i.label] += 1
            found = rows[(rows.feature == i.feature) & (rows.detector == i.incident.detector)]
            if i.incident.severity == "critical":
                hit = found[(found.hour_at == a) & (found.severity == "critical")]
            else:
                hit = found[(found.hour_at >= a) & (found.hour_at < a + 2 * one_hour)]
            sc.found[i.label] += int(len(hit) > 0)
        # false incidents (ours)
        for _, inc in rows.groupby("incident_key"):
            a, b = inc.hour_at.min().to_pydatetime(), inc.hour_at.max().to_pydatetime() + one_hour
            feature = inc.feature.iloc[0]
            if b <= scored_from or a >= scored_to:  # before the first week, after the series
                continue
            if _hits(spans[feature], a, b) or _hits(world.windows, a, b):
                continue
            sc.false += 1
            sc.false_by_detector[inc.detector.iloc[0]] += 1
            sc.false_critical += int((inc.severity == "critical").any())
        # NAB windows that raised something
        for x, y in world.windows:
            if y <= scored_from or x >= scored_to:
                continue
            sc.windows += 1
            inside = rows[(rows.hour_at >= x - one_hour) & (rows.hour_at < y)]
            sc.windows_hit += int(len(inside) > 0)
        # the naive rule: cost above the mean + 2 sigma of the previous 168 hours
        series = hourly[hourly.environment == world.name]
        for feature, h in series.groupby("feature"):
            cost = h.set_index("hour_at")["cost_usd"].astype(float)
            cost = cost.reindex(pd.date_range(cost.index.min(), cost.index.max(), freq="h"),
                                fill_value=0.0)  # fmt: skip
            prior = cost.shift(1).rolling(168, min_periods=168)
            alert = cost > prior.mean() + 2 * prior.std()
            hours = [t.to_pydatetime() for t in cost.index[alert.to_numpy()]]
            for a, b in _group(hours):
                if b <= scored_from or a >= scored_to:
                    continue
                if _hits(spans[feature], a, b) or _hits(world.windows, a, b):
                    continue
                sc.naive_false += 1


def _group(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Alert hours into incidents; one quiet hour does not split one (as marts.anomalies)."""
    spans: list[list[datetime]] = []
    for h in sorted(hours):
        if spans and h - spans[-1][1] <= timedelta(hours=2):
            spans[-1][1] = h
        else:
            spans.append([h, h])
    return [(a, b + timedelta(hours=1)) for a, b in spans]


def _thresholds() -> pd.DataFrame:
    """The default rows of the checkout's seeds/alert_thresholds.csv: the guards an incident
    must clear to be expected at all, the same whichever project version is being scored."""
    frame = pd.read_csv(REPO / "seeds" / "alert_thresholds.csv")
    return frame[frame.feature == "*"].set_index("detector")


def _alert_worthy(i: Injected, first_hour: pd.Series, cost_per_call: float,
                  usual_calls_per_day: float, guards: pd.DataFrame) -> bool:  # fmt: skip
    """Whether the configured guards let this incident be reported at all: the detector's
    min_calls in its first hour and, where the detector has a money floor, an excess cost over
    the floors. Excess and daily spend are estimated here from the known expected volume and
    the feature's average cost per call, not from any detector's baseline."""
    detector = i.incident.detector
    if detector not in guards.index:
        return True
    t = guards.loc[detector]
    min_calls = t.min_calls if pd.notna(t.min_calls) else 0
    if detector == "telemetry_gap":
        return i.expected_calls >= min_calls
    calls = first_hour.priced_calls if detector == "cost_per_call" else first_hour.calls
    if calls < min_calls:
        return False
    if detector == "volume_spike":
        excess = (first_hour.calls - i.expected_calls) * cost_per_call
    elif detector == "cost_per_call":
        excess = float(first_hour.cost_usd) - first_hour.priced_calls * cost_per_call
    else:
        return True
    floors = [t.get("min_excess_usd"), (t.get("min_excess_share") or 0) * usual_calls_per_day
              * cost_per_call]  # fmt: skip
    return excess >= max(float(f) for f in floors if pd.notna(f))


def evaluate(seeds: list[int], weeks: int, names: list[str] | None, calls_per_day: float,
             project: Path, keep: Path | None = None, rescore: bool = False
             ) -> dict[str, Score]:  # fmt: skip
    """Build (or, with `rescore`, re-run the detectors of the warehouses kept in `keep`) and
    score every seed."""
    worlds = build_worlds(weeks, names)
    start = min(w.hours[0] for w in worlds).to_pydatetime().replace(tzinfo=UTC)
    start = start.replace(hour=0)
    days = int(np.ceil((END - start) / timedelta(days=1)))
    lam = volume_array(worlds, start, days * 24, calls_per_day)
    scores: dict[str, Score] = {}
    for seed in seeds:
        print(f"seed {seed}: {len(worlds)} worlds × {len(FEATURES)} features, {days} days",
              flush=True)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="eval-detection-") as tmp:
            home = (keep / f"seed-{seed}") if keep else Path(tmp)
            if rescore:
                injected = [
                    Injected(d["environment"].lower(), d["feature"], d["label"],
                             Incident(**{k: v for k, v in d.items()
                                         if k not in ("label", "expected_calls")}
                                      | {"environment": d["environment"].lower()}),
                             d["expected_calls"])
                    for d in json.loads((home / "injected.json").read_text())
                ]  # fmt: skip
                dbt_build(home, project, "--full-refresh", "--select", "resource_type:seed",
                          "agg_hourly_feature_cost+", "agg_hourly_model_cost+")  # fmt: skip
            else:
                injected = place_incidents(worlds, lam, start, np.random.default_rng(seed), seed)
                home.mkdir(parents=True, exist_ok=True)
                build_warehouse(home, project, worlds, lam, start, days, seed, injected)
                (home / "injected.json").write_text(json.dumps(
                    [{**asdict(i.incident), "label": i.label, "expected_calls": i.expected_calls}
                     for i in injected], indent=1))  # fmt: skip
            score(home, worlds, injected, start, lam, scores)
    return scores


def totals(scores: dict[str, Score]) -> Score:
    total = Score("total")
    for sc in scores.values():
        total.feature_weeks += sc.feature_weeks
        total.incidents += sc.incidents
        total.found += sc.found
        total.guarded += sc.guarded
        total.false += sc.false
        total.false_critical += sc.false_critical
        total.false_by_detector += sc.false_by_detector
        total.naive_false += sc.naive_false
        total.windows += sc.windows
        total.windows_hit += sc.windows_hit
    return total


def table(scores: dict[str, Score], title: str) -> str:
    lines = [
        f"**{title}**",
        "",
        "| series | feature-weeks | recall | false incidents / feature-week | false critical "
        "| naive rule false / feature-week | naive ÷ ours | NAB windows raised |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for sc in [*sorted(scores.values(), key=lambda s: s.series), totals(scores)]:
        n, k = sum(sc.incidents.values()), sum(sc.found.values())
        fw = max(sc.feature_weeks, 1e-9)
        ratio = f"{sc.naive_false / sc.false:.1f}×" if sc.false else (
            "∞" if sc.naive_false else "–")  # fmt: skip
        name = f"**{sc.series}**" if sc.series == "total" else sc.series
        lines.append(
            f"| {name} | {sc.feature_weeks:.0f} | {k}/{n} = {k / max(n, 1):.0%} "
            f"| {sc.false / fw:.2f} ({sc.false}) | {sc.false_critical} "
            f"| {sc.naive_false / fw:.2f} ({sc.naive_false}) | {ratio} "
            f"| {sc.windows_hit}/{sc.windows} |"
        )
    total = totals(scores)
    lines += ["", "| incident | recall | below the configured guards |", "|---|---|---|"]
    for label in sorted(set(total.incidents) | set(total.guarded)):
        n, k = total.incidents[label], total.found[label]
        lines.append(f"| {label} | {k}/{n} = {k / max(n, 1):.0%} | {total.guarded[label]} |")
    by = ", ".join(f"{d} {n}" for d, n in total.false_by_detector.most_common()) or "none"
    lines += ["", f"False incidents by detector: {by}."]
    return "\n".join(lines)


def write_docs(text: str, section: str = MARK) -> None:
    """Replace the `<!-- {section}:begin -->` … `<!-- {section}:end -->` block of the docs."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    doc = DOCS.read_text()
    if begin not in doc or end not in doc:
        raise RuntimeError(f"{DOCS} has no {begin} … {end} section to replace")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOCS.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection_eval")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--series", nargs="*", help="only these series (default: all)")
    parser.add_argument("--calls-per-day", type=float, default=12_000)
    parser.add_argument("--project", type=Path, default=REPO, help="dbt project to build with")
    parser.add_argument("--keep", type=Path, help="keep the warehouses under this folder")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="re-run the detectors on the warehouses kept in --keep and score",
    )
    parser.add_argument(
        "--vars",
        type=json.loads,
        default={},
        help="dbt vars for the builds (JSON), to compare settings",
    )
    parser.add_argument("--title", default="spendwatch detectors on real traffic shapes")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument(
        "--docs-section", default=MARK, help="the marked section of docs/detection.md to replace"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    DBT_VARS.update(args.vars)
    if args.rescore and not args.keep:
        parser.error("--rescore needs --keep (the folder of the kept warehouses)")
    scores = evaluate(args.seeds, args.weeks, args.series, args.calls_per_day,
                      args.project.resolve(), args.keep, args.rescore)  # fmt: skip
    seeds = ", ".join(map(str, args.seeds))
    text = table(scores, f"{args.title} (seeds {seeds}; {args.weeks} weeks; "
                         f"{args.calls_per_day:,.0f} calls a day per world)")  # fmt: skip
    print(text)
    print(f"\n({time.monotonic() - began:.0f} s)")
    if args.write_docs:
        write_docs(text, args.docs_section)
        print(f"written to {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
