"""The dashboard end to end.

A real warehouse: 15 days of generated traffic with four injected incidents, plus a
hand-written landing file whose feature, team, user, endpoint and model are hostile strings and
a few broken lines; ingested, built by dbt, the data-quality suites run on the last day. The
report is rendered from it and opened in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): no console error, no network request, every chart drawn, the incidents
of the warehouse listed, the KPIs and the calculator equal to the calls priced here from the
seed CSVs, the hostile names shown as text. Screenshots go to tests/output/report/.
"""

from __future__ import annotations

import csv
import functools
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from helpers import dbt_build
from helpers import query as warehouse_query

from orchestration.lib.ingest import connect as ingest_connect
from orchestration.lib.ingest import load_window
from spendwatch.generator import generate, load_incidents
from spendwatch.landing import hour_dir
from spendwatch.report import STEPS, ReportError, build_report

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "tests" / "output" / "report"
CHROMIUM = Path("/usr/bin/chromium")
END = datetime(2026, 11, 26, 21, tzinfo=UTC)  # a Thursday evening
DAYS = 15
START = END - timedelta(days=DAYS)
CALLS_PER_DAY = 5_000
INJECTED = [
    {
        "type": "retry_storm",
        "feature": "chat-assistant",
        "start": "2026-11-24T13:00:00Z",
        "hours": 2,
    },
    {"type": "cache_drop", "feature": "rag-search", "start": "2026-11-25T10:00:00Z", "hours": 3},
    {"type": "volume_spike", "feature": "smart-reply", "start": "2026-11-25T14:00:00Z", "hours": 3},
    # still firing in the latest hours: an open incident
    {
        "type": "model_fallback",
        "feature": "code-review",
        "start": "2026-11-26T17:00:00Z",
        "hours": 3,
    },
]
HOSTILE_FEATURE = "<img src=x onerror=alert(1)>"
HOSTILE_TEAM = '</script><script>alert("team")</script>'
HOSTILE_USER = '"><svg onload=alert(3)>'
HOSTILE_ENDPOINT = "/api/<b>bold</b>?a=1&b=<i>2</i>"
HOSTILE_MODEL = "<iframe src=javascript:alert(4)>"
HOSTILE_HOUR = datetime(2026, 11, 26, 15, tzinfo=UTC)
BROKEN_LINES = 8  # > 1 % of the hour's lines: the hours_complete check fails for it
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
]


# ------------------------------------------------------------------------------------------
# the warehouse


