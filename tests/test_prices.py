"""Every call priced right: 10,000 random calls through the real pipeline agree with genai-prices.

The calls name random catalog models, their dated snapshots and prefix-matched names, at times
on both sides of a price change (gpt-4o on 2024-10-02, to the microsecond) and today, with cache
reads and writes, inputs above and exactly at long-context thresholds, and batch calls. They are
written as landing files, loaded and priced by Dagster + dbt, and each call's `cost_usd` in
`marts.fct_llm_calls` is compared with `genai_prices.calc_price` for the same name and timestamp.
Each window costs a Dagster run, so there are two: genai-prices' own dated changes (o3 on
2025-06-10) reach the seed through `prices sync`, which `test_the_seed_is_in_sync_with_genai_prices`
checks, and the boundary rule has a dbt unit test.

How our call event maps onto genai-prices' `Usage` (genai-prices 0.2):
* `input_tokens`: ours counts ALL input tokens, cache reads and writes included (the tracker adds
  Anthropic's cache counts in). genai-prices means the same: its Anthropic extractor sums
  `input_tokens + cache_creation_input_tokens + cache_read_input_tokens` into `input_tokens`,
  and prices the cache units as parts of it (input leaf = input − cache read − cache write). So
  the fields map one to one; adding the cache tokens again would double-count them.
* `cache_write_tokens` is its `cache_write_mtok` price, the 5-minute write; we do not see 1-hour
  writes. A model without a cache price prices those tokens as input, in both.
* Long context: genai-prices' tier applies to the whole call when the total `input_tokens`
  (cache included) is strictly above the tier start; so does ours.
* Batch: genai-prices models it as a `{"processing": "batch"}` price variant that starts on
  2026-10-14 (earlier batch history is not modelled) and, for OpenAI and Google, leaves the
  cache-read price at the standard rate where the provider publishes none. Our row carries one
  batch discount for every part of the call. Batch calls are therefore checked against a price
  by hand from the seed; those whose genai-prices batch variant is active and prices every part
  the call uses are also checked against genai-prices.
Calls priced by a row genai-prices does not record (gpt-4o's launch price before 2024-10-02)
are listed, checked by hand, and must not be $0.
"""

from __future__ import annotations

import csv
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import genai_prices
import pytest
from helpers import isolated_home

from orchestration.defs.resources import dbt_executable
from orchestration.runner import materialize_range
from spendwatch.cli import main
from spendwatch.landing import hour_dir
from spendwatch.prices import (
    DEFAULT_SEED,
    GenaiPrices,
    PriceRow,
    read_catalog,
    read_seed,
    sync,
)
from spendwatch.schema import CallEvent

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
#: (first hour, hours): one Dagster run each, 10,000 random calls over their 3 hours.
WINDOWS = [
    (datetime(2024, 10, 1, 23, tzinfo=UTC), 2),  # gpt-4o: $5/$15 → $2.50/$10 at 00:00
    (datetime(2026, 11, 20, 12, tzinfo=UTC), 1),  # today's models; genai-prices batch variants
]
HOURS = [start + timedelta(hours=k) for start, hours in WINDOWS for k in range(hours)]
RANDOM_CALLS = 10_000
UNKNOWN = [("openai", "gpt-9-ultra"), ("anthropic", "claude-nonexistent-9")]
PRICE_CHANGES = [
    ("openai", "gpt-4o", datetime(2024, 10, 2, tzinfo=UTC)),
    ("openai", "gpt-4o-2024-08-06", datetime(2024, 10, 2, tzinfo=UTC)),  # own row ends: alias
]
BATCH = {"processing": "batch"}
TOLERANCE = Decimal("1e-9")
MTOK = Decimal(1_000_000)


# ----------------------------------------------------------------------------- the oracle by hand


@dataclass(frozen=True)
class Call:
    event_id: str
    provider: str
    model: str
    occurred_at: datetime
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    service_tier: str


