"""End to end: landing files → one Dagster run → DuckDB marts, priced right, idempotent."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from helpers import isolated_home
from helpers import query as warehouse_query

from orchestration.runner import materialize_range
from spendwatch.generator import generate
from spendwatch.landing import hour_dir

REPO = Path(__file__).resolve().parents[1]
START = datetime(2026, 11, 2, tzinfo=UTC)
END = START + timedelta(days=2)
HOURLY_MARTS = ("fct_llm_calls", "agg_hourly_feature_cost", "agg_hourly_model_cost")
MARTS = (*HOURLY_MARTS, "agg_hourly_feature_cost_drivers", "anomalies")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path):
    # under a folder named o'brien: no path may be pasted into SQL text (issue 13, item 9)
    with isolated_home(tmp_path_factory.mktemp("e2e") / "o'brien" / "home") as p:
        generate(p.landing, START, 2, 2500, seed=11)
        summary = materialize_range(p, START, END)
        assert summary.success
        yield p, summary


def query(p, sql: str, params=None) -> list[tuple]:
    return warehouse_query(p.warehouse, sql, params)


def mart_digests(p) -> dict[str, tuple]:
    return {
        name: query(p, f"""select count(*), md5(string_agg(cast(t as varchar), chr(10)
                           order by cast(t as varchar))) from marts.{name} as t""")[0]
        for name in MARTS
    }  # fmt: skip


def test_the_range_is_one_run_and_every_hour_has_rows(warehouse) -> None:
    p, summary = warehouse
    runs = dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name="hourly_pipeline"))
    assert [r.run_id for r in runs] == [summary.run_id]
    # a new warehouse: ingest + 9 seeds + 4 staging views (the provider reports' staging is
    # ephemeral) + 2 intermediate + 10 detector views + 14 tables + ops/check_results + the
    # dashboard
    assert summary.materializations == 40
    # the tables are recorded per day partition (2 days), the seeds, views and report once
    events = (
        dg.DagsterInstance.get()
        .get_records_for_run(
            summary.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
        )
        .records
    )
    per_key = Counter(r.event_log_entry.asset_materialization.asset_key.to_user_string()
                      for r in events)  # fmt: skip
    assert per_key["marts/fct_llm_calls"] == per_key["raw_llm_calls"] == 2
    assert per_key["staging/stg_raw__llm_calls"] == per_key["spend_report"] == 1
    # 15 partitioned assets × 2 days, 24 seeds and views, the report
    assert len(events) == 15 * 2 + 24 + 1
    page = p.report.read_text()  # rendered by the run, after the detectors, up to its last hour
    data = json.loads(page.split('id="spendwatch-data">', 1)[1].split("</script>", 1)[0])
    assert data["meta"]["as_of"] == f"{END:%Y-%m-%d %H:%M}"
    for name in HOURLY_MARTS:
        hours = query(p, f"select count(distinct hour_at), min(hour_at), max(hour_at) "
                         f"from marts.{name}")[0]  # fmt: skip
        assert hours == (48, datetime(2026, 11, 2, 0), datetime(2026, 11, 3, 23)), name
    landed = sum(1 for f in p.landing.rglob("*.jsonl") for _ in f.open())
    assert query(p, "select count(*) from marts.fct_llm_calls") == [(landed,)]


def _price_by_hand(landing: Path) -> dict[str, Decimal]:
    """Price every landing line from the seed CSVs, in Python, independently of the SQL."""
    prices = list(csv.DictReader((REPO / "seeds" / "model_prices.csv").open()))
    aliases = {(a["provider"], a["alias"]): a["model"]
               for a in csv.DictReader((REPO / "seeds" / "model_aliases.csv").open())}  # fmt: skip
    mtok = Decimal(1_000_000)
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for path in landing.rglob("*.jsonl"):
        for text in path.open():
            e = json.loads(text)
            model = aliases.get((e["provider"], e["model"]), e["model"])
            at = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00")).replace(
                tzinfo=None
            )
            (row,) = [
                r for r in prices
                if r["provider"] == e["provider"] and r["model"] == model
                and datetime.fromisoformat(r["valid_from"]) <= at
                and (not r["valid_to"] or at < datetime.fromisoformat(r["valid_to"]))
            ]  # fmt: skip
            price_in = Decimal(row["input_usd_per_mtok"])
            read = Decimal(row["cache_read_usd_per_mtok"] or row["input_usd_per_mtok"])
            write = Decimal(row["cache_write_usd_per_mtok"] or row["input_usd_per_mtok"])
            uncached = e["input_tokens"] - e["cache_read_tokens"] - e["cache_write_tokens"]
            spend[e["feature"]] += (
                uncached * price_in + e["cache_read_tokens"] * read
                + e["cache_write_tokens"] * write
                + e["output_tokens"] * Decimal(row["output_usd_per_mtok"])
            ) / mtok  # fmt: skip
    return spend


def test_spend_by_feature_matches_pricing_by_hand(warehouse) -> None:
    p, _ = warehouse
    expected = _price_by_hand(p.landing)
    actual = dict(query(p, "select feature, sum(cost_usd) from marts.agg_hourly_feature_cost "
                           "group by 1"))  # fmt: skip
    assert set(actual) == set(expected) and len(actual) == 5
    for feature, usd in expected.items():
        assert abs(actual[feature] - usd) < Decimal("1e-9"), feature
    assert query(p, "select count(*) from marts.fct_llm_calls where not is_priced") == [(0,)]


def test_model_mart_agrees_with_feature_mart(warehouse) -> None:
    p, _ = warehouse
    by_feature = query(p, "select sum(calls), sum(cost_usd), sum(total_tokens) "
                          "from marts.agg_hourly_feature_cost")  # fmt: skip
    by_model = query(p, "select sum(calls), sum(cost_usd), sum(total_tokens) "
                        "from marts.agg_hourly_model_cost")  # fmt: skip
    assert by_feature == by_model
    models = {r[0] for r in query(p, "select distinct model from marts.agg_hourly_model_cost")}
    assert models == {"gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku"}


def test_rematerializing_leaves_every_mart_the_same(warehouse) -> None:
    p, _ = warehouse
    before = mart_digests(p)
    one_hour = START + timedelta(hours=30)
    again = materialize_range(p, one_hour, one_hour + timedelta(hours=1))
    assert again.success
    assert mart_digests(p) == before
    # the seeds and views did not change: the run rebuilt only what stores hours, and planned
    # each asset once (one event per asset, not per partition)
    instance = dg.DagsterInstance.get()
    assert again.materializations == 16
    planned = instance.get_records_for_run(
        again.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000
    ).records
    assert len(planned) == 16
    run = instance.get_run_by_id(again.run_id)
    assert (run.tags["spendwatch/window_start"], run.tags["spendwatch/window_end"]) == (
        f"{one_hour:%Y-%m-%d %H:%M}",
        f"{one_hour + timedelta(hours=1):%Y-%m-%d %H:%M}",
    )
    assert materialize_range(p, START, END).success
    assert mart_digests(p) == before


def test_a_changed_hour_changes_only_that_hour(warehouse) -> None:
    p, _ = warehouse
    hour = START + timedelta(hours=5)
    folder = hour_dir(p.landing, hour)
    extra = {
        "event_id": "late-arrival", "occurred_at": f"{hour:%Y-%m-%dT%H}:30:00Z",
        "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 500,
        "feature": "smart-reply",
    }  # fmt: skip
    (folder / "late.jsonl").write_text(json.dumps(extra) + "\n")
    before = query(
        p,
        "select hour_at, calls, cost_usd from marts.agg_hourly_feature_cost "
        "where feature = 'smart-reply' and environment = 'production' order by 1",
    )
    try:
        assert materialize_range(p, hour, hour + timedelta(hours=1)).success
        after = query(
            p,
            "select hour_at, calls, cost_usd from marts.agg_hourly_feature_cost "
            "where feature = 'smart-reply' and environment = 'production' order by 1",
        )
        changed = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
        assert len(changed) == 1
        ((old, new),) = changed
        assert new[0] == hour.replace(tzinfo=None) and new[1] == old[1] + 1
        assert new[2] - old[2] == Decimal("0.0075")  # 1000 × $2.50 + 500 × $10 per 1M
    finally:
        (folder / "late.jsonl").unlink()
        assert materialize_range(p, hour, hour + timedelta(hours=1)).success


def test_a_failed_range_run_marks_its_unbuilt_partitions_failed(warehouse, monkeypatch) -> None:
    """A range run plans one event per asset (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS),
    and Dagster then no longer marks the partitions of a failed run failed: the runner does. Runs
    last in this module: it leaves the checks' step failed."""
    import orchestration.defs.assets.checks as checks
    from orchestration.defs.project import PARTITIONS

    p, _ = warehouse

    def broken_suite(*args, **kwargs):
        raise RuntimeError("the marts suite broke (test)")

    monkeypatch.setattr(checks, "run_fct_suite", broken_suite)
    summary = materialize_range(p, START, END)
    assert not summary.success
    assert "the marts suite broke (test)" in summary.error
    instance = dg.DagsterInstance.get()
    days = [f"{START:%Y-%m-%d}", f"{START + timedelta(days=1):%Y-%m-%d}"]
    status = {
        name: instance.get_status_by_partition(dg.AssetKey(name.split("/")), days, PARTITIONS)
        for name in ("marts/fct_llm_calls", "ops/check_results", "marts/anomalies")
    }
    done, failed = dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.FAILED
    assert status == {
        "marts/fct_llm_calls": {days[0]: done, days[1]: done},  # built before the checks broke
        "ops/check_results": {days[0]: failed, days[1]: failed},
        "marts/anomalies": {days[0]: failed, days[1]: failed},
    }


