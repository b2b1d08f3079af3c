"""The expected values of models/marts/_drivers__unit_tests.yml, from an LMDI written here in
Python, apart from the SQL (macros/cost_drivers.sql). `python tests/drivers_oracle.py` writes
the YAML; tests/test_dbt_unit.py checks that the YAML still says what this computes.

One scored hour (Monday 2025-03-10 10:00, an hour-of-week baseline) against the same hour a week
before, one feature `f`; model a costs $1 / $2 per 1M input / output tokens ($0.10 cache reads),
model b three times that."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

UNIT_TESTS = Path(__file__).resolve().parents[1] / "models" / "marts" / "_drivers__unit_tests.yml"
NOW, WEEK_BEFORE = "2025-03-10 10:00:00", "2025-03-03 10:00:00"
RATES = {"a": (1.0, 2.0, 0.1), "b": (3.0, 6.0, 0.3)}  # input, output, cache read (USD / 1M)
DRIVERS = ("volume", "model_mix", "input_tokens_per_call", "output_tokens_per_call", "cache",
           "retries", "price")  # fmt: skip


def usage(model: str, calls: int, retries: int = 0, input_per_call: int = 1000,
          output_per_call: int = 200, cache: float = 0.0, input_rate: float | None = None,
          output_rate: float | None = None) -> dict:  # fmt: skip
    """One model's hour: its calls, tokens and costs (a rate change scales the cache rate too)."""
    base_in, base_out, base_cache = RATES[model]
    input_rate = input_rate or base_in
    output_rate = output_rate or base_out
    cache_rate = base_cache * input_rate / base_in
    input_tokens, output_tokens = calls * input_per_call, calls * output_per_call
    cached = round(input_tokens * cache)
    return {
        "model": model, "calls": calls, "retries": retries, "input_tokens": input_tokens,
        "output_tokens": output_tokens, "cache_read_tokens": cached,
        "input_cost": round(((input_tokens - cached) * input_rate + cached * cache_rate) / 1e6, 15),
        "input_list_cost": round(input_tokens * input_rate / 1e6, 15),
        "output_cost": round(output_tokens * output_rate / 1e6, 15),
    }  # fmt: skip


def log_mean(a: float, b: float) -> float:
    return a if a == b else (a - b) / (math.log(a) - math.log(b))


def components(row: dict | None, side: str) -> tuple[float, float, float, float]:
    """(calls, tokens, cost, list cost) of one side of a model's cost; zeros when absent."""
    if row is None:
        return 0, 0, 0, 0
    if side == "input":
        return row["calls"], row["input_tokens"], row["input_cost"], row["input_list_cost"]
    return row["calls"], row["output_tokens"], row["output_cost"], row["output_cost"]


def decompose(before: list[dict], after: list[dict]) -> tuple[dict[str, float], float]:
    """The seven effects and the total change (docs/detection.md, "Why the bill moved")."""
    effects = dict.fromkeys(DRIVERS, 0.0)
    calls = [sum(r["calls"] for r in rows) for rows in (before, after)]
    retries = [sum(r["retries"] for r in rows) for rows in (before, after)]
    folded = any(c > 0 and c - r <= 0 for c, r in zip(calls, retries, strict=True))
    volume = calls if folded else [c - r for c, r in zip(calls, retries, strict=True)]
    factor = [1.0 if folded or c == 0 else c / (c - r) for c, r in zip(calls, retries, strict=True)]
    for model in sorted({r["model"] for r in before + after}):
        rows = [next((r for r in side if r["model"] == model), None) for side in (before, after)]
        for side in ("input", "output"):
            (n0, t0, k0, l0), (n1, t1, k1, l1) = (components(r, side) for r in rows)
            if k0 > 0 and k1 > 0:
                weight = log_mean(k1, k0)
                effects["volume"] += weight * math.log(volume[1] / volume[0])
                effects["retries"] += weight * math.log(factor[1] / factor[0])
                effects["model_mix"] += weight * math.log((n1 / calls[1]) / (n0 / calls[0]))
                effects[f"{side}_tokens_per_call"] += weight * math.log((t1 / n1) / (t0 / n0))
                effects["cache"] += weight * math.log((k1 / l1) / (k0 / l0))
                effects["price"] += weight * math.log((l1 / t1) / (l0 / t0))
            elif k0 > 0 or k1 > 0:  # the limit: all of it to the factor that is zero
                zero = 0 if k0 == 0 else 1
                n, t, list_cost = (n0, n1)[zero], (t0, t1)[zero], (l0, l1)[zero]
                if calls[zero] == 0:
                    driver = "volume"
                elif n == 0:
                    driver = "model_mix"
                elif t == 0:
                    driver = f"{side}_tokens_per_call"
                else:
                    driver = "cache" if list_cost > 0 else "price"
                effects[driver] += k1 - k0
    cost = [sum(r["input_cost"] + r["output_cost"] for r in rows) for rows in (before, after)]
    total = cost[1] - cost[0]
    assert abs(sum(effects.values()) - total) < 1e-12, (effects, total)
    return effects, total


