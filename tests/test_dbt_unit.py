"""Every dbt `unit_tests:` block in models/ runs and passes against a real DuckDB warehouse.

dbt unit tests read the column types of a model's inputs from the warehouse, so the raw tables
(created by the ingest), the seeds and the models are built first in a temporary home. The
names run are compared with the names declared in the YAML files: a unit test dbt skipped or
never selected fails here instead of passing silently.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestration.defs.resources import dbt_executable
from orchestration.lib.ingest import connect

REPO = Path(__file__).resolve().parents[1]

#: One unit test per pricing rule (models/intermediate/_intermediate__models.yml).
PRICING_RULES = {
    "prices_the_worked_example",
    "prices_a_plain_call",
    "prices_cache_reads_and_writes_apart_from_input",
    "prices_the_whole_call_at_the_long_context_tier_above_the_threshold",
    "takes_the_batch_discount_off_batch_calls_only",
    "switches_price_exactly_at_valid_from",
    "unknown_model_is_unpriced_not_free",
    "resolves_exact_aliases_and_the_longest_prefix",
    "prices_a_snapshot_by_its_own_rows_while_they_are_valid",
}

#: One unit test per case of the cost-change decomposition (models/marts/_drivers__unit_tests.yml):
#: each driver alone, all at once, a model appearing, one vanishing, hours that cost nothing.
DRIVER_CASES = {
    "volume_alone_goes_to_volume",
    "model_mix_alone_goes_to_model_mix",
    "prompt_growth_alone_goes_to_input_tokens_per_call",
    "longer_answers_alone_go_to_output_tokens_per_call",
    "cache_loss_alone_goes_to_cache",
    "retries_alone_go_to_retries",
    "price_change_alone_goes_to_price",
    "combined_changes_sum_exactly",
    "a_new_model_takes_its_whole_cost_as_model_mix",
    "a_vanished_model_gives_back_its_whole_cost_as_model_mix",
    "zero_cost_hours",
}


def declared_unit_tests() -> dict[str, str]:
    """unit test name -> model, from every YAML file under models/."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "models").rglob("*.yml")):
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests") or []:
            assert test["name"] not in found, f"unit test {test['name']} declared twice"
            found[test["name"]] = test["model"]
    return found


def dbt(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "SPENDWATCH_HOME": str(home),
        "DBT_PROFILES_DIR": str(REPO),
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    paths = ["--target-path", str(home / "target"), "--log-path", str(home / "logs")]
    return subprocess.run(
        [dbt_executable(), *args, *paths], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def unit_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dbt_unit")
    connect(home / "warehouse.duckdb").close()  # the raw tables the staging models read
    built = dbt(home, "build", "--exclude", "resource_type:unit_test")
    assert built.returncode == 0, built.stdout[-4000:]
    tested = dbt(home, "test", "--select", "test_type:unit")
    run_results = home / "target" / "run_results.json"
    assert run_results.exists(), tested.stdout[-4000:]
    results = json.loads(run_results.read_text())["results"]
    return {r["unique_id"].rsplit(".", 1)[-1]: r["status"] for r in results}


def test_every_declared_unit_test_ran_and_passed(unit_results: dict[str, str]) -> None:
    declared = declared_unit_tests()
    assert set(unit_results) == set(declared)
    failed = {name: status for name, status in unit_results.items() if status != "pass"}
    assert not failed


def test_each_pricing_rule_has_its_unit_test(unit_results: dict[str, str]) -> None:
    declared = declared_unit_tests()
    pricing = {name for name, model in declared.items() if model == "int_llm_calls_priced"}
    assert pricing == PRICING_RULES
    assert {name: unit_results.get(name) for name in PRICING_RULES} == dict.fromkeys(
        PRICING_RULES, "pass"
    )


def test_each_cost_driver_case_has_its_unit_test(unit_results: dict[str, str]) -> None:
    declared = declared_unit_tests()
    cases = {name for name, model in declared.items() if model == "agg_hourly_feature_cost_drivers"}
    assert cases == DRIVER_CASES
    assert {name: unit_results.get(name) for name in DRIVER_CASES} == dict.fromkeys(
        DRIVER_CASES, "pass"
    )


def test_the_driver_unit_tests_expect_what_the_independent_lmdi_computes() -> None:
    """models/marts/_drivers__unit_tests.yml is what tests/drivers_oracle.py writes: its expected
    effects come from an LMDI computed in Python, not from the SQL they test."""
    import drivers_oracle

    declared = yaml.safe_load(drivers_oracle.UNIT_TESTS.read_text())
    assert declared == yaml.safe_load(drivers_oracle.render())