def test_exported_metrics_add_up_to_the_calls(warehouse, httpserver, monkeypatch) -> None:
    """`spendwatch export datadog` over the range of a real build: per hour, the points sum to
    what the calls themselves sum to (counted here from fct_llm_calls, not from the mart the
    export reads), one series per feature × environment × provider × resolved model."""
    import zlib

    from orchestration.lib.exports.run import export_metrics
    from spendwatch.config import export_settings

    p, _ = warehouse
    monkeypatch.setenv("SPENDWATCH_DATADOG_API_KEY", "pipeline-test-key")
    monkeypatch.setenv("SPENDWATCH_DATADOG_URL", httpserver.url_for("/").rstrip("/"))
    httpserver.expect_request("/api/v2/series", method="POST").respond_with_json({}, status=202)
    report = export_metrics(p.warehouse, "datadog", export_settings(), start=START, end=END)
    assert report.ok and len(report.outcomes) == 48

    sums: dict[tuple[str, int], float] = defaultdict(float)
    series: dict[int, set] = defaultdict(set)
    for request, _ in httpserver.log:
        for s in json.loads(zlib.decompress(request.get_data()))["series"]:
            (point,) = s["points"]
            kind = next((t for t in s["tags"] if t.startswith("token_type:")), "")
            sums[(s["metric"] + kind, point["timestamp"])] += point["value"]
            series[point["timestamp"]].add(tuple(t for t in s["tags"] if t != kind))
    rows = query(p, """
        select epoch(hour_at)::bigint, count(*), sum(input_tokens), sum(cache_read_tokens),
               sum(cost_usd), count(distinct (feature, environment, provider, canonical_model))
        from marts.fct_llm_calls group by 1""")  # fmt: skip
    assert len(rows) == 48
    for ts, calls, input_tokens, cache_read, cost, n_series in rows:
        assert sums[("llm.calls", ts)] == calls
        assert sums[("llm.tokenstoken_type:input", ts)] == input_tokens
        assert sums[("llm.tokenstoken_type:cache_read", ts)] == cache_read
        assert sums[("llm.cost_usd", ts)] == pytest.approx(float(cost), rel=1e-9)
        assert len(series[ts]) == n_series
