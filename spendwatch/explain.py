"""`spendwatch explain`: why a feature's (or a team's) cost changed between two periods.

The decomposition is not written here: it is the dbt macro file `macros/cost_drivers.sql`,
which the mart `agg_hourly_feature_cost_drivers` expands through dbt. This module renders the
same macros with jinja2 (they are plain Jinja on purpose) over the calls of the two periods in
`marts.fct_llm_calls`, and runs the SQL on the warehouse opened read-only for the length of one
query. Python only checks the arguments, rounds for display and words the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: the macro file both the dbt project and this command render
MACROS = Path(__file__).resolve().parents[1] / "macros" / "cost_drivers.sql"

DRIVERS = (
    "volume", "model_mix", "input_tokens_per_call", "output_tokens_per_call", "cache", "retries",
    "price",
)  # fmt: skip

#: the measures cost_driver_measures() sums, as cost_driver_effects() names them
_MEASURES = {
    "calls": "priced_calls",
    "retry_calls": "priced_retry_calls",
    "input_tokens": "priced_input_tokens",
    "output_tokens": "priced_output_tokens",
    "cache_read_tokens": "priced_cache_read_tokens",
    "input_cost_usd": "input_cost_usd",
    "input_list_cost_usd": "input_list_cost_usd",
    "output_cost_usd": "output_cost_usd",
}


class ExplainError(ValueError):
    """Arguments or data that leave nothing to explain; the message says what to do."""


@dataclass(frozen=True)
class Driver:
    driver: str
    usd: float  # full precision, as the SQL returned it
    share: float | None
    value_before: float | None
    value_after: float | None
    detail_model: str | None


@dataclass(frozen=True)
class Explanation:
    dimension: str  # "feature" or "team"
    name: str
    environment: str | None
    period: tuple[datetime, datetime]
    compared_with: tuple[datetime, datetime]
    cost_usd: float
    compared_cost_usd: float
    drivers: list[Driver]  # sorted by |usd|, largest first

    @property
    def total_change_usd(self) -> float:
        return self.cost_usd - self.compared_cost_usd

    def cents(self) -> dict[str, int]:
        """Each driver in whole cents, apportioned (largest remainder) so that they add up to
        the change of the rounded costs exactly: what the table and --json show."""
        total = round(self.cost_usd * 100) - round(self.compared_cost_usd * 100)
        floors = {d.driver: int(d.usd * 100 // 1) for d in self.drivers}
        left = total - sum(floors.values())
        by_remainder = sorted(
            self.drivers, key=lambda d: d.usd * 100 - floors[d.driver], reverse=left > 0
        )
        step = 1 if left > 0 else -1
        for d in by_remainder[: abs(left)]:
            floors[d.driver] += step
        return floors

    def as_json(self) -> dict:
        cents = self.cents()
        return {
            self.dimension: self.name,
            "environment": self.environment,
            "period": [_iso(self.period[0]), _iso(self.period[1])],
            "compared_with": [_iso(self.compared_with[0]), _iso(self.compared_with[1])],
            "cost_usd": round(self.cost_usd, 2),
            "compared_cost_usd": round(self.compared_cost_usd, 2),
            "total_change_usd": (round(self.cost_usd * 100) - round(self.compared_cost_usd * 100))
            / 100,
            "drivers": [
                {
                    "driver": d.driver,
                    "usd": cents[d.driver] / 100,
                    "share": None if d.share is None else round(d.share, 4),
                }
                for d in self.drivers
            ],
        }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decomposition_sql(dimension: str) -> str:
    """The query: two periods of one feature (or team) → driver rows. Parameters, in order:
    name, environment (twice, None for all), period start/end, name, environment (twice),
    compared start/end."""
    import jinja2

    module = (
        jinja2.Environment(undefined=jinja2.StrictUndefined)
        .from_string(MACROS.read_text(encoding="utf-8"))
        .module
    )
    column = {"feature": "feature", "team": "team_id"}[dimension]
    renamed = ",\n        ".join(f"{source} as {name}" for name, source in _MEASURES.items())
    periods = []
    for period in (1, 0):
        periods.append(f"""
    select 'all' as subject, {period} as period, provider, model,
        {renamed}
    from (
        select provider, canonical_model as model, {module.cost_driver_measures(with_calls=True)}
        from marts.fct_llm_calls
        where {column} = ? and (cast(? as string) is null or environment = ?)
            and occurred_at >= ? and occurred_at < ?
        group by provider, canonical_model
    ) as measured""")
    return f"""