class Seeds:
    """The seed CSVs, read independently of the SQL: which row prices a name at a time."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[PriceRow]] = {}
        for row in read_seed(DEFAULT_SEED):
            self.rows.setdefault((row.provider, row.model), []).append(row)
        aliases = list(csv.DictReader((SEEDS / "model_aliases.csv").open()))
        self.exact = {(a["provider"], a["alias"]): a["model"] for a in aliases
                      if a["match_type"] == "exact"}  # fmt: skip
        self.prefixes = [(a["provider"], a["alias"], a["model"]) for a in aliases
                         if a["match_type"] == "prefix"]  # fmt: skip

    def canonical(self, provider: str, name: str) -> str | None:
        if (provider, name) in self.exact:
            return self.exact[(provider, name)]
        if (provider, name) in self.rows:
            return name
        matches = [
            (len(p), m) for pv, p, m in self.prefixes if pv == provider and name.startswith(p)
        ]
        return max(matches)[1] if matches else None

    def row_at(self, provider: str, model: str | None, at: datetime) -> PriceRow | None:
        naive = at.astimezone(UTC).replace(tzinfo=None)
        for row in self.rows.get((provider, model or ""), []):
            if row.valid_from <= naive and (row.valid_to is None or naive < row.valid_to):
                return row
        return None

    def price_row(self, provider: str, name: str, at: datetime) -> PriceRow | None:
        """The name's own row when it has one valid at `at`, else its canonical model's."""
        own = self.row_at(provider, name, at)
        return own or self.row_at(provider, self.canonical(provider, name), at)


def by_hand(row: PriceRow, call: Call) -> Decimal:
    f = row.figures

    def first(*values: Decimal | None) -> Decimal:
        return next(v for v in values if v is not None)

    input_price, output_price = f["input_usd_per_mtok"], f["output_usd_per_mtok"]
    read = first(f["cache_read_usd_per_mtok"], input_price)
    write = first(f["cache_write_usd_per_mtok"], input_price)
    threshold = f["long_context_threshold_tokens"]
    if threshold is not None and call.input_tokens > threshold:
        long_input = first(f["long_input_usd_per_mtok"], input_price)
        read = first(f["long_cache_read_usd_per_mtok"], f["cache_read_usd_per_mtok"], long_input)
        write = first(f["long_cache_write_usd_per_mtok"], f["cache_write_usd_per_mtok"], long_input)
        output_price = first(f["long_output_usd_per_mtok"], output_price)
        input_price = long_input
    uncached = call.input_tokens - call.cache_read_tokens - call.cache_write_tokens
    usd = (
        uncached * input_price + call.cache_read_tokens * read
        + call.cache_write_tokens * write + call.output_tokens * output_price
    ) / MTOK  # fmt: skip
    if call.service_tier == "batch":
        usd *= 1 - first(f["batch_discount"], Decimal(0))
    return usd


# ----------------------------------------------------------------------------- genai-prices


def genai_usage(call: Call) -> genai_prices.Usage:
    # One to one: both count cache reads and writes inside input_tokens (module docstring).
    return genai_prices.Usage(
        input_tokens=call.input_tokens,
        cache_read_tokens=call.cache_read_tokens,
        cache_write_tokens=call.cache_write_tokens,
        output_tokens=call.output_tokens,
    )


def genai_price(call: Call, context: dict[str, str] | None = None) -> Decimal | None:
    try:
        result = genai_prices.calc_price(
            genai_usage(call),
            call.model,
            provider_id=call.provider,
            genai_request_timestamp=call.occurred_at,
            price_context=context,
        )
    except LookupError:
        return None
    return result.total_price


def genai_batch_covers(call: Call) -> bool:
    """genai-prices has an active batch variant pricing every part of this call."""
    snapshot = genai_prices.data_snapshot.get_snapshot()
    _, info = snapshot.find_provider_model(call.model, None, call.provider, None)
    variants = [
        v for v in info.price_variants or ()
        if v.when == BATCH and (v.constraint is None or v.constraint.active(call.occurred_at))
    ]  # fmt: skip
    if not variants:
        return False
    standard, batch = info.get_prices(call.occurred_at), variants[0].prices
    needed = ["input_mtok", "output_mtok"]
    for tokens, key in ((call.cache_read_tokens, "cache_read_mtok"),
                        (call.cache_write_tokens, "cache_write_mtok")):  # fmt: skip
        if tokens and getattr(standard, key, None) is not None:
            needed.append(key)
    return all(getattr(batch, key, None) is not None for key in needed)


# ----------------------------------------------------------------------------- the calls


def call_names(seeds: Seeds) -> list[tuple[str, str]]:
    """Every model, exact alias, and a made-up dated name under each prefix."""
    names = {key for key in seeds.rows} | set(seeds.exact)
    names |= {(provider, prefix + ("0101" if prefix.endswith("2025") else "20250101"))
              for provider, prefix, _ in seeds.prefixes}  # fmt: skip
    return sorted(names)


def named_date(name: str) -> datetime | None:
    """The date in a snapshot's name (gpt-4o-2024-11-20, claude-3-5-sonnet-20241022)."""
    found = re.search(r"(20\d\d)-?(\d\d)-?(\d\d)$", name)
    return datetime(*map(int, found.groups()), tzinfo=UTC) if found else None


