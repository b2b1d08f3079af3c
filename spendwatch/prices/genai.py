"""The genai-prices source: the figures bundled with the installed genai-prices package (offline),
read as dated periods of our seed columns."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from spendwatch.prices.seed import FIGURES

#: genai-prices price key -> our column stem (`<stem>_usd_per_mtok`, `long_<stem>_usd_per_mtok`).
_UNITS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
}
_BATCH = {"processing": "batch"}


class Unrepresentable(ValueError):
    """genai-prices prices a model in a way our columns cannot hold."""


@dataclass(frozen=True)
class GenaiModel:
    """A genai-prices model as dated periods of our figures."""

    ref: str  # provider_id/model_id
    periods: list[tuple[date | None, dict[str, Decimal | None]]]
    batch_discount: Decimal | None


def _base(price: Any) -> Decimal | None:
    return getattr(price, "base", price)


def _figures(model_price: Any) -> dict[str, Decimal | None]:
    from genai_prices.types import TieredPrices

    figures: dict[str, Decimal | None] = {name: None for name in FIGURES}
    threshold: int | None = None
    for key, stem in _UNITS.items():
        price = getattr(model_price, key, None)
        if isinstance(price, TieredPrices):
            if len(price.tiers) != 1:
                raise Unrepresentable(f"{key} has {len(price.tiers)} tiers (the seed holds one)")
            tier = price.tiers[0]
            if threshold is not None and tier.start != threshold:
                raise Unrepresentable("its units change tier at different input sizes")
            threshold = tier.start
            figures[f"{stem}_usd_per_mtok"] = price.base
            figures[f"long_{stem}_usd_per_mtok"] = tier.price
        else:
            figures[f"{stem}_usd_per_mtok"] = price
    if figures["input_usd_per_mtok"] is None or figures["output_usd_per_mtok"] is None:
        raise Unrepresentable("it has no input and output token prices")
    figures["long_context_threshold_tokens"] = Decimal(threshold) if threshold is not None else None
    return figures


def _batch_discount(info: Any, standard: Any) -> Decimal | None:
    for variant in info.price_variants or ():
        if variant.when != _BATCH:
            continue
        ratios = set()
        for key in ("input_mtok", "output_mtok"):
            batch, full = _base(getattr(variant.prices, key, None)), _base(getattr(standard, key))
            if batch is not None and full:
                ratios.add((Decimal(1) - batch / full).quantize(Decimal("0.000001")))
        if len(ratios) > 1:
            raise Unrepresentable("its batch variant discounts input and output differently")
        if ratios:
            return ratios.pop()
    return None


def _periods(info: Any) -> list[tuple[date | None, Any]]:
    from genai_prices.types import ConditionalPrice, StartDateConstraint

    if not isinstance(info.prices, list):
        return [(None, info.prices)]
    periods: list[tuple[date | None, Any]] = []
    for index, conditional in enumerate(info.prices):
        assert isinstance(conditional, ConditionalPrice)
        constraint = conditional.constraint
        if constraint is None and index == 0:
            periods.append((None, conditional.prices))
        elif isinstance(constraint, StartDateConstraint):
            if periods and periods[-1][0] and periods[-1][0] >= constraint.start_date:
                raise Unrepresentable("its dated prices are not in date order")
            periods.append((constraint.start_date, conditional.prices))
        else:
            raise Unrepresentable(f"it has prices conditioned on {constraint!r}")
    return periods


class GenaiPrices:
    """Look-ups in the genai-prices data bundled with the installed package (no network)."""

    def __init__(self) -> None:
        from importlib.metadata import version

        from genai_prices.data_snapshot import get_snapshot

        self.snapshot = get_snapshot()
        self.version = version("genai-prices")
        self._provider_discounts: dict[str, Decimal | None] = {}

    def model(self, provider: str, model: str) -> GenaiModel | None:
        try:
            provider_info, info = self.snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        periods = _periods(info)
        return GenaiModel(
            ref=f"{provider_info.id}/{info.id}",
            periods=[(start, _figures(prices)) for start, prices in periods],
            batch_discount=_batch_discount(info, periods[-1][1]),
        )

    def provider_batch_discount(self, provider: str) -> Decimal | None:
        """The discount most of a provider's batch variants give (Batch APIs are per provider)."""
        if provider not in self._provider_discounts:
            found: Counter[Decimal] = Counter()
            for provider_info in self.snapshot.providers:
                if provider_info.id != provider:
                    continue
                for info in provider_info.models:
                    try:
                        discount = _batch_discount(info, _periods(info)[-1][1])
                    except Unrepresentable:
                        continue
                    if discount:
                        found[discount] += 1
            self._provider_discounts[provider] = found.most_common(1)[0][0] if found else None
        return self._provider_discounts[provider]
