"""The provider reports `spendwatch reconcile import` reads, validated with pydantic, turned into
rows of `raw.provider_costs`.

Four shapes, as the providers' admin APIs return them (one page per response; a file holds one
page, a JSON array of pages, or one page per line, in the order they were fetched):

- `openai_costs`, OpenAI `GET /v1/organization/costs`: a result is `amount.value` USD (a
  number) of a `line_item` ("gpt-4o-2024-08-06, cached input");
- `openai_usage_completions`, OpenAI `GET /v1/organization/usage/completions`: `input_tokens`
  (cached included), `input_cached_tokens`, `output_tokens` of a `model`;
- `anthropic_cost_report`, Anthropic `GET /v1/organizations/cost_report`: `amount`, a decimal
  string in cents ("123.45" = $1.2345), of a `model` × `token_type`;
- `anthropic_usage_messages`, Anthropic `GET /v1/organizations/usage_report/messages`:
  `uncached_input_tokens`, `cache_read_input_tokens`, `cache_creation.*`, `output_tokens`.

Pages are chained by `has_more` / `next_page`: a file whose last page still says `has_more: true`
is an incomplete report (its billed side would be too low) and is refused. Every result becomes
one row per token kind (`input` = uncached input, `cache_read`, `cache_write`, `output`); a cost
line the parser cannot name a model and a token kind for (OpenAI's "web search tool calls",
Anthropic's `web_search` costs, audio and image tokens) keeps `token_kind` null: the
reconciliation shows it as unmapped. An empty bucket becomes one row without a result
(`result_index` null): it says the report covers that day, and billed nothing for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
)

SUPPORTED = (
    "OpenAI GET /v1/organization/costs (pages of data[].start_time/end_time buckets whose "
    "results[] have object 'organization.costs.result', amount.value and line_item), "
    "OpenAI GET /v1/organization/usage/completions (results[] with object "
    "'organization.usage.completions.result', input_tokens, output_tokens, model), "
    "Anthropic GET /v1/organizations/cost_report (data[].starting_at/ending_at buckets whose "
    "results[] have amount as a decimal string in cents, currency, model, token_type), "
    "Anthropic GET /v1/organizations/usage_report/messages (results[] with "
    "uncached_input_tokens, output_tokens, model); a file holds one page (the JSON the API "
    "returned), a JSON array of pages, or one page per line"
)

#: Anthropic's cost report token types → the warehouse's token kinds. Both cache-write TTLs
#: are cache writes in the warehouse (one cache-write price per model): a 1-hour write billed
#: at twice the input price shows as a price-or-tier gap, which is the point.
ANTHROPIC_TOKEN_TYPES = {
    "uncached_input_tokens": "input",
    "cache_read_input_tokens": "cache_read",
    "cache_creation.ephemeral_5m_input_tokens": "cache_write",
    "cache_creation.ephemeral_1h_input_tokens": "cache_write",
    "output_tokens": "output",
}
#: OpenAI line items: "[tier | ]<model>[ text], <input|cached input|output>[, <more>]"
OPENAI_LINE_ITEM = re.compile(
    r"^(?:(?P<tier>[a-z][a-z ]*?) \| )?(?P<model>[A-Za-z0-9][\w.:\-]*?)"
    r"(?: (?P<modality>text|audio|image))?, (?P<kind>cached input|input|output)(?:, .*)?$"
)
OPENAI_KINDS = {"input": "input", "cached input": "cache_read", "output": "output"}


class ReportError(ValueError):
    """A file that is not a provider report spendwatch can read: what, where, what to do."""


class _Shape(BaseModel):
    # the APIs add fields over time: unknown ones are kept out of the way, not refused
    model_config = ConfigDict(extra="allow", frozen=True)


# ---- OpenAI --------------------------------------------------------------------------------
class OpenAIAmount(_Shape):
    value: Decimal
    currency: str = "usd"


class OpenAICostResult(_Shape):
    object: Literal["organization.costs.result"]
    amount: OpenAIAmount
    line_item: str | None = None
    project_id: str | None = None


class OpenAIUsageResult(_Shape):
    object: Literal["organization.usage.completions.result"]
    input_tokens: NonNegativeInt
    output_tokens: NonNegativeInt
    input_cached_tokens: NonNegativeInt = 0
    num_model_requests: NonNegativeInt | None = None
    model: str | None = None
    project_id: str | None = None
    batch: bool | None = None
    service_tier: str | None = None

    @field_validator("input_cached_tokens")
    @classmethod
    def _cached_within_input(cls, value: int, info) -> int:
        if value > info.data.get("input_tokens", value):
            raise ValueError("input_cached_tokens exceeds input_tokens (which include them)")
        return value


class _OpenAIBucket(_Shape):
    object: Literal["bucket"]
    start_time: int
    end_time: int


class OpenAICostBucket(_OpenAIBucket):
    # the API returns `results`; its OpenAPI document names the field `result`
    results: list[OpenAICostResult] = Field(validation_alias=AliasChoices("results", "result"))


class OpenAIUsageBucket(_OpenAIBucket):
    results: list[OpenAIUsageResult] = Field(validation_alias=AliasChoices("results", "result"))


class OpenAICostPage(_Shape):
    object: Literal["page"]
    data: list[OpenAICostBucket]
    has_more: bool
    next_page: str | None = None


class OpenAIUsagePage(_Shape):
    object: Literal["page"]
    data: list[OpenAIUsageBucket]
    has_more: bool
    next_page: str | None = None


# ---- Anthropic -----------------------------------------------------------------------------
class AnthropicCostResult(_Shape):
    amount: Decimal  # lowest currency units (cents) as a decimal string
    currency: str
    model: str | None = None
    token_type: str | None = None
    cost_type: str | None = None
    context_window: str | None = None
    service_tier: str | None = None
    workspace_id: str | None = None
    description: str | None = None

    @field_validator("amount", mode="before")
    @classmethod
    def _cents_string(cls, value: Any) -> Any:
        # a number here is someone's conversion (dollars or cents?): refuse rather than guess
        if not isinstance(value, str):
            raise ValueError(
                'amount must be the decimal string in cents the API returns ("123.45" = $1.2345)'
            )
        return value


class AnthropicCacheCreation(_Shape):
    ephemeral_1h_input_tokens: NonNegativeInt = 0
    ephemeral_5m_input_tokens: NonNegativeInt = 0


class AnthropicUsageResult(_Shape):
    uncached_input_tokens: NonNegativeInt
    output_tokens: NonNegativeInt
    cache_read_input_tokens: NonNegativeInt = 0
    cache_creation: AnthropicCacheCreation = AnthropicCacheCreation()
    model: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    workspace_id: str | None = None
    api_key_id: str | None = None


class _AnthropicBucket(_Shape):
    starting_at: AwareDatetime
    ending_at: AwareDatetime


class AnthropicCostBucket(_AnthropicBucket):
    results: list[AnthropicCostResult]


class AnthropicUsageBucket(_AnthropicBucket):
    results: list[AnthropicUsageResult]


class AnthropicCostPage(_Shape):
    data: list[AnthropicCostBucket]
    has_more: bool
    next_page: str | None = None


class AnthropicUsagePage(_Shape):
    data: list[AnthropicUsageBucket]
    has_more: bool
    next_page: str | None = None


@dataclass(frozen=True)
class Shape:
    name: str
    provider: str
    report_kind: Literal["cost", "usage"]
    page: type[_Shape]


SHAPES = {
    shape.name: shape
    for shape in (
        Shape("openai_costs", "openai", "cost", OpenAICostPage),
        Shape("openai_usage_completions", "openai", "usage", OpenAIUsagePage),
        Shape("anthropic_cost_report", "anthropic", "cost", AnthropicCostPage),
        Shape("anthropic_usage_messages", "anthropic", "usage", AnthropicUsagePage),
    )
}

#: the columns of raw.provider_costs a parsed row fills, in order
ROW_COLUMNS = (
    "page_index", "bucket_index", "result_index", "bucket_start_at", "bucket_end_at", "day_at",
    "provider_model", "token_kind", "line_item", "amount_usd", "amount_raw", "currency",
    "tokens", "requests", "project_id", "workspace_id", "service_tier", "context_window",
    "cost_type", "description",
)  # fmt: skip


@dataclass
class Report:
    """One validated file: its shape, its pages, and the rows it becomes."""

    path: Path
    shape: Shape
    pages: list[_Shape]
    rows: list[dict[str, Any]]

    @property
    def days(self) -> list[datetime]:
        return sorted({row["day_at"] for row in self.rows})


def read_report(path: Path, text: str | None = None) -> Report:
    """Validate one file and turn it into rows; raises ReportError naming the file, the place
    and the supported shapes."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ReportError(
                f"{path}: not UTF-8 text ({exc.reason}); supported: {SUPPORTED}"
            ) from None
    pages = _pages(path, text)
    shape = _detect(path, pages)
    try:
        parsed = [shape.page.model_validate(page) for page in pages]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ReportError(
            f"{path}: not a valid {shape.name} report ({exc.error_count()} problem(s); first at "
            f"{where}: {first['msg']}); supported: {SUPPORTED}"
        ) from None
    _check_pagination(path, parsed)
    rows = list(_rows(path, shape, parsed))
    return Report(path, shape, parsed, rows)