def random_calls(seeds: Seeds, hour: datetime, count: int, rng: random.Random) -> list[Call]:
    # names that are priced then and, for dated snapshots, already exist
    names = [
        (p, n) for p, n in call_names(seeds)
        if seeds.price_row(p, n, hour) and (named_date(n) or hour) <= hour
    ]  # fmt: skip
    calls = []
    for i in range(count):
        provider, name = rng.choice(names)
        edge = rng.random()
        if edge < 0.03:
            at = hour  # exactly on the hour (a price change starts at 00:00)
        elif edge < 0.06:
            at = hour + timedelta(hours=1) - timedelta(microseconds=1)
        else:
            at = hour + timedelta(microseconds=rng.randrange(3_600_000_000))
        row = seeds.price_row(provider, name, at)
        assert row is not None, (provider, name, at)
        threshold = row.figures["long_context_threshold_tokens"]
        shape = rng.random()
        if threshold is not None and shape < 0.3:
            input_tokens = rng.randint(int(threshold) + 1, int(threshold) * 2)
        elif threshold is not None and shape < 0.36:
            input_tokens = int(threshold)  # at the threshold is not above it
        else:
            input_tokens = int(10 ** rng.uniform(1, 5.3))
        cache_read = rng.randint(0, input_tokens) if rng.random() < 0.4 else 0
        cache_write = rng.randint(0, input_tokens - cache_read) if rng.random() < 0.3 else 0
        calls.append(
            Call(
                event_id=f"{hour:%Y%m%d%H}-{i}",
                provider=provider,
                model=name,
                occurred_at=at,
                input_tokens=input_tokens,
                output_tokens=rng.randint(1, 8_000),
                cache_read_tokens=cache_read,
                cache_write_tokens=cache_write,
                service_tier="batch" if rng.random() < 0.15 else "standard",
            )
        )
    for provider, name, change in PRICE_CHANGES:  # the last microsecond before, the first at
        for at in (change - timedelta(microseconds=1), change):
            if hour <= at < hour + timedelta(hours=1):
                calls.append(Call(f"{hour:%Y%m%d%H}-{name}-{at:%H%M%S%f}", provider, name, at,
                                  1000, 500, 0, 0, "standard"))  # fmt: skip
    for j, (provider, name) in enumerate(UNKNOWN):
        calls.append(Call(f"{hour:%Y%m%d%H}-unknown-{j}", provider, name,
                          hour + timedelta(minutes=30), 1000, 500, 0, 0, "standard"))  # fmt: skip
    return calls


