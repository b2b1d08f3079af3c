"""`spendwatch explain` on a real warehouse: call logs generated where each factor of cost changes
alone between two weeks (volume, model mix, prompt growth, longer answers, cache loss, retries, a
price-list change), all of them at once, a model appearing, a model vanishing and a period with
no calls; loaded by the ingest and priced by dbt (`+fct_llm_calls`), then explained through the
CLI. The requests per hour are the scenario's; the draws of the two weeks are independent
(token lengths, models, cache reads, retries), so the factors that do not change still wobble:
a single factor must take at least 95 % of the change, and the drivers must always add up to
the change exactly (in cents, as shown)."""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from helpers import dbt_build, query

from orchestration.lib.ingest import load_window
from spendwatch.cli import main
from spendwatch.landing import landing_file

B_START = datetime(2026, 10, 12, tzinfo=UTC)  # the week explained; the week before is compared
WEEK = timedelta(days=7)
PRICE_B_START = datetime(2024, 10, 2, tzinfo=UTC)  # gpt-4o: $5/$15 → $2.50/$10 per 1M tokens

BASE = {
    "calls": 6, "models": {"gpt-4o-mini": 1.0}, "input": 1200, "output": 200, "cache": 0.5,
    "retry": 0.03,
}  # fmt: skip
PROVIDER = {"gpt-4o-mini": "openai", "gpt-4o": "openai", "claude-3-5-sonnet": "anthropic"}

#: feature -> (the compared week's traffic, the explained week's) as changes of BASE
SCENARIOS = {
    "volume": ({}, {"calls": 12}),
    "mix": ({"models": {"gpt-4o-mini": 0.8, "gpt-4o": 0.2}},
            {"models": {"gpt-4o-mini": 0.4, "gpt-4o": 0.6}}),
    "prompt": ({}, {"input": 3000}),
    "answers": ({}, {"output": 600}),
    "cache": ({"models": {"claude-3-5-sonnet": 1.0}, "cache": 0.8},
              {"models": {"claude-3-5-sonnet": 1.0}, "cache": 0.05}),
    "retries": ({}, {"retry": 0.45}),
    "combined": ({"models": {"gpt-4o-mini": 0.7, "gpt-4o": 0.3}, "cache": 0.6},
                 {"calls": 9, "models": {"gpt-4o-mini": 0.5, "gpt-4o": 0.5}, "input": 1700,
                  "output": 160, "cache": 0.3, "retry": 0.2}),
    "new-model": ({}, {"models": {"gpt-4o-mini": 0.7, "claude-3-5-sonnet": 0.3}}),
    "vanished": ({"models": {"gpt-4o-mini": 0.7, "claude-3-5-sonnet": 0.3}}, {}),
}  # fmt: skip
#: the feature whose only change is the price list (the same gpt-4o traffic around 2024-10-02)
PRICE = (
    "price",
    {"models": {"gpt-4o": 1.0}, "cache": 0.0},
    {"models": {"gpt-4o": 1.0}, "cache": 0.0},
)
#: expected single driver per feature
SINGLE = {
    "volume": "volume", "mix": "model_mix", "prompt": "input_tokens_per_call",
    "answers": "output_tokens_per_call", "cache": "cache", "retries": "retries", "price": "price",
}  # fmt: skip


def events(feature: str, spec: dict, start: datetime, rng: random.Random) -> list[dict]:
    """A week of calls of one feature: `calls` requests an hour, each going to a model
    drawn from `models`, with lognormal token lengths around `input` / `output`, about `cache`
    of its input read from the prompt cache, and retried with probability `retry` each time
    (a retry is one more call of the same request, attempt 2, 3, ...)."""
    out = []
    models = list(spec["models"].items())
    for hour in range(7 * 24):
        at = start + timedelta(hours=hour)
        for _ in range(spec["calls"]):
            model = rng.choices([m for m, _ in models], [w for _, w in models])[0]
            input_tokens = max(1, round(spec["input"] * rng.lognormvariate(-0.08, 0.4)))
            output_tokens = max(1, round(spec["output"] * rng.lognormvariate(-0.08, 0.4)))
            cached = round(input_tokens * spec["cache"] * rng.uniform(0.9, 1.0))
            attempts = 1
            while attempts < 4 and rng.random() < spec["retry"]:
                attempts += 1
            for attempt in range(1, attempts + 1):
                out.append({
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "occurred_at": (at + timedelta(seconds=rng.randint(0, 3599))).isoformat(),
                    "provider": PROVIDER[model], "model": model,
                    "input_tokens": input_tokens, "output_tokens": output_tokens,
                    "cache_read_tokens": cached, "feature": feature,
                    "environment": "production", "team_id": f"team-{feature}",
                    "status": "error" if attempt < attempts else "ok", "attempt": attempt,
                })  # fmt: skip
    return out