def model_rows(hour: str, rows: list[dict], feature: str = "f") -> list[dict]:
    """rows of agg_hourly_feature_model_cost"""
    return [
        {"hour_at": hour, "feature": feature, "environment": "production", "provider": "openai",
         "model": r["model"], "calls": r["calls"], "priced_calls": r["calls"],
         "priced_retry_calls": r["retries"], "priced_input_tokens": r["input_tokens"],
         "priced_output_tokens": r["output_tokens"],
         "priced_cache_read_tokens": r["cache_read_tokens"], "input_cost_usd": r["input_cost"],
         "input_list_cost_usd": r["input_list_cost"], "output_cost_usd": r["output_cost"]}
        for r in rows
    ]  # fmt: skip


def feature_row(feature: str, cost: float, calls_baseline: float) -> dict:
    """a row of agg_hourly_feature_cost"""
    return {"hour_at": NOW, "feature": feature, "environment": "production",
            "baseline_kind": "hour_of_week", "hour_of_week": 10, "cost_usd": cost,
            "calls_baseline": calls_baseline}  # fmt: skip


CASES = [
    ("volume_alone_goes_to_volume", "Calls double (requests and retries alike); everything per "
     "call stays.", [usage("a", 100, 10)], [usage("a", 200, 20)], "volume"),
    ("model_mix_alone_goes_to_model_mix", "Model a takes 80 % of the calls, then 40 %; b (3× "
     "dearer) the rest; tokens per call and rates unchanged.",
     [usage("a", 80), usage("b", 20)], [usage("a", 40), usage("b", 60)], "model_mix"),
    ("prompt_growth_alone_goes_to_input_tokens_per_call", "Input tokens per call 1,000 → 2,500.",
     [usage("a", 100)], [usage("a", 100, input_per_call=2500)], "input_tokens_per_call"),
    ("longer_answers_alone_go_to_output_tokens_per_call", "Output tokens per call 200 → 600.",
     [usage("a", 100)], [usage("a", 100, output_per_call=600)], "output_tokens_per_call"),
    ("cache_loss_alone_goes_to_cache", "80 % of input tokens read from the cache (at a tenth of "
     "the input rate), then none.", [usage("a", 100, cache=0.8)], [usage("a", 100)], "cache"),
    ("retries_alone_go_to_retries", "95 requests both times; 5 retries, then 45.",
     [usage("a", 100, 5)], [usage("a", 140, 45)], "retries"),
    ("price_change_alone_goes_to_price", "The same tokens; the list rates rise from $1/$2 to "
     "$1.50/$3 per 1M.", [usage("a", 100)],
     [usage("a", 100, input_rate=1.5, output_rate=3.0)], "price"),
    ("combined_changes_sum_exactly", "Everything at once: more requests, a shift to b, longer "
     "prompts, shorter answers, less cache, more retries and a price rise of a.",
     [usage("a", 90, 4, cache=0.6), usage("b", 30, 2, cache=0.5)],
     [usage("a", 70, 20, input_per_call=1400, output_per_call=150, cache=0.2, input_rate=1.2,
            output_rate=2.4),
      usage("b", 90, 6, input_per_call=1200, output_per_call=180, cache=0.5)], None),
    ("a_new_model_takes_its_whole_cost_as_model_mix", "b appears (no calls in the baseline): its "
     "whole cost is model mix; a keeps its calls.",
     [usage("a", 100)], [usage("a", 100), usage("b", 25, input_per_call=1600)], None),
    ("a_vanished_model_gives_back_its_whole_cost_as_model_mix", "b had 30 calls and is gone; a "
     "takes 110.", [usage("a", 100), usage("b", 30)], [usage("a", 110)], None),
]  # fmt: skip


def unit_test(name: str, description: str, given: list[dict], expect: list[dict]) -> dict:
    return {
        "name": name, "description": description, "model": "agg_hourly_feature_cost_drivers",
        "overrides": {"macros": {"is_incremental": False}},
        "given": given, "expect": {"rows": expect},
    }  # fmt: skip