with periods as ({" union all ".join(periods)}
),

{module.cost_driver_effects("periods", ["subject"])}

select driver, usd, share, value_before, value_after, detail_model, cost_usd, compared_cost_usd
from driver_rows
order by driver_rank
"""


def explain(
    con,
    dimension: str,
    name: str,
    environment: str | None,
    period: tuple[datetime, datetime],
    compared_with: tuple[datetime, datetime],
) -> Explanation:
    """Run the decomposition on an open DuckDB connection (the warehouse, read-only)."""
    for label, (start, end) in (("--from/--to", period), ("--vs", compared_with)):
        if end <= start:
            raise ExplainError(f"{label}: the end {_iso(end)} is not after the start {_iso(start)}")
    column = {"feature": "feature", "team": "team_id"}[dimension]
    naive = [at.astimezone(UTC).replace(tzinfo=None) for at in (*period, *compared_with)]
    params = [
        name, environment, environment, naive[0], naive[1],
        name, environment, environment, naive[2], naive[3],
    ]  # fmt: skip
    rows = con.execute(decomposition_sql(dimension), params).fetchall()
    if not rows:
        known = [
            r[0]
            for r in con.execute(
                f"select distinct {column} from marts.fct_llm_calls where {column} is not null "
                f"order by 1"
            ).fetchall()
        ]
        if name not in known:
            raise ExplainError(
                f"no {dimension} {name!r} in marts.fct_llm_calls; known: "
                + (", ".join(known[:20]) or "none (materialize first)")
            )
        where = f" in environment {environment!r}" if environment else ""
        raise ExplainError(
            f"{dimension} {name!r}{where} has no priced calls from {_iso(period[0])} to "
            f"{_iso(period[1])} nor from {_iso(compared_with[0])} to {_iso(compared_with[1])}: "
            "choose periods with traffic (times are UTC)"
        )
    drivers = [Driver(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    return Explanation(
        dimension, name, environment, period, compared_with, rows[0][6], rows[0][7], drivers
    )


# --- words -------------------------------------------------------------------------------


def _ratio(before: float | None, after: float | None) -> str | None:
    if not before or not after or before <= 0 or after <= 0:
        return None
    ratio = after / before
    return f"{ratio:.2f}×" if 0.9 <= ratio <= 1.1 else f"{ratio:.1f}×"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def detail(d: Driver) -> str:
    """What moved, in the driver's own units (the same wording as the mart's explanation)."""
    b, a = d.value_before, d.value_after
    ratio = f" ({r})" if (r := _ratio(b, a)) else ""
    if d.driver == "volume":
        return f"requests {b or 0:,.0f} → {a or 0:,.0f}{ratio}"
    if d.driver == "model_mix":
        if not d.detail_model:
            return ""
        arrow = "→" if (a or 0) > (b or 0) else "away from"
        return f"{arrow} {d.detail_model} ({_pct(b)} → {_pct(a)} of calls)"
    if d.driver in ("input_tokens_per_call", "output_tokens_per_call"):
        return f"{b or 0:,.0f} → {a or 0:,.0f}{ratio}"
    if d.driver == "cache":
        return f"cache reads {_pct(b)} → {_pct(a)} of input tokens"
    if d.driver == "retries":
        return f"retries {_pct(b)} → {_pct(a)} of calls"
    if d.driver == "price" and d.detail_model and b and a:
        return f"{d.detail_model} ${b:,.2f} → ${a:,.2f} per 1M tokens (list, blended)"
    return ""