def _pages(path: Path, text: str) -> list[dict[str, Any]]:
    stripped = text.strip()
    if not stripped:
        raise ReportError(f"{path}: the file is empty; supported: {SUPPORTED}")
    try:
        # floats as Decimal: an amount keeps the digits the provider wrote
        document = json.loads(stripped, parse_float=Decimal)
        pages = document if isinstance(document, list) else [document]
    except json.JSONDecodeError:
        pages = []
        for number, line in enumerate(stripped.splitlines(), 1):
            if not line.strip():
                continue
            try:
                pages.append(json.loads(line, parse_float=Decimal))
            except json.JSONDecodeError as exc:
                raise ReportError(
                    f"{path}: line {number} is not JSON ({exc.msg}); a report file is the JSON "
                    f"the API returned; supported: {SUPPORTED}"
                ) from None
    if not pages or not all(isinstance(page, dict) for page in pages):
        raise ReportError(f"{path}: expected JSON objects (API pages); supported: {SUPPORTED}")
    return pages


def _detect(path: Path, pages: list[dict[str, Any]]) -> Shape:
    """Which API a file came from, by the fields its buckets and results carry."""
    buckets = [b for page in pages if isinstance(page.get("data"), list) for b in page["data"]]
    if not buckets or not all(isinstance(b, dict) for b in buckets):
        raise ReportError(
            f"{path}: no time buckets (data[]) found: not a provider report page; "
            f"supported: {SUPPORTED}"
        )
    results = [
        r
        for b in buckets
        for r in (b.get("results") or b.get("result") or [])
        if isinstance(r, dict)
    ]
    if not results and not (_named(path, "cost") or _named(path, "usage")):
        raise ReportError(
            f"{path}: every bucket is empty, so nothing says whether this is a cost or a usage "
            "report; put 'cost' or 'usage' in the file's name (it then records that nothing "
            f"was billed or used on those days); supported: {SUPPORTED}"
        )
    if "start_time" in buckets[0]:
        objects = {r.get("object") for r in results}
        if objects <= {"organization.costs.result"} and (results or _named(path, "cost")):
            return SHAPES["openai_costs"]
        if objects <= {"organization.usage.completions.result"} and (
            results or _named(path, "usage")
        ):
            return SHAPES["openai_usage_completions"]
        found = ", ".join(sorted(str(o) for o in objects)) or "none"
        raise ReportError(
            f"{path}: an OpenAI usage/costs page, but its results are {found}; spendwatch reads "
            f"costs and completions usage; supported: {SUPPORTED}"
        )
    if "starting_at" in buckets[0]:
        if results and all("amount" in r for r in results) or not results and _named(path, "cost"):
            return SHAPES["anthropic_cost_report"]
        if (
            results
            and all("uncached_input_tokens" in r for r in results)
            or (not results and _named(path, "usage"))
        ):
            return SHAPES["anthropic_usage_messages"]
        raise ReportError(
            f"{path}: an Anthropic report page whose results are neither cost items (amount) nor "
            f"message usage (uncached_input_tokens); supported: {SUPPORTED}"
        )
    raise ReportError(
        f"{path}: buckets have neither start_time (OpenAI) nor starting_at (Anthropic); "
        f"supported: {SUPPORTED}"
    )