def unit_tests() -> list[dict]:
    tests = []
    for name, description, before, after, single in CASES:
        effects, total = decompose(before, after)
        top = max(DRIVERS, key=lambda d: (abs(effects[d]), -DRIVERS.index(d)))
        if single:
            assert abs(effects[single] - total) < 1e-12, name
            assert all(abs(v) < 1e-15 for d, v in effects.items() if d != single), name
            description += f" All of the change goes to {single}; every other driver is exactly 0."
        else:
            description += (" The seven effects (an independent LMDI computation gave them) sum "
                            f"to the change, {total:.6f}.")  # fmt: skip
        cost = round(sum(r["input_cost"] + r["output_cost"] for r in after), 15)
        expected = {"hour_at": NOW, "feature": "f", "environment": "production",
                    "cost_change_usd": round(total, 9), "top_driver": top}  # fmt: skip
        expected |= {f"{d}_usd": round(effects[d], 9) + 0.0 for d in DRIVERS}
        given = [
            {"input": "ref('agg_hourly_feature_cost')",
             "rows": [feature_row("f", cost, sum(r["calls"] for r in before))]},
            {"input": "ref('agg_hourly_feature_model_cost')",
             "rows": model_rows(WEEK_BEFORE, before) + model_rows(NOW, after)},
        ]  # fmt: skip
        tests.append(unit_test(name, description, given, [expected]))

    # f usually spends $0.14 at this hour and is silent; g had no calls at all; h calls a model
    # that costs nothing, both times
    def free(hour: str) -> dict:  # a model priced at $0
        return {"hour_at": hour, "feature": "h", "environment": "production",
                "provider": "openai", "model": "free", "calls": 50, "priced_calls": 50,
                "priced_retry_calls": 0, "priced_input_tokens": 5000,
                "priced_output_tokens": 500, "priced_cache_read_tokens": 0,
                "input_cost_usd": 0, "input_list_cost_usd": 0, "output_cost_usd": 0}  # fmt: skip

    zeros = {f"{d}_usd": 0.0 for d in DRIVERS}
    silent = [
        {
            "driver": d,
            "usd": -0.14 if d == "volume" else 0.0,
            "share": 1.0 if d == "volume" else 0.0,
        }
        for d in DRIVERS
    ]
    free_drivers = [{"driver": d, "usd": 0.0, "share": None} for d in DRIVERS]
    tests.append(unit_test(
        "zero_cost_hours",
        "f usually spends $0.14 at this hour and is silent: the whole -$0.14 is volume. g had no "
        "calls in its history and none now, h calls a model that costs nothing both times: no "
        "change, every driver 0, no top driver, no explanation.",
        [{"input": "ref('agg_hourly_feature_cost')",
          "rows": [feature_row("f", 0, 100), feature_row("g", 0, 0), feature_row("h", 0, 50)]},
         {"input": "ref('agg_hourly_feature_model_cost')",
          "rows": model_rows(WEEK_BEFORE, [usage("a", 100)])
          + [free(WEEK_BEFORE), free(NOW)]}],
        [{"hour_at": NOW, "feature": "f", "environment": "production", "cost_change_usd": -0.14,
          "top_driver": "volume", **zeros, "volume_usd": -0.14,
          "explanation": "-$0.1400 of -$0.1400: volume", "drivers": drivers_json(silent)},
         {"hour_at": NOW, "feature": "g", "environment": "production", "cost_change_usd": 0.0,
          "top_driver": None, **zeros, "explanation": None, "drivers": "[]"},
         {"hour_at": NOW, "feature": "h", "environment": "production", "cost_change_usd": 0.0,
          "top_driver": None, **zeros, "explanation": None, "drivers": drivers_json(free_drivers)}],
    ))  # fmt: skip
    return tests


def drivers_json(drivers: list[dict]) -> str:
    """The mart's `drivers` text (two decimals of USD, four of share)."""

    def item(d: dict) -> str:
        share = "null" if d["share"] is None else f"{d['share']:.4f}"
        return f'{{"driver": "{d["driver"]}", "usd": {d["usd"]:.2f}, "share": {share}}}'

    return "[" + ", ".join(item(d) for d in drivers) + "]"


HEADER = """\
# dbt unit tests of agg_hourly_feature_cost_drivers (the LMDI decomposition of
# macros/cost_drivers.sql). Written by tests/drivers_oracle.py (`python tests/drivers_oracle.py`):
# the expected effects come from an LMDI computed there, apart from the SQL. One scored hour
# (Monday 2025-03-10 10:00, hour-of-week baseline) against the same hour a week before; model a
# costs $1/$2 per 1M input/output tokens ($0.10 cache reads), b three times that.
version: 2

"""


def render() -> str:
    body = yaml.safe_dump({"unit_tests": unit_tests()}, sort_keys=False, allow_unicode=True,
                          width=100)  # fmt: skip
    return HEADER + body


if __name__ == "__main__":
    UNIT_TESTS.write_text(render())