def write_landing(p, hour: datetime, calls: list[Call]) -> None:
    folder = hour_dir(p.landing, hour)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        CallEvent(**{**call.__dict__, "feature": "pricing-check"}).to_json_line() for call in calls
    ]
    (folder / "x.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, dbt_manifest: Path):
    """(calls by event_id, fct_llm_calls rows by event_id, the spendwatch paths)."""
    with isolated_home(tmp_path_factory.mktemp("prices") / "home") as p:
        seeds, rng = Seeds(), random.Random(20261126)
        calls: dict[str, Call] = {}
        for index, hour in enumerate(HOURS):
            count = RANDOM_CALLS // len(HOURS) + (index < RANDOM_CALLS % len(HOURS))
            batch = random_calls(seeds, hour, count, rng)
            write_landing(p, hour, batch)
            calls.update((call.event_id, call) for call in batch)
        for start, hours in WINDOWS:
            assert materialize_range(p, start, start + timedelta(hours=hours)).success
        con = duckdb.connect(str(p.warehouse), read_only=True)
        try:
            cursor = con.execute(
                "select event_id, canonical_model, price_id, is_priced, is_long_context, cost_usd "
                "from marts.fct_llm_calls"
            )
            names = [d[0] for d in cursor.description]
            rows = {r[0]: dict(zip(names, r, strict=True)) for r in cursor.fetchall()}
        finally:
            con.close()
        yield calls, rows, p


# ----------------------------------------------------------------------------- the tests


def test_ten_thousand_random_calls_agree_with_genai_prices(priced) -> None:
    calls, rows, _ = priced
    seeds = Seeds()
    extra = len(HOURS) * len(UNKNOWN) + 2 * len(PRICE_CHANGES)
    assert len(calls) == 10_000 + extra and set(rows) == set(calls)
    compared, batch_by_hand, not_in_genai, mismatches = 0, 0, [], []
    kinds = {"long": 0, "cache_read": 0, "cache_write": 0, "batch_vs_genai": 0}
    for event_id, call in calls.items():
        row, got = seeds.price_row(call.provider, call.model, call.occurred_at), rows[event_id]
        if row is None:
            assert (call.provider, call.model) in UNKNOWN
            assert not got["is_priced"] and got["cost_usd"] is None and got["price_id"] is None
            assert genai_price(call) is None  # genai-prices does not know it either
            continue
        assert got["is_priced"] and got["price_id"] == f"{row.label}", (call, got)
        assert got["canonical_model"] == seeds.canonical(call.provider, call.model)
        assert got["cost_usd"] > 0
        # our own rule, by hand from the seed: exact to the 15 decimals money keeps
        assert abs(got["cost_usd"] - by_hand(row, call)) <= Decimal("1e-14"), (call, got)
        if not row.source.startswith("genai-prices"):
            not_in_genai.append((call.model, f"{call.occurred_at:%Y-%m-%d %H:%M}", got["cost_usd"]))
            continue
        if call.service_tier == "batch":
            batch_by_hand += 1
            if not genai_batch_covers(call):
                continue
            expected, kinds["batch_vs_genai"] = (
                genai_price(call, BATCH),
                kinds["batch_vs_genai"] + 1,
            )
        else:
            expected = genai_price(call)
        compared += 1
        kinds["long"] += got["is_long_context"]
        kinds["cache_read"] += call.cache_read_tokens > 0
        kinds["cache_write"] += call.cache_write_tokens > 0
        if expected is None or abs(got["cost_usd"] - expected) > TOLERANCE:
            mismatches.append((call, got["price_id"], got["cost_usd"], expected))
    print(f"\ncompared with genai-prices: {compared:,} calls {kinds}; batch calls checked by hand: "
          f"{batch_by_hand:,}; priced by rows genai-prices lacks: {len(not_in_genai)}")  # fmt: skip
    for model, at, usd in sorted(not_in_genai)[:10]:
        print(f"  not in genai-prices: {model} at {at}: ${usd:.6f}")
    assert not mismatches, mismatches[:5]
    assert compared >= 8_000 and batch_by_hand >= 1_000
    assert all(n >= 50 for n in kinds.values()), kinds
    # gpt-4o's launch price is ours alone (genai-prices has no history for the gpt-4o name)
    assert not_in_genai and {model for model, _, _ in not_in_genai} <= {"gpt-4o"}


def test_a_price_change_applies_from_its_first_microsecond(priced) -> None:
    calls, rows, _ = priced
    expected = {
        "gpt-4o": ("openai/gpt-4o@2024-05-13", "openai/gpt-4o@2024-10-02"),
        "gpt-4o-2024-08-06": ("openai/gpt-4o-2024-08-06@2024-08-06", "openai/gpt-4o@2024-10-02"),
    }
    for _, name, change in PRICE_CHANGES:
        found = tuple(
            rows[f"{at:%Y%m%d%H}-{name}-{at:%H%M%S%f}"]["price_id"]
            for at in (change - timedelta(microseconds=1), change)
        )
        assert found == expected[name], name


def test_correcting_a_price_row_reprices_history(priced, tmp_path: Path) -> None:
    """Correct a price in the seed, reload it and build without a window: history is re-priced."""
    calls, rows, p = priced
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dbt_project.yml", "models", "macros", "seeds"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, project / name)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(p.warehouse, home / "warehouse.duckdb")
    env = {"SPENDWATCH_HOME": str(home), "DBT_PROFILES_DIR": str(REPO), "DO_NOT_TRACK": "1"}

    def dbt(*args: str) -> None:
        run = subprocess.run([dbt_executable(), *args, "--log-path", str(tmp_path / "logs")],
                             cwd=project, env={**os.environ, **env},
                             capture_output=True, text=True)  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]

    def costs() -> dict[str, Decimal]:
        con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        try:
            return dict(
                con.execute("select event_id, cost_usd from marts.fct_llm_calls").fetchall()
            )
        finally:
            con.close()

    mini = {e for e, c in calls.items() if rows[e]["price_id"] == "openai/gpt-4o-mini@2024-07-18"}
    assert len(mini) > 50
    seed = project / "seeds" / "model_prices.csv"
    text = [
        ",".join((*line.split(",")[:5], "0.7", *line.split(",")[6:]))
        if line.startswith("openai,gpt-4o-mini,") else line
        for line in seed.read_text().splitlines()
    ]  # fmt: skip
    seed.write_text("\n".join(text) + "\n")
    # reload the seed and run the incremental mart without a window: it re-prices everything
    dbt(
        "build", "--select", "model_prices", "fct_llm_calls", "--exclude", "resource_type:unit_test"
    )
    after = costs()
    (corrected,) = [row for row in read_seed(seed) if row.model == "gpt-4o-mini"]
    assert corrected.figures["output_usd_per_mtok"] == Decimal("0.7")
    for event_id in mini:
        assert abs(after[event_id] - by_hand(corrected, calls[event_id])) <= Decimal("1e-14")
        assert after[event_id] > rows[event_id]["cost_usd"]
    assert {e: usd for e, usd in after.items() if e not in mini} == {
        e: row["cost_usd"] for e, row in rows.items() if e not in mini
    }