def _named(path: Path, word: str) -> bool:
    """A report with no result at all says nothing of its kind but its name."""
    return word in path.name.lower()


def _check_pagination(path: Path, pages: list[Any]) -> None:
    for index, page in enumerate(pages[:-1]):
        if not page.has_more:
            raise ReportError(
                f"{path}: page {index + 1} of {len(pages)} says has_more=false but more pages "
                "follow it: pages of two different requests in one file? Import each report "
                "as a file of its own"
            )
    if pages[-1].has_more:
        raise ReportError(
            f"{path}: the last page says has_more=true (next_page={pages[-1].next_page!r}): "
            "the report is incomplete and its billed side would be too low; fetch the "
            "remaining pages (pass page=<next_page>) and append them to the file"
        )


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


def _bucket_times(path: Path, where: str, start: datetime, end: datetime) -> datetime:
    """The UTC day a bucket belongs to; a bucket must lie within one UTC day."""
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if not start < end <= day + timedelta(days=1):
        raise ReportError(
            f"{path}: {where} spans {start:%Y-%m-%d %H:%M} → {end:%Y-%m-%d %H:%M} UTC; "
            "spendwatch reconciles by UTC day: request bucket_width=1d (or 1h)"
        )
    return day


def _rows(path: Path, shape: Shape, pages: list[Any]) -> Iterator[dict[str, Any]]:
    for page_index, page in enumerate(pages):
        for bucket_index, bucket in enumerate(page.data):
            if shape.provider == "openai":
                start = datetime.fromtimestamp(bucket.start_time, UTC).replace(tzinfo=None)
                end = datetime.fromtimestamp(bucket.end_time, UTC).replace(tzinfo=None)
            else:
                start, end = _utc(bucket.starting_at), _utc(bucket.ending_at)
            where = f"page {page_index + 1}, bucket {bucket_index + 1}"
            base = {
                "page_index": page_index,
                "bucket_index": bucket_index,
                "bucket_start_at": start,
                "bucket_end_at": end,
                "day_at": _bucket_times(path, where, start, end),
            }
            if not bucket.results:
                yield _row(base, result_index=None)
            for result_index, result in enumerate(bucket.results):
                place = f"{where}, result {result_index + 1}"
                for part in _RESULT_ROWS[shape.name](path, place, result):
                    yield _row(base, result_index=result_index, **part)