def write(landing: Path, rows: list[dict]) -> None:
    by_file: dict[Path, list[str]] = {}
    for row in rows:
        at = datetime.fromisoformat(row["occurred_at"])
        by_file.setdefault(landing_file(landing, at, "seeded"), []).append(json.dumps(row))
    for path, lines in by_file.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def home(tmp_path_factory, dbt_manifest) -> Path:
    home = tmp_path_factory.mktemp("explain")
    landing = home / "landing" / "calls"
    rng = random.Random(16)
    rows = []
    for feature, (before, after) in SCENARIOS.items():
        rows += events(feature, BASE | before, B_START - WEEK, rng)
        rows += events(feature, BASE | after, B_START, rng)
    # a feature that only exists in the explained week (the compared one cost nothing)
    rows += events("brand-new", BASE, B_START, rng)
    name, before, after = PRICE
    rows += events(name, BASE | before, PRICE_B_START - WEEK, rng)
    rows += events(name, BASE | after, PRICE_B_START, rng)
    write(landing, rows)
    warehouse = home / "warehouse.duckdb"
    load_window(warehouse, landing, B_START - WEEK, B_START + WEEK, now=B_START + 2 * WEEK)
    load_window(
        warehouse, landing, PRICE_B_START - WEEK, PRICE_B_START + WEEK, now=B_START + 2 * WEEK
    )
    dbt_build(
        home, "build", "--select", "+fct_llm_calls", "model_catalog",
        "--exclude", "resource_type:unit_test",
    )  # fmt: skip
    return home