# ----------------------------------------------------------------------------- prices sync


def test_the_seed_is_in_sync_with_genai_prices() -> None:
    result = sync(read_seed(DEFAULT_SEED), read_catalog(SEEDS / "model_catalog.csv"), GenaiPrices())
    assert result.changes == [], [c.label for c in result.changes]


def _edited_copy(tmp_path: Path) -> Path:
    """A copy of the seeds with a wrong price, a missing row and a model genai-prices lacks."""
    shutil.copy(SEEDS / "model_catalog.csv", tmp_path / "model_catalog.csv")
    with (tmp_path / "model_catalog.csv").open("a") as handle:
        handle.write("openai,gpt-internal,internal,mid,32000,2025-01-01\n")
    lines = (SEEDS / "model_prices.csv").read_text().splitlines()
    edited = []
    for line in lines:
        if line.startswith("openai,gpt-4.1,"):
            line = line.replace(",2,8,0.5,", ",2,9,0.5,")
        if line.startswith("openai,gpt-5,"):
            continue
        edited.append(line)
    edited.append("openai,gpt-internal,2025-01-01 00:00:00,,1,2,,,,,,,,,our own contract")
    seed = tmp_path / "model_prices.csv"
    seed.write_text("\n".join(edited) + "\n")
    return seed


def test_sync_dry_run_reports_changes_and_writes_nothing(tmp_path: Path, capsys) -> None:
    seed = _edited_copy(tmp_path)
    before = seed.read_bytes()
    assert main(["prices", "sync", "--dry-run", "--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    assert seed.read_bytes() == before
    assert "~ changed openai/gpt-4.1@2025-04-14: output 9 → 8" in out
    assert "+ added   openai/gpt-5@2025-08-07: until open, input 1.25, output 10" in out
    assert "openai/gpt-4o: kept 1 row(s) before 2024-10-02" in out
    assert "openai/gpt-internal: not in genai-prices" in out
    assert "1 added, 1 changed, 0 removed" in out and "dry run, nothing written" in out


def test_sync_writes_the_seed(tmp_path: Path, capsys) -> None:
    seed = _edited_copy(tmp_path)
    assert main(["prices", "sync", "--seed", str(seed)]) == 0
    assert "1 added, 1 changed, 0 removed" in capsys.readouterr().out
    synced = {row.key: row for row in read_seed(seed)}
    repo = {row.key: row for row in read_seed(DEFAULT_SEED)}
    (own,) = [row for key, row in synced.items() if key not in repo]
    assert own.model == "gpt-internal" and own.source == "our own contract"
    assert {key: row for key, row in synced.items() if key in repo} == repo
    assert main(["prices", "sync", "--dry-run", "--seed", str(seed)]) == 0
    assert "0 added, 0 changed, 0 removed" in capsys.readouterr().out


def test_sync_reports_a_missing_seed(tmp_path: Path, capsys) -> None:
    assert main(["prices", "sync", "--seed", str(tmp_path / "nope.csv")]) == 2
    assert "price seed" in capsys.readouterr().err