def _row(base: dict[str, Any], **values: Any) -> dict[str, Any]:
    row = dict.fromkeys(ROW_COLUMNS)
    row.update(base)
    row.update(values)
    return row


def openai_line_item(line_item: str | None) -> tuple[str | None, str | None]:
    """(model, token kind) named by an OpenAI cost line item, or Nones where it names none."""
    found = OPENAI_LINE_ITEM.match((line_item or "").strip())
    if found is None:
        return None, None
    if found["modality"] in ("audio", "image"):  # the warehouse records text tokens only
        return found["model"], None
    return found["model"], OPENAI_KINDS[found["kind"]]


def _usd(path: Path, where: str, currency: str | None) -> str:
    code = (currency or "").upper()
    if code != "USD":
        raise ReportError(
            f"{path}: {where} is in {currency!r}; spendwatch prices in USD and cannot convert"
        )
    return code


def _openai_cost(path: Path, where: str, result: OpenAICostResult) -> list[dict[str, Any]]:
    model, kind = openai_line_item(result.line_item)
    return [{
        "provider_model": model, "token_kind": kind, "line_item": result.line_item,
        "amount_usd": result.amount.value, "amount_raw": str(result.amount.value),
        "currency": _usd(path, where, result.amount.currency), "project_id": result.project_id,
    }]  # fmt: skip


def _openai_usage(path: Path, where: str, result: OpenAIUsageResult) -> list[dict[str, Any]]:
    common = {"provider_model": result.model, "project_id": result.project_id,
              "requests": result.num_model_requests,
              "service_tier": "batch" if result.batch else result.service_tier}  # fmt: skip
    return [
        {**common, "token_kind": "input",
         "tokens": result.input_tokens - result.input_cached_tokens},
        {**common, "token_kind": "cache_read", "tokens": result.input_cached_tokens},
        {**common, "token_kind": "output", "tokens": result.output_tokens},
    ]  # fmt: skip


def _anthropic_cost(path: Path, where: str, result: AnthropicCostResult) -> list[dict[str, Any]]:
    kind = None
    if (result.cost_type in (None, "tokens")) and result.model:
        kind = ANTHROPIC_TOKEN_TYPES.get(result.token_type or "")
    return [{
        "provider_model": result.model, "token_kind": kind,
        "line_item": result.token_type or result.cost_type or result.description,
        # cents → dollars, exactly: "123.45" is $1.2345
        "amount_usd": result.amount / 100, "amount_raw": f"{result.amount}",
        "currency": _usd(path, where, result.currency), "workspace_id": result.workspace_id,
        "service_tier": result.service_tier, "context_window": result.context_window,
        "cost_type": result.cost_type, "description": result.description,
    }]  # fmt: skip


def _anthropic_usage(path: Path, where: str, result: AnthropicUsageResult) -> list[dict[str, Any]]:
    common = {
        "provider_model": result.model,
        "workspace_id": result.workspace_id,
        "service_tier": result.service_tier,
        "context_window": result.context_window,
    }
    writes = (result.cache_creation.ephemeral_5m_input_tokens
              + result.cache_creation.ephemeral_1h_input_tokens)  # fmt: skip
    return [
        {**common, "token_kind": "input", "tokens": result.uncached_input_tokens},
        {**common, "token_kind": "cache_read", "tokens": result.cache_read_input_tokens},
        {**common, "token_kind": "cache_write", "tokens": writes},
        {**common, "token_kind": "output", "tokens": result.output_tokens},
    ]  # fmt: skip


_RESULT_ROWS = {
    "openai_costs": _openai_cost,
    "openai_usage_completions": _openai_usage,
    "anthropic_cost_report": _anthropic_cost,
    "anthropic_usage_messages": _anthropic_usage,
}