def write_hostile_lines(landing: Path) -> None:
    """An application whose names are markup and script, and a writer that breaks lines."""
    folder = hour_dir(landing, HOSTILE_HOUR)
    lines = []
    for i in range(46):
        lines.append(
            json.dumps(
                {
                    "event_id": f"hostile-{i:03d}",
                    "occurred_at": f"{HOSTILE_HOUR:%Y-%m-%dT%H}:{i:02d}:00Z",
                    "provider": "openai",
                    "model": HOSTILE_MODEL if i < 6 else "gpt-4o-mini",
                    "input_tokens": 1200 + i,
                    "output_tokens": 150,
                    "cache_read_tokens": 0,
                    "feature": HOSTILE_FEATURE,
                    "endpoint": HOSTILE_ENDPOINT,
                    "environment": "production",
                    "team_id": HOSTILE_TEAM,
                    "user_id": HOSTILE_USER,
                    "tags": {"<b>k</b>": "<script>alert(5)</script>"},
                }
            )
        )
    lines += ["this is not json {"] * 3
    lines += [json.dumps({"event_id": f"partial-{i}", "provider": "openai"}) for i in range(3)]
    lines += [
        json.dumps(
            {
                "event_id": f"negative-{i}",
                "occurred_at": f"{HOSTILE_HOUR:%Y-%m-%dT%H}:10:00Z",
                "provider": "openai",
                "model": "gpt-4o",
                "input_tokens": -5,
                "output_tokens": 1,
                "feature": "smart-reply",
            }
        )
        for i in range(BROKEN_LINES - 6)
    ]
    (folder / "hostile-app.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path) -> Path:
    root = tmp_path_factory.mktemp("report")
    home = root / "home"
    landing = home / "landing" / "calls"
    spec = root / "incidents.json"
    spec.write_text(json.dumps(INJECTED))
    generate(
        landing,
        START,
        DAYS,
        CALLS_PER_DAY,
        seed=7,
        incidents=load_incidents(str(spec), START, DAYS),
    )
    write_hostile_lines(landing)
    warehouse = home / "warehouse.duckdb"
    load_window(warehouse, landing, START, END, now=END)
    from orchestration.lib.quality import run_raw_suites  # GX: imported only where it runs

    run_raw_suites(warehouse, END - timedelta(hours=24), END, END)
    dbt_build(home)
    return home


@pytest.fixture(scope="module")
def report(home: Path) -> Path:
    out = home / "report.html"
    build_report(home / "warehouse.duckdb", out)
    return out


def query(home: Path, sql: str, params=None) -> list[tuple]:
    return warehouse_query(home / "warehouse.duckdb", sql, params)


# ------------------------------------------------------------------------------------------
# pricing from the seed CSVs, independently of the SQL


def _seed(name: str) -> list[dict]:
    return list(csv.DictReader((REPO / "seeds" / f"{name}.csv").open()))


PRICES = _seed("model_prices")
ALIASES = _seed("model_aliases")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def price_row(provider: str, model: str, at: datetime) -> dict | None:
    """The seed row that prices `model` at `at`: the name's own row when it has one valid
    then, else the row of the model it resolves to (exact alias, its own name, the longest
    prefix). Price rows start on the hour, so the hour decides."""
    return _price_row(provider, model, at.replace(minute=0, second=0, microsecond=0))


@functools.cache
def _price_row(provider: str, model: str, at: datetime) -> dict | None:

    def rows(name: str, valid_at: datetime | None) -> list[dict]:
        return [
            r
            for r in PRICES
            if r["provider"] == provider
            and r["model"] == name
            and (
                valid_at is None
                or (
                    _at(r["valid_from"]) <= valid_at
                    and (not r["valid_to"] or valid_at < _at(r["valid_to"]))
                )
            )
        ]

    own = rows(model, at)
    if own:
        return own[0]
    exact = [
        a["model"]
        for a in ALIASES
        if a["provider"] == provider
        and a["match_type"] == "exact"
        and a["alias"].lower() == model.lower()
    ]
    prefix = sorted(
        (
            a
            for a in ALIASES
            if a["provider"] == provider
            and a["match_type"] == "prefix"
            and model.lower().startswith(a["alias"].lower())
        ),
        key=lambda a: -len(a["alias"]),
    )
    if exact:
        canonical = exact[0]
    elif rows(model, None):
        canonical = model
    elif prefix:
        canonical = prefix[0]["model"]
    else:
        canonical = model
    found = rows(canonical, at)
    return found[0] if found else None


def cost(row: dict, input_tokens, output_tokens, cache_read=0, cache_write=0, batch=False):
    """USD of one call: DESIGN.md's pricing rule, with the seed's defaults for blank prices."""

    def price(*names: str) -> Decimal:
        return Decimal(next(row[n] for n in names if row[n]))

    tokens = [Decimal(str(v)) for v in (input_tokens, output_tokens, cache_read, cache_write)]
    inp, out, read, write = tokens
    threshold = row["long_context_threshold_tokens"]
    long = bool(threshold) and inp > Decimal(threshold)
    if long:
        p_in = price("long_input_usd_per_mtok", "input_usd_per_mtok")
        p_out = price("long_output_usd_per_mtok", "output_usd_per_mtok")
        p_read = price(
            "long_cache_read_usd_per_mtok",
            "cache_read_usd_per_mtok",
            "long_input_usd_per_mtok",
            "input_usd_per_mtok",
        )
        p_write = price(
            "long_cache_write_usd_per_mtok",
            "cache_write_usd_per_mtok",
            "long_input_usd_per_mtok",
            "input_usd_per_mtok",
        )
    else:
        p_in = price("input_usd_per_mtok")
        p_out = price("output_usd_per_mtok")
        p_read = price("cache_read_usd_per_mtok", "input_usd_per_mtok")
        p_write = price("cache_write_usd_per_mtok", "input_usd_per_mtok")
    factor = 1 - Decimal(row["batch_discount"] or 0) if batch else Decimal(1)
    usd = (inp - read - write) * p_in + read * p_read + write * p_write + out * p_out
    return usd * factor / Decimal(1_000_000)


@pytest.fixture(scope="module")
def calls(home: Path) -> list[dict]:
    return landing_calls(home)


def landing_calls(home: Path) -> list[dict]:
    """Every landing line the ingest accepts (the broken ones are left out by their shape),
    with what it costs priced here (None when no price row matches)."""
    calls = []
    for path in sorted((home / "landing" / "calls").rglob("*.jsonl")):
        for text in path.open():
            try:
                e = json.loads(text)
            except ValueError:
                continue
            if "occurred_at" not in e or e.get("input_tokens", 0) < 0:
                continue
            e["at"] = datetime.fromisoformat(e["occurred_at"].replace("Z", "+00:00"))
            row = price_row(e["provider"], e["model"], e["at"].replace(tzinfo=None))
            e["usd"] = (
                None
                if row is None
                else cost(
                    row,
                    e["input_tokens"],
                    e["output_tokens"],
                    e.get("cache_read_tokens", 0),
                    e.get("cache_write_tokens", 0),
                    e.get("service_tier") == "batch",
                )
            )
            calls.append(e)
    return calls


def priced_spend(
    calls: list[dict],
    since: datetime,
    until: datetime = END,
    environment: str | None = None,
    feature: str | None = None,
) -> Decimal:
    """What the calls in [since, until) cost; unpriced calls add nothing."""
    return sum(
        (
            e["usd"]
            for e in calls
            if since <= e["at"] < until
            and e["usd"] is not None
            and (environment is None or e.get("environment", "production") == environment)
            and (feature is None or e["feature"] == feature)
        ),
        Decimal(0),
    )


# ------------------------------------------------------------------------------------------
# the browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
            "(apt-get install -y chromium, as root)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Opened:
    page: object
    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def value(self, selector: str) -> float:
        return float(self.page.get_attribute(selector, "data-value"))

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.requests == [self.url], self.requests
        assert self.dialogs == [], self.dialogs


def open_report(browser, path: Path, width: int = 1440) -> Opened:
    context = browser.new_context(viewport={"width": width, "height": 1000})
    url = path.resolve().as_uri()
    opened = Opened(page=None, url=url)

    def intercept(route) -> None:  # anything but the file itself is refused, and recorded
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", intercept)
    page = context.new_page()
    page.on("request", lambda r: opened.requests.append(r.url))
    page.on(
        "console",
        lambda m: m.type in ("error", "warning") and opened.errors.append(f"{m.type}: {m.text}"),
    )
    page.on("pageerror", lambda e: opened.errors.append(f"pageerror: {e}"))

    def on_dialog(dialog) -> None:
        opened.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']", timeout=30_000)
    opened.page = page
    return opened


CHART_MARKS = """
(node) => {
  const paths = [...node.querySelectorAll('.cartesianlayer .trace path')].filter((p) => {
    const d = p.getAttribute('d') || '';
    return d.length > 4 && d !== 'M0,0Z' && !/^M[-\\d.]+,[-\\d.]+Z$/.test(d);
  });
  return {svg: !!node.querySelector('svg.main-svg'), marks: paths.length,
          empty: node.dataset.empty === 'true', traces: (node.data || []).length};
}
"""


def chart_marks(opened: Opened) -> dict[str, dict]:
    charts = opened.page.query_selector_all("[data-chart]")
    assert len(charts) == 8
    return {c.get_attribute("id"): c.evaluate(CHART_MARKS) for c in charts}


def assert_every_chart_drawn(opened: Opened) -> None:
    for chart, found in chart_marks(opened).items():
        assert found["svg"] and not found["empty"] and found["marks"] > 0, (chart, found)


def select(opened: Opened, selector: str, value: str) -> None:
    opened.page.select_option(selector, value)
    opened.page.wait_for_timeout(50)


def screenshot_path(name: str) -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT / name


# ------------------------------------------------------------------------------------------
# building


def test_report_is_small_aggregated_and_reports_progress(home: Path, tmp_path: Path) -> None:
    steps: list[tuple[int, int, str]] = []
    out = tmp_path / "r.html"
    result = build_report(home / "warehouse.duckdb", out, progress=lambda *a: steps.append(a))
    html = out.read_text()
    assert result.size_bytes == out.stat().st_size < 10_000_000
    assert result.as_of == END.replace(tzinfo=None)
    assert [s[2] for s in steps] == [*STEPS, "done"] and steps[-1][:2] == (10, 10)
    ((calls, spend),) = query(
        home,
        "select count(*), sum(cost_usd) from marts.fct_llm_calls where hour_at >= ?",
        [(END - timedelta(days=14)).replace(tzinfo=None)],
    )
    assert result.calls == calls
    assert result.spend_usd == pytest.approx(float(spend), rel=1e-6)
    # aggregates only: no call row reaches the page
    event_ids = [
        r[0] for r in query(home, "select event_id from marts.fct_llm_calls using sample 200")
    ]
    assert event_ids and not any(e in html for e in event_ids)
    # the hostile strings are in the page only escaped inside the JSON
    for hostile in (HOSTILE_FEATURE, HOSTILE_TEAM, HOSTILE_USER, HOSTILE_ENDPOINT, HOSTILE_MODEL):
        assert hostile not in html
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    print(
        f"\nreport {out}: {result.size_bytes / 1e6:.2f} MB in {result.seconds:.2f} s "
        f"({result.calls:,} calls); steps {result.step_seconds}"
    )


def test_missing_empty_and_locked_warehouses_say_what_to_do(tmp_path: Path, home: Path) -> None:
    from spendwatch.cli import main

    with pytest.raises(
        ReportError,
        match=r"no warehouse at .*run `spendwatch demo` or `spendwatch materialize` first",
    ):
        build_report(tmp_path / "none" / "warehouse.duckdb", tmp_path / "r.html")
    assert not (tmp_path / "none").exists()  # nothing created where nothing was
    empty = tmp_path / "empty" / "warehouse.duckdb"
    ingest_connect(empty).close()  # raw tables, no marts
    with pytest.raises(ReportError, match="has no marts yet"):
        build_report(empty, tmp_path / "r.html")
    assert main(["--home", str(tmp_path / "none"), "report"]) == 2
    assert (
        main(
            [
                "--home",
                str(home),
                "report",
                "--environment",
                "qa",
                "--out",
                str(tmp_path / "qa.html"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "qa.html").exists()

    # a writer holds the file: the report waits for it, then gives up with a clear message
    locked = tmp_path / "locked" / "warehouse.duckdb"
    locked.parent.mkdir()
    shutil.copy(home / "warehouse.duckdb", locked)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(float(sys.argv[2]))",
            str(locked),
            "4",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ReportError, match=r"still locked by .*\(PID \d+\) after 1 s"):
            build_report(locked, tmp_path / "r.html", wait_seconds=1)
        began = time.monotonic()
        waited = build_report(locked, tmp_path / "r.html", wait_seconds=30)
        assert time.monotonic() - began > 1 and waited.calls > 0
    finally:
        holder.kill()
        holder.wait()


def test_cli_writes_the_report_where_asked(home: Path, tmp_path: Path, capsys) -> None:
    from spendwatch.cli import REPORT_DAYS, main
    from spendwatch.report import DEFAULT_DAYS

    assert REPORT_DAYS == DEFAULT_DAYS  # the CLI's copy, kept to keep --help light

    out = tmp_path / "prod.html"
    assert (
        main(
            [
                "--home",
                str(home),
                "report",
                "--out",
                str(out),
                "--days",
                "3",
                "--environment",
                "production",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "environment production" in printed
    data = json.loads(out.read_text().split('id="spendwatch-data">', 1)[1].split("</script>", 1)[0])
    assert data["meta"]["environment"] == "production" and data["meta"]["days"] == 3
    assert data["meta"]["ranges"] == [24, 72]
    assert set(data["fm"]["environment"]) == {"production"}
    # the default place: $SPENDWATCH_HOME/report.html
    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copy(home / "warehouse.duckdb", copy / "warehouse.duckdb")
    assert main(["--home", str(copy), "report"]) == 0
    assert (copy / "report.html").stat().st_size > 1_000_000


def test_the_dagster_asset_renders_the_report_and_releases_the_file(
    home: Path, tmp_path: Path
) -> None:
    import dagster as dg

    from orchestration.defs.assets.report import spend_report
    from orchestration.defs.resources import SpendwatchHome

    copy = tmp_path / "home"
    copy.mkdir()
    shutil.copy(home / "warehouse.duckdb", copy / "warehouse.duckdb")
    result = dg.materialize(
        [spend_report],
        resources={"spendwatch": SpendwatchHome(home=str(copy))},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["path"].value == str(copy / "report.html")
    assert metadata["incidents"].value > 0 and (copy / "report.html").exists()
    con = duckdb.connect(str(copy / "warehouse.duckdb"))  # a writer can open it right away
    con.close()


def test_the_report_asset_runs_after_the_detectors_in_the_hourly_job(dbt_manifest) -> None:
    import dagster as dg

    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    report = graph.get(dg.AssetKey("spend_report"))
    assert dg.AssetKey(["marts", "anomalies"]) in report.parent_keys
    assert report.partitions_def is None
    job = defs.resolve_job_def("hourly_pipeline")
    assert dg.AssetKey("spend_report") in job.asset_layer.executable_asset_keys


# ------------------------------------------------------------------------------------------
# in the browser


def test_page_is_offline_clean_and_every_chart_is_drawn(report: Path, browser, home: Path) -> None:
    opened = open_report(browser, report)
    page = opened.page
    assert_every_chart_drawn(opened)
    path = screenshot_path("report-full.png")
    page.screenshot(path=str(path), full_page=True)
    print(f"\nfull-page screenshot: {path}")
    # the hourly chart holds the spend of the range: sums of its bars = the warehouse's
    as_of = END.replace(tzinfo=None)
    for r, hours in enumerate((24, 168, 336)):
        select(opened, "#f-range", str(r))
        drawn = page.evaluate("""() => document.getElementById('chart-hourly').data
            .filter((t) => t.type === 'bar')
            .reduce((a, t) => a + t.y.reduce((b, v) => b + v, 0), 0)""")
        (expected,) = query(
            home,
            "select sum(cost_usd) from marts.fct_llm_calls where hour_at >= ?",
            [as_of - timedelta(hours=hours)],
        )[0]
        assert drawn == pytest.approx(float(expected), rel=1e-6), hours
        assert_every_chart_drawn(opened)
    # every filter value draws without an error
    for env in ("production", "staging", "dev", "*"):
        select(opened, "#f-env", env)
        assert_every_chart_drawn(opened)
    for view in ("model", "feature"):
        page.click(f"#seg-view button[data-view='{view}']")
        assert chart_marks(opened)["chart-hourly"]["marks"] > 0
    select(opened, "#f-feature", "summarization")
    assert_every_chart_drawn(opened)
    features = page.eval_on_selector_all(
        "#drivers-features tbody tr:not(.other) td:first-child",
        "cells => cells.map((c) => c.textContent)",
    )
    assert features == ["summarization"]
    opened.assert_clean()


def test_kpis_equal_the_calls_priced_from_the_seeds(report: Path, browser, calls) -> None:
    opened = open_report(browser, report)
    spend_24h = priced_spend(calls, END - timedelta(hours=24))
    assert opened.value("#kpi-spend-24h") == pytest.approx(float(spend_24h), abs=1e-5)
    month = priced_spend(calls, datetime(2026, 11, 1, tzinfo=UTC))
    assert opened.value("#kpi-spend-mtd") == pytest.approx(float(month), abs=1e-5)
    hours = (END - datetime(2026, 11, 1, tzinfo=UTC)) / timedelta(hours=1)
    assert opened.value("#kpi-projected") == pytest.approx(float(month) / hours * 720, rel=1e-6)
    assert float(opened.page.get_attribute("#kpi-projected", "data-budget")) == 9000  # 5 features
    select(opened, "#f-env", "staging")
    staging = priced_spend(calls, END - timedelta(hours=24), environment="staging")
    assert opened.value("#kpi-spend-24h") == pytest.approx(float(staging), abs=1e-5)
    assert opened.page.inner_text("#kpi-unpriced .value") == "0"
    select(opened, "#f-env", "production")
    unpriced = sum(1 for e in calls if e["model"] == HOSTILE_MODEL)
    assert opened.page.inner_text("#kpi-unpriced .value") == str(unpriced)
    assert opened.value("#kpi-open-incidents") >= 1
    opened.assert_clean()


def test_data_quality_shows_rejected_lines_unpriced_calls_and_checks(
    report: Path, browser, home: Path
) -> None:
    opened = open_report(browser, report)
    page = opened.page
    select(opened, "#f-range", "0")
    drawn = page.evaluate("""() => { const t = document.getElementById('chart-rejected').data[0];
        return Object.fromEntries(t.y.map((y, i) => [y, t.x[i]])); }""")
    assert drawn == {
        "invalid_json": 3,
        "missing_required_field": 3,
        "invalid_tokens": BROKEN_LINES - 6,
    }
    assert (
        dict(query(home, "select reason, count(*) from raw.llm_calls_rejected group by 1")) == drawn
    )
    assert f"{BROKEN_LINES} rejected" in page.inner_text("#load-summary")
    unpriced = page.eval_on_selector_all(
        "#unpriced-table tbody tr",
        "rows => rows.map((r) => [...r.cells].map((c) => c.textContent))",
    )
    assert unpriced == [
        ["openai", HOSTILE_MODEL, "production", "6", "Nov 26 15:00", "Nov 26 15:00"]
    ]
    failing = query(
        home,
        """select check_name, count(*) from ops.check_results
        where not passed and partition_hour >= ? group by 1""",
        [(END - timedelta(hours=24)).replace(tzinfo=None)],
    )
    assert failing == [("rejected_share", 1)]  # the hour of the broken lines
    rows = page.eval_on_selector_all(
        "#checks-table tbody tr[data-failed='true']",
        "rows => rows.map((r) => [r.dataset.check, r.cells[5].textContent,"
        " r.cells[6].textContent])",
    )
    assert rows == [["rejected_share", "1", "Nov 26 15:00"]]
    (checks,) = query(home, "select count(distinct check_name) from ops.check_results")[0]
    passed = page.eval_on_selector_all("#checks-passed-table tbody tr", "rows => rows.length")
    assert passed == checks - 1
    opened.assert_clean()


def test_incidents_table_lists_the_warehouse_incidents(report: Path, browser, home: Path) -> None:
    opened = open_report(browser, report)
    page = opened.page
    select(opened, "#f-range", "2")  # the 14 days shown
    rows = page.eval_on_selector_all(
        "#incidents-table tbody tr[data-incident-key]",
        "rows => rows.map((r) => [r.dataset.incidentKey, r.dataset.detector, r.dataset.severity,"
        " r.dataset.open, r.cells[2].textContent])",
    )
    since = (END - timedelta(days=14)).replace(tzinfo=None)
    expected = query(
        home,
        """
        select incident_key from marts.anomalies
        group by incident_key having max(hour_at) >= ?""",
        [since],
    )
    assert {r[0] for r in rows} == {r[0] for r in expected} and len(rows) == len(expected)
    found = {(r[1], r[4].split(" / ")[0]) for r in rows if r[2] == "critical"}
    injected = {
        "retry_storm": "retry_storm",
        "cache_drop": "cache_efficiency",
        "volume_spike": "volume_spike",
        "model_fallback": "model_drift",
    }
    for incident in INJECTED:
        assert (injected[incident["type"]], incident["feature"]) in found, incident
    drift = [r for r in rows if r[1] == "model_drift" and r[4].startswith("code-review")]
    assert drift and drift[0][3] == "true"  # still firing at the latest hour: open
    # why the cost moved: the peak hour's drivers (marts.anomalies.drivers), biggest first; the
    # fallback to claude-3-opus is model mix
    drift_drivers = page.eval_on_selector_all(
        f"#incidents-table tr[data-incident-key='{drift[0][0]}'] .chip.driver",
        "chips => chips.map((c) => [c.dataset.driver, c.textContent])",
    )
    assert drift_drivers and drift_drivers[0][0] == "model_mix", drift_drivers
    assert drift_drivers[0][1].startswith("model_mix +$")
    headers = page.eval_on_selector_all(
        "#incidents-table thead th", "hs => hs.map((h) => h.textContent)"
    )
    assert "Delivery" not in headers and headers[-1] == "Runbook"
    # the baseline chart marks the hours the detectors flagged for the chosen series
    select(opened, "#f-env", "production")
    select(opened, "#band-feature", "code-review")
    flagged = page.evaluate("""() => document.getElementById('chart-band').data
        .filter((t) => t.name === 'anomalous hours').map((t) => [t.x, t.text])[0]""")
    hours = query(
        home,
        """select strftime(hour_at, '%Y-%m-%d %H:%M'), string_agg(distinct detector, ', '
               order by detector)
           from marts.anomalies where feature = 'code-review' and environment = 'production'
             and detector <> 'budget_burn' and hour_at >= ?
           group by 1 order by 1""",
        [since],
    )
    assert [list(h) for h in zip(*flagged, strict=True)] == [list(h) for h in hours]
    assert ["2026-11-26 17:00", "model_drift"] in [list(h) for h in hours]
    # the runbook opens in the page, from the text embedded at build time
    page.click("#incidents-table tbody tr[data-detector='model_drift'] button.link")
    assert page.inner_text("#runbook-title") == "docs/runbooks/model_drift.md"
    assert page.inner_text("#runbook-text").startswith("# Runbook: model_drift")
    page.click("#runbook-close")
    opened.assert_clean()


def test_delivery_state_shows_when_alerting_exists(home: Path, browser, tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(home / "warehouse.duckdb", warehouse)
    keys = dict(
        query(
            home,
            """select detector, any_value(incident_key) from marts.anomalies
                               where detector in ('volume_spike', 'model_drift') group by 1""",
        )
    )
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("""create table ops.alert_deliveries (
            incident_key varchar, alert_kind varchar, channel varchar, status varchar,
            attempts integer, last_error varchar, sent_at timestamp, created_at timestamp)""")
        con.executemany(
            "insert into ops.alert_deliveries values (?, ?, ?, ?, ?, ?, ?, now())",
            [
                [
                    keys["volume_spike"],
                    "opened",
                    "slack",
                    "sent",
                    1,
                    None,
                    datetime(2026, 11, 25, 14, 6),
                ],
                [
                    keys["volume_spike"],
                    "opened",
                    "pagerduty",
                    "failed",
                    3,
                    "HTTP 500 <b>oops</b>",
                    None,
                ],
                [keys["model_drift"], "opened", "email", "pending", 0, None, None],
            ],
        )
    finally:
        con.close()
    out = tmp_path / "with-alerting.html"
    result = build_report(warehouse, out)
    assert result.alerting
    opened = open_report(browser, out)
    page = opened.page
    select(opened, "#f-range", "2")
    headers = page.eval_on_selector_all(
        "#incidents-table thead th", "hs => hs.map((h) => h.textContent)"
    )
    assert headers[-1] == "Delivery"
    cell = f"#incidents-table tr[data-incident-key='{keys['volume_spike']}'] td:last-child"
    chips = "chips => chips.map((c) => c.textContent)"
    assert page.eval_on_selector_all(f"{cell} .chip", chips) == ["pagerduty: failed", "slack: sent"]
    failed = page.get_attribute(f"{cell} .chip[data-status='failed']", "title")
    assert "attempts: 3" in failed and "last error: HTTP 500 <b>oops</b>" in failed
    assert page.query_selector("#incidents-table b") is None
    drift = f"#incidents-table tr[data-incident-key='{keys['model_drift']}'] td:last-child"
    assert page.eval_on_selector_all(f"{drift} .chip", chips) == ["email: pending"]
    others = page.eval_on_selector_all(
        "#incidents-table tbody tr[data-incident-key] td:last-child",
        "cells => cells.map((c) => c.textContent)",
    )
    assert others.count("none recorded") == len(others) - 2
    opened.assert_clean()


def test_calculator_prices_like_the_warehouse(report: Path, browser, calls) -> None:
    opened = open_report(browser, report)
    page = opened.page
    today = page.input_value("#calc-price-date")
    today_at = datetime.fromisoformat(today)

    def fill(
        per_day,
        inp,
        out,
        read_pct=0,
        write_pct=0,
        current=None,
        candidate=None,
        date_=None,
        tier="standard",
    ) -> None:
        select(opened, "#calc-feature", "")
        for selector, value in (
            ("#calc-calls", per_day),
            ("#calc-input", inp),
            ("#calc-output", out),
            ("#calc-cache-read", read_pct),
            ("#calc-cache-write", write_pct),
        ):
            page.fill(selector, str(value))
        select(opened, "#calc-tier", tier)
        if current:
            select(opened, "#calc-current", current)
        if candidate:
            select(opened, "#calc-candidate", candidate)
        page.fill("#calc-price-date", date_ or today)

    # the worked example: 1,000 input + 500 output tokens on gpt-4o
    fill(1, 1000, 500, current="openai/gpt-4o", candidate="openai/gpt-4o-mini")
    assert opened.value("#cost_per_call-current") == pytest.approx(0.0075, abs=1e-12)
    assert page.inner_text("#cost_per_call-current") == "$0.0075"
    assert opened.value("#calculated_monthly_cost-current") == pytest.approx(0.225, abs=1e-12)
    page.fill("#calc-price-date", "2024-06-01")  # gpt-4o's launch price, $5 / $15
    assert opened.value("#cost_per_call-current") == pytest.approx(0.0125, abs=1e-12)
    assert "valid 2024-05-13 → 2024-10-02" in page.inner_text("#calc-row-current")

    # typed numbers, cache reads and writes, two providers: equal to the seeds' pricing
    cases = [
        (
            12_000,
            3000,
            400,
            40,
            10,
            "openai",
            "gpt-4o",
            "anthropic",
            "claude-3-5-haiku",
            today,
            "standard",
        ),
        (
            2_500,
            250_000,
            2000,
            20,
            5,
            "anthropic",
            "claude-sonnet-4-5",
            "google",
            "gemini-2.5-pro",
            today,
            "standard",
        ),
        (
            800,
            150_000,
            900,
            0,
            0,
            "anthropic",
            "claude-sonnet-4-5",
            "openai",
            "gpt-4.1",
            today,
            "batch",
        ),
        (5_000, 1000, 500, 0, 0, "openai", "gpt-4o", "openai", "o3", "2025-05-01", "standard"),
    ]
    for per_day, inp, out, read_pct, write_pct, p1, m1, p2, m2, day, tier in cases:
        fill(per_day, inp, out, read_pct, write_pct, f"{p1}/{m1}", f"{p2}/{m2}", day, tier)
        at = datetime.fromisoformat(day)
        read, write = Decimal(inp) * read_pct / 100, Decimal(inp) * write_pct / 100
        expected = {}
        for side, provider, model in (("current", p1, m1), ("candidate", p2, m2)):
            row = price_row(provider, model, at)
            expected[side] = cost(row, inp, out, read, write, tier == "batch") * per_day * 30
            assert opened.value(f"#calculated_monthly_cost-{side}") == pytest.approx(
                float(expected[side]), rel=1e-9
            ), (side, model, day)
            threshold = row["long_context_threshold_tokens"]
            long = bool(threshold) and inp > int(threshold)
            assert ("long-context tier" in page.inner_text(f"#cost_per_call-{side}")) == long
        delta = expected["candidate"] - expected["current"]
        assert opened.value("#comparison_delta") == pytest.approx(float(delta), rel=1e-9)
        assert float(page.get_attribute("#comparison_delta", "data-percent")) == pytest.approx(
            float(delta / expected["current"] * 100), rel=1e-9
        )
    path = screenshot_path("calculator-after-change.png")
    page.locator("#calculator").screenshot(path=str(path))
    print(f"\ncalculator screenshot: {path}")

    # start from a feature's real traffic: the monthly figure of its model equals its calls of
    # the last 7 days priced from the seeds, per day, times 30
    select(opened, "#f-env", "production")
    select(opened, "#f-range", "1")
    select(opened, "#calc-feature", "rag-search")
    assert page.input_value("#calc-current") == "openai/gpt-4o-mini"
    assert page.input_value("#calc-price-date") == today
    spent = priced_spend(
        calls, END - timedelta(days=7), feature="rag-search", environment="production"
    )
    assert price_row("openai", "gpt-4o-mini", today_at) == price_row(
        "openai", "gpt-4o-mini", END.replace(tzinfo=None)
    )  # same price then and now
    assert opened.value("#calculated_monthly_cost-current") == pytest.approx(
        float(spent / 7 * 30), rel=1e-4
    )
    opened.assert_clean()


def test_hostile_names_render_as_text(report: Path, browser) -> None:
    opened = open_report(browser, report)
    page = opened.page
    select(opened, "#f-range", "0")  # the last 24 h hold the hostile calls
    assert HOSTILE_FEATURE in page.inner_text("#drivers-features")
    assert HOSTILE_MODEL in page.inner_text("#drivers-models")
    assert HOSTILE_MODEL in page.inner_text("#unpriced-table")
    legend = page.eval_on_selector("#chart-hourly .legend", "n => n.textContent")
    assert HOSTILE_FEATURE in legend
    options = page.eval_on_selector_all("#f-feature option", "os => os.map((o) => o.textContent)")
    assert HOSTILE_FEATURE in options
    select(opened, "#f-feature", HOSTILE_FEATURE)
    names = "cells => cells.map((c) => c.textContent)"
    for table, expected in (
        ("features", [HOSTILE_FEATURE]),
        ("teams", [HOSTILE_TEAM]),
        ("users", [HOSTILE_USER]),
        ("endpoints", [HOSTILE_ENDPOINT]),
    ):
        cells = page.eval_on_selector_all(f"#drivers-{table} tbody tr:not(.other) td.name", names)
        assert cells == expected, table
    models = page.eval_on_selector_all("#drivers-models tbody tr:not(.other) td.name", names)
    assert models == ["gpt-4o-mini openai", f"{HOSTILE_MODEL} openai"]
    assert HOSTILE_MODEL in page.eval_on_selector("#chart-cache-hit", "n => n.textContent")
    assert page.input_value("#band-feature") == HOSTILE_FEATURE
    band_legend = page.eval_on_selector("#chart-band .legend", "n => n.textContent")
    assert f"{HOSTILE_FEATURE} · production" in band_legend
    assert_every_chart_drawn(opened)
    # nothing of it became markup, and nothing ran
    injected = page.evaluate("""() => ({
        img: document.querySelectorAll('img').length,
        svgOnload: document.querySelectorAll('[onload], [onerror]').length,
        iframe: document.querySelectorAll('iframe').length,
        bold: document.querySelectorAll('main b, main i').length,
        scripts: document.querySelectorAll('script').length,
    })""")
    assert injected == {"img": 0, "svgOnload": 0, "iframe": 0, "bold": 0, "scripts": 3}
    opened.assert_clean()
