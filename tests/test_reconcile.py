"""Reconciliation with the providers' bills, end to end: calls landed and materialized, the
provider reports of tests/fixtures/reconcile/ imported with `spendwatch reconcile import` (a
real DuckDB file, a real Dagster run), then marts.cost_reconciliation, the invoice_drift rows
of marts.anomalies and `spendwatch reconcile show` checked against what the fixtures were
built to show (tests/fixtures/reconcile/README.md has the arithmetic).

The calls are written here, not drawn by the generator, so the billed side can match (or
miss) the computed one to the cent by construction, whatever the generator draws.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from helpers import isolated_home
from helpers import query as warehouse_query

from orchestration.runner import materialize_range
from spendwatch.cli import main
from spendwatch.landing import landing_file
from spendwatch.reconcile.formats import ReportError, read_report

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reconcile"
REPORTS = sorted(FIXTURES.glob("*_2026-11.json*"))
D2, D3, D4, D5 = (datetime(2026, 11, day) for day in (2, 3, 4, 5))
START, END = D2, datetime(2026, 11, 6)


def _calls(day: datetime, provider: str, model: str, count: int, **tokens: int) -> list[dict]:
    """`count` calls of one model spread over ten hours of `day`."""
    events = []
    for i in range(count):
        at = day + timedelta(hours=8 + i % 10, seconds=i)
        events.append({
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{day:%F}/{model}/{i}")),
            "occurred_at": at.replace(tzinfo=UTC).isoformat(),
            "provider": provider, "model": model, "feature": "assistant",
            "environment": "production", "team_id": "platform", **tokens,
        })  # fmt: skip
    return events


def traffic() -> list[dict]:
    """What the application recorded (the fixtures bill what the provider saw):
    - gpt-4.1 (as its dated name), 200 calls a day: $32 input + $2 cached + $16 output = $50;
      billed the same on the 2nd and 3rd, at a new input price ($2.50/M, the seed still says
      $2) from the 4th: $58;
    - gpt-9-preview on the 2nd, 50 calls the price list does not know: billed $8;
    - claude-sonnet-4 (dated name), 400 calls a day billed ($75.438); on the 3rd only 320 of
      them were recorded (a service without the tracker): computed $60.3504."""
    events = []
    gpt41 = {"input_tokens": 100_000, "cache_read_tokens": 20_000, "output_tokens": 10_000}
    sonnet = {"input_tokens": 50_000, "cache_read_tokens": 10_000, "cache_write_tokens": 5_000,
              "output_tokens": 4_123}  # fmt: skip
    for day in (D2, D3, D4, D5):
        events += _calls(day, "openai", "gpt-4.1-2025-04-14", 200, **gpt41)
        recorded = 320 if day == D3 else 400
        events += _calls(day, "anthropic", "claude-sonnet-4-20250514", recorded, **sonnet)
    events += _calls(D2, "openai", "gpt-9-preview", 50, input_tokens=20_000, output_tokens=2_000)
    return events


def write_landing(landing: Path, events: list[dict]) -> None:
    by_file: dict[Path, list[str]] = {}
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"])
        by_file.setdefault(landing_file(landing, at, "reconcile-test"), []).append(
            json.dumps(event)
        )
    for path, lines in by_file.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path):
    with isolated_home(tmp_path_factory.mktemp("reconcile") / "home") as p:
        write_landing(p.landing, traffic())
        assert materialize_range(p, START, END).success
        code, out, err = cli("reconcile", "import", *map(str, REPORTS))
        assert code == 0, out + err
        yield p, out


def query(p, sql: str, params=None) -> list[tuple]:
    return warehouse_query(p.warehouse, sql, params)


def mart(p, provider: str, model: str | None, day: datetime) -> dict[str, tuple]:
    """token_kind → (billed, computed, difference, pct, billed tokens, recorded, cause)."""
    rows = query(p, """
        select token_kind, billed_usd, computed_usd, difference_usd, difference_pct,
               billed_tokens, recorded_tokens, likely_cause
        from marts.cost_reconciliation
        where provider = ? and model is not distinct from ? and day = ?""",
        [provider, model, day.date()])  # fmt: skip
    return {row[0]: row[1:] for row in rows}


def drift(p) -> dict[tuple[datetime, str], tuple]:
    rows = query(
        p,
        """
        select hour_at, model, severity, observed_value, baseline_value,
               estimated_excess_cost_usd, message, runbook
        from marts.anomalies where detector = 'invoice_drift'""",
    )
    return {(row[0], row[1]): row[2:] for row in rows}


def test_the_import_loads_every_file_and_rebuilds_through_dagster(imported) -> None:
    p, out = imported
    for report in REPORTS:
        assert f"imported {report}" in out
    assert "rebuilt the reconciliation and the anomalies for 2026-11-02 → 2026-11-06" in out
    log = query(
        p,
        """select report_shape, provider, report_kind, pages, rows, unmapped_rows,
                             first_day, last_day from raw.provider_report_log order by 1""",
    )
    assert log == [
        ("anthropic_cost_report", "anthropic", "cost", 2, 17, 1, D2.date(), D5.date()),
        ("anthropic_usage_messages", "anthropic", "usage", 1, 16, 0, D2.date(), D5.date()),
        # the 6th is an empty bucket: covered, nothing billed
        ("openai_costs", "openai", "cost", 2, 16, 1, D2.date(), datetime(2026, 11, 6).date()),
        ("openai_usage_completions", "openai", "usage", 1, 15, 0, D2.date(), D5.date()),
    ]
    # every row keeps the file it came from
    sources = query(p, "select distinct source_file from raw.provider_costs order by 1")
    assert sources == [(str(r.resolve()),) for r in REPORTS]
    # the rebuild is a Dagster run of the mart and the anomalies (the alert sensor sees it)
    runs = dg.DagsterInstance.get().get_runs(dg.RunsFilter(job_name="hourly_pipeline"), limit=1)
    keys = {key.to_user_string() for key in runs[0].asset_selection}
    assert {"marts/cost_reconciliation", "marts/anomalies", "spend_report"} <= keys
    assert "marts/fct_llm_calls" not in keys and "raw_llm_calls" not in keys


def test_a_matching_day_has_no_drift(imported) -> None:
    p, _ = imported
    rows = mart(p, "openai", "gpt-4.1", D2)
    assert rows == {
        "input": (Decimal(32), Decimal(32), Decimal(0), 0.0, 16_000_000, 16_000_000, None),
        "cache_read": (Decimal(2), Decimal(2), Decimal(0), 0.0, 4_000_000, 4_000_000, None),
        "output": (Decimal(16), Decimal(16), Decimal(0), 0.0, 2_000_000, 2_000_000, None),
    }
    for day in (D2, D4, D5):
        rows = mart(p, "anthropic", "claude-sonnet-4", day)
        assert {kind: row[2] for kind, row in rows.items()} == dict.fromkeys(
            ("input", "cache_read", "cache_write", "output"), Decimal(0)
        ), day
    found = drift(p)
    for day, model in [(D2, "gpt-4.1"), (D3, "gpt-4.1"), (D2, "claude-sonnet-4"),
                       (D4, "claude-sonnet-4"), (D5, "claude-sonnet-4")]:  # fmt: skip
        assert (day, model) not in found


def test_a_fifth_of_calls_not_instrumented_is_critical_drift_from_missing_instrumentation(
    imported,
) -> None:
    p, _ = imported
    rows = mart(p, "anthropic", "claude-sonnet-4", D3)
    assert rows["output"] == (Decimal("24.738"), Decimal("19.7904"), Decimal("4.9476"), 25.0,
                              1_649_200, 1_319_360, "missing instrumentation")  # fmt: skip
    assert sum(row[0] for row in rows.values()) == Decimal("75.438")
    assert sum(row[1] for row in rows.values()) == Decimal("60.3504")
    severity, billed, computed, excess, message, runbook = drift(p)[(D3, "claude-sonnet-4")]
    assert (severity, billed, computed) == ("critical", 75.438, 60.3504)
    assert excess == Decimal("15.0876")
    assert message == (
        "invoice drift anthropic/claude-sonnet-4 on 2026-11-03: billed $75.44, computed $60.35 "
        "(+$15.09, +25.0 %); likely cause: missing instrumentation, 80.0 % of the billed tokens "
        "recorded"
    )
    assert runbook == "docs/runbooks/invoice_drift.md"
    assert (REPORTS[0].parents[3] / runbook).exists()


def test_an_unpriced_model_points_at_the_price_list(imported) -> None:
    p, _ = imported
    rows = mart(p, "openai", "gpt-9-preview", D2)
    assert {kind: row[:3] for kind, row in rows.items()} == {
        "input": (Decimal(5), Decimal(0), Decimal(5)),
        "output": (Decimal(3), Decimal(0), Decimal(3)),
    }
    assert {row[3] for row in rows.values()} == {None}  # no percentage of $0
    assert {row[6] for row in rows.values()} == {"price list"}
    severity, billed, computed, _, message, _ = drift(p)[(D2, "gpt-9-preview")]
    # any percentage of $0, but $8 is under the $10 critical floor
    assert (severity, billed, computed) == ("warning", 8.0, 0.0)
    assert "likely cause: price list" in message and "50 calls unpriced" in message


def test_a_price_changed_mid_month_is_a_price_gap_from_that_day(imported) -> None:
    p, _ = imported
    for day in (D4, D5):
        rows = mart(p, "openai", "gpt-4.1", day)
        assert rows["input"] == (Decimal(40), Decimal(32), Decimal(8), 25.0, 16_000_000,
                                 16_000_000, "price or tier")  # fmt: skip
        assert rows["output"][2] == rows["cache_read"][2] == 0
        severity, billed, computed, excess, message, _ = drift(p)[(day, "gpt-4.1")]
        # +16 %: past the 5 % and $1 warning floors, short of 20 % for critical
        assert (severity, billed, computed, excess) == ("warning", 58.0, 50.0, Decimal(8))
        assert message.endswith(
            "likely cause: price or tier, 100.0 % of the billed tokens recorded"
        )
    assert (D3, "gpt-4.1") not in drift(p)


def test_anthropic_cents_are_parsed_exactly(imported) -> None:
    p, _ = imported
    amounts = dict(
        query(
            p,
            """select amount_raw, amount_usd from raw.provider_costs
                               where provider = 'anthropic' and report_kind = 'cost'""",
        )
    )
    assert amounts["123.45"] == Decimal("1.2345")
    assert amounts["2473.80"] == Decimal("24.738")
    assert amounts["4200.00"] == Decimal("42")
    # parsed the same way outside the warehouse, and a number is refused: dollars or cents?
    page = {"data": [{"starting_at": "2026-11-02T00:00:00Z", "ending_at": "2026-11-03T00:00:00Z",
                      "results": [{"amount": "0.5", "currency": "USD", "model": None,
                                   "cost_type": "web_search", "token_type": None}]}],
            "has_more": False, "next_page": None}  # fmt: skip
    (row,) = read_report(Path("cost_report.json"), json.dumps(page)).rows
    assert row["amount_usd"] == Decimal("0.005") and row["token_kind"] is None
    page["data"][0]["results"][0]["amount"] = 0.5
    with pytest.raises(ReportError, match="decimal string in cents"):
        read_report(Path("cost_report.json"), json.dumps(page))


def test_an_unmapped_openai_line_item_is_reported_as_such(imported) -> None:
    p, _ = imported
    rows = query(p, """select billed_usd, computed_usd, likely_cause, provider_line_items
                       from marts.cost_reconciliation
                       where provider = 'openai' and token_kind = 'unmapped' and day = ?""",
                 [D3.date()])  # fmt: skip
    assert rows == [(Decimal("2.5"), Decimal(0), "unmapped line item", "web search tool calls")]
    assert all(key[1] is not None for key in drift(p))  # unmapped lines are no model's drift
    code, out, _ = cli("reconcile", "show", "--days", "7")
    assert code == 0
    assert "2026-11-03 openai unmapped: web search tool calls $2.50" in out
    assert "2026-11-02 anthropic unmapped: web_search $1.23" in out


def test_reconcile_show_prints_the_days_with_causes_and_alerts(imported) -> None:
    p, _ = imported
    code, out, _ = cli("reconcile", "show", "--days", "7")
    assert code == 0
    lines = [line for line in out.splitlines()
             if "2026-11-03" in line and "claude-sonnet-4" in line]  # fmt: skip
    assert len(lines) == 1
    for cell in (
        "$75.44",
        "$60.35",
        "+$15.09",
        "+25.0 %",
        "80.0 %",
        "missing instrumentation",
        "critical",
    ):
        assert cell in lines[0]
    assert "4 invoice_drift finding(s)" in out
    code, out, _ = cli("reconcile", "show", "--days", "1", "--by-kind")
    # the latest day with rows is the 5th (the 6th is an empty bucket: covered, nothing to show)
    assert code == 0 and "1 invoice_drift finding(s)" in out and "2026-11-04" not in out
    (line,) = [line for line in out.splitlines() if "gpt-4.1" in line and " input " in line]
    assert "+$8.00" in line and "price or tier" in line and "warning" in line


def _digests(p) -> list[tuple]:
    tables = ("raw.provider_costs", "raw.provider_report_log", "marts.cost_reconciliation",
              "marts.anomalies")  # fmt: skip
    return [
        query(
            p,
            f"""select count(*), md5(string_agg(cast(t as varchar), chr(10)
                     order by cast(t as varchar))) from {table} as t""",
        )[0]
        for table in tables
    ]


def test_importing_the_same_files_again_changes_nothing(imported, tmp_path: Path) -> None:
    p, _ = imported
    before = _digests(p)
    runs = len(dg.DagsterInstance.get().get_runs())
    copy = tmp_path / "renamed.json"
    shutil.copy(REPORTS[0], copy)
    code, out, _ = cli("reconcile", "import", *map(str, REPORTS), str(copy))
    assert code == 0
    assert out.count("skipped") == len(REPORTS) + 1
    assert f"skipped {copy}: the same content was imported as {REPORTS[0].resolve()}" in " ".join(
        out.split()
    )
    assert "nothing new: the reconciliation is unchanged" in out
    assert _digests(p) == before
    assert len(dg.DagsterInstance.get().get_runs()) == runs  # no rebuild either


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("chat.json", {"id": "chatcmpl-1", "object": "chat.completion", "choices": []},
         "no time buckets"),
        ("export.json", {"object": "page", "has_more": False, "data": [
            {"object": "bucket", "start_time": 1793577600, "end_time": 1793664000,
             "results": []}]}, "every bucket is empty"),
        ("partial_costs.json", {"object": "page", "has_more": True, "next_page": "page_x",
                                "data": [{"object": "bucket", "start_time": 1793577600,
                                          "end_time": 1793664000, "results": []}]},
         "the last page says has_more=true"),
        ("eur.json", {"data": [{"starting_at": "2026-11-02T00:00:00Z",
                                "ending_at": "2026-11-03T00:00:00Z",
                                "results": [{"amount": "1", "currency": "EUR"}]}],
                      "has_more": False}, "in 'EUR'"),
        ("hourly_costs.json", {"object": "page", "has_more": False, "data": [
            {"object": "bucket", "start_time": 1793577600, "end_time": 1793750400,
             "results": [{"object": "organization.costs.result",
                          "amount": {"value": 1, "currency": "usd"}}]}]}, "by UTC day"),
        ("tokens.json", {"object": "page", "has_more": False, "data": [
            {"object": "bucket", "start_time": 1793577600, "end_time": 1793664000,
             "results": [{"object": "organization.usage.completions.result",
                          "input_tokens": -3, "output_tokens": 1}]}]},
         "first at data.0.results.0.input_tokens"),
    ],
)  # fmt: skip
def test_a_file_in_another_shape_is_refused_saying_which_are_supported(
    imported, tmp_path: Path, name: str, content: dict, message: str
) -> None:
    p, _ = imported
    before = _digests(p)
    bad = tmp_path / name
    bad.write_text(json.dumps(content))
    code, out, err = cli("reconcile", "import", str(REPORTS[0]), str(bad))
    text = " ".join((out + err).split())
    assert code == 2, out + err
    assert str(bad) in text and message in text
    if message in ("no time buckets", "first at data.0.results.0.input_tokens"):
        assert "Anthropic GET /v1/organizations/cost_report" in text
        assert "OpenAI GET /v1/organization/usage/completions" in text
    assert _digests(p) == before  # nothing of the import was written


def test_the_report_has_a_reconciliation_section(imported) -> None:
    p, _ = imported
    page = p.report.read_text()
    data = json.loads(page.split('id="spendwatch-data">', 1)[1].split("</script>", 1)[0])
    columns = data["reconciliation"]
    records = [dict(zip(columns, values, strict=True))
               for values in zip(*columns.values(), strict=True)]  # fmt: skip
    rows = {(r["day"], r["provider"], r["model"]): r for r in records}
    row = rows[("2026-11-03", "anthropic", "claude-sonnet-4")]
    assert (row["billed_usd"], row["computed_usd"], row["likely_cause"], row["severity"]) == (
        75.438,
        60.3504,
        "missing instrumentation",
        "critical",
    )
    assert rows[("2026-11-03", "openai", None)]["likely_cause"] == "unmapped line item"


def test_the_report_section_shows_in_a_browser(imported) -> None:
    p, _ = imported
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail(f"{chromium} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(p.report.as_uri())
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            assert not page.eval_on_selector("#reconciliation", "e => e.hidden")
            assert not page.eval_on_selector("#nav-reconciliation", "e => e.hidden")
            caption = page.inner_text("#reconciliation-caption")
            assert caption == (
                "2026-11-02 → 2026-11-05: billed $525.75, computed $486.66 (and "
                "$3.73 billed without a model), 4 invoice_drift findings"
            )
            critical = page.locator("#reconciliation-table tr[data-severity=critical]")
            assert critical.count() == 1
            cells = critical.locator("td").all_inner_texts()
            assert cells[:3] == ["2026-11-03", "anthropic", "claude-sonnet-4"]
            assert cells[5:] == [
                "+$15.09",
                "+25.0 %",
                "17,319,360 / 21,649,200",
                "missing instrumentation",
                "critical",
            ]
            unmapped = page.locator("#reconciliation-table tr[data-cause='unmapped line item']")
            assert unmapped.count() == 2
            assert errors == []
        finally:
            browser.close()