def explain(home: Path, capsys, *args: str) -> dict:
    code = main(["--home", str(home), "explain", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def week_of(feature: str) -> list[str]:
    start = PRICE_B_START if feature == "price" else B_START
    return ["--from", start.isoformat(), "--to", (start + WEEK).isoformat()]


def cents(value: float) -> int:
    return round(value * 100)


def assert_adds_up(result: dict) -> None:
    """The drivers add up to the change to the cent, and the change is the costs' difference."""
    total = cents(result["total_change_usd"])
    assert total == cents(result["cost_usd"]) - cents(result["compared_cost_usd"])
    assert sum(cents(d["usd"]) for d in result["drivers"]) == total, result
    assert [d["driver"] for d in result["drivers"]] == sorted(
        (d["driver"] for d in result["drivers"]),
        key=lambda name: -abs(next(d["usd"] for d in result["drivers"] if d["driver"] == name)),
    )  # sorted by |usd|
    assert {d["driver"] for d in result["drivers"]} == {
        "volume", "model_mix", "input_tokens_per_call", "output_tokens_per_call", "cache",
        "retries", "price",
    }  # fmt: skip


@pytest.mark.parametrize("feature", sorted(SINGLE))
def test_a_factor_that_changes_alone_takes_at_least_95_percent(home, capsys, feature) -> None:
    result = explain(home, capsys, "--feature", feature, *week_of(feature))
    assert_adds_up(result)
    driver = SINGLE[feature]
    top = result["drivers"][0]
    assert top["driver"] == driver, result
    assert top["share"] >= 0.95, result
    # the compared week is the same span one week earlier, and both costs are the warehouse's
    start = PRICE_B_START if feature == "price" else B_START
    assert result["period"] == [f"{start:%Y-%m-%dT%H:%M:%SZ}", f"{start + WEEK:%Y-%m-%dT%H:%M:%SZ}"]
    assert result["compared_with"] == [
        f"{start - WEEK:%Y-%m-%dT%H:%M:%SZ}", f"{start:%Y-%m-%dT%H:%M:%SZ}",
    ]  # fmt: skip
    (cost,), (compared,) = (
        query(home / "warehouse.duckdb",
              "select sum(cost_usd) from marts.fct_llm_calls where feature = ? "
              "and occurred_at >= ? and occurred_at < ?",
              [feature, a.replace(tzinfo=None), (a + WEEK).replace(tzinfo=None)])
        for a in (start, start - WEEK)
    )  # fmt: skip
    assert result["cost_usd"] == round(float(cost[0]), 2)
    assert result["compared_cost_usd"] == round(float(compared[0]), 2)
    if feature == "price":  # $5/$15 → $2.50/$10: the bill fell by about 40 %
        assert result["total_change_usd"] < -0.3 * result["compared_cost_usd"]


def test_combined_changes_add_up_exactly(home, capsys) -> None:
    result = explain(home, capsys, "--feature", "combined", *week_of("combined"))
    assert_adds_up(result)
    moved = {d["driver"]: d["usd"] for d in result["drivers"]}
    # every factor changed: volume up, a shift to gpt-4o, longer prompts, shorter answers,
    # less cache, more retries; the price list did not change
    assert moved["volume"] > 0 and moved["model_mix"] > 0 and moved["input_tokens_per_call"] > 0
    assert moved["output_tokens_per_call"] < 0 and moved["cache"] > 0 and moved["retries"] > 0
    assert abs(moved["price"]) < 0.01
    assert abs(sum(d["share"] for d in result["drivers"]) - 1) < 0.001


def test_the_sql_sums_to_the_change_below_a_micro_dollar(home) -> None:
    """Without the display rounding: the effects of macros/cost_drivers.sql add up exactly."""
    from spendwatch.explain import explain as run

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        for feature in (*SCENARIOS, "price"):
            start = PRICE_B_START if feature == "price" else B_START
            result = run(con, "feature", feature, "production", (start, start + WEEK),
                         (start - WEEK, start))  # fmt: skip
            assert math.isclose(
                sum(d.usd for d in result.drivers), result.total_change_usd, abs_tol=1e-9
            ), feature
    finally:
        con.close()


def test_a_new_model_is_model_mix_and_a_vanished_one_gives_it_back(home, capsys) -> None:
    new = explain(home, capsys, "--feature", "new-model", *week_of("new-model"))
    gone = explain(home, capsys, "--feature", "vanished", *week_of("vanished"))
    for result in (new, gone):
        assert_adds_up(result)
        assert (
            result["drivers"][0]["driver"] == "model_mix" and result["drivers"][0]["share"] >= 0.9
        )
    assert new["total_change_usd"] > 0 and gone["total_change_usd"] < 0
    # claude-3-5-sonnet's whole cost came (went) with the mix: more than the whole change
    (sonnet,) = query(
        home / "warehouse.duckdb",
        "select sum(cost_usd) from marts.fct_llm_calls where feature = 'new-model' "
        "and canonical_model = 'claude-3-5-sonnet'",
    )
    mix = next(d["usd"] for d in new["drivers"] if d["driver"] == "model_mix")
    assert 0 < mix < float(sonnet[0])  # its cost, less what gpt-4o-mini's smaller share saved


def test_a_period_without_calls_is_all_volume(home, capsys) -> None:
    result = explain(home, capsys, "--feature", "brand-new", *week_of("brand-new"))
    assert_adds_up(result)
    assert result["compared_cost_usd"] == 0 and result["total_change_usd"] > 0
    assert result["drivers"][0] == {"driver": "volume", "usd": result["total_change_usd"],
                                    "share": 1.0}  # fmt: skip
    # and explicitly against a period long before any traffic (--vs), per environment
    back = explain(home, capsys, "--feature", "volume", "--environment", "production",
                   *week_of("volume"), "--vs", "2025-01-01", "2025-01-08")  # fmt: skip
    assert back["compared_with"] == ["2025-01-01T00:00:00Z", "2025-01-08T00:00:00Z"]
    assert back["environment"] == "production" and back["drivers"][0]["driver"] == "volume"
    assert back["drivers"][0]["usd"] == back["total_change_usd"] == back["cost_usd"]


def test_a_team_is_explained_like_a_feature(home, capsys) -> None:
    by_feature = explain(home, capsys, "--feature", "combined", *week_of("combined"))
    by_team = explain(home, capsys, "--team", "team-combined", *week_of("combined"))
    assert by_team.pop("team") == "team-combined"
    assert by_feature.pop("feature") == "combined"
    assert by_team == by_feature


def test_the_table_and_the_errors(home, capsys) -> None:
    code = main(["--home", str(home), "explain", "--feature", "prompt", *week_of("prompt")])
    out = capsys.readouterr().out
    assert code == 0
    assert "input_tokens_per_call" in out and "total change" in out
    assert re.search(r"1,\d{3} → [23],\d{3} \(2\.\d×\)", out), out  # tokens per call, 2.5× up
    # the warehouse was opened read-only and closed: a writer can open it at once
    duckdb.connect(str(home / "warehouse.duckdb")).close()
    code = main(["--home", str(home), "explain", "--feature", "nope", *week_of("prompt")])
    out = capsys.readouterr().out
    assert code == 2 and "error: no feature 'nope'" in out and "prompt" in out
    code = main(["--home", str(home), "explain", "--feature", "prompt",
                 "--from", "2025-06-01", "--to", "2025-06-08"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2 and "has no priced calls" in out
    code = main(["--home", str(home), "explain", "--feature", "prompt",
                 "--from", "2026-10-12", "--to", "2026-10-05"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2 and "is not after the start" in out
    with pytest.raises(SystemExit):
        main(["explain", "--feature", "a", "--team", "b", "--from", "2026-10-12", "--to", "x"])
