"""The dated price list (`seeds/model_prices.csv`) and its sync.

`sync` rebuilds the price rows of every model in `seeds/model_catalog.csv` from the figures that
ship inside the installed genai-prices package (offline: no network), prints what changed and
writes the seed unless `--dry-run`. Rows genai-prices cannot speak for are kept:

* models it does not know, and models whose prices our columns cannot hold (several tiers,
  time-of-day prices) keep their rows as they are;
* history it does not record: genai-prices lists a model's price changes with start dates, and
  an undated price means "as far back as genai-prices knows". Where our rows record a price change
  genai-prices does not (gpt-4o's launch price before 2024-10-02), every row before the last such
  change stays ours and genai-prices' figures apply from that change on.

A model with no rows yet starts at its catalog `released_on`; a model whose last row has a
`valid_to` (a snapshot priced on its own only for a while, then by its alias) keeps that end.

Mapping (genai-prices 0.2 → our columns): `input_mtok`, `output_mtok`, `cache_read_mtok`,
`cache_write_mtok` (the 5-minute write; 1-hour writes are not in the call event). A tiered price
(one tier, the same start for every unit) becomes `long_context_threshold_tokens` + `long_*`.
`batch_discount` is 1 − batch input price / standard input price of the model's
`{"processing": "batch"}` variant; without one, the row it replaces keeps its discount, else the
discount most of the provider's batch variants give. Audio, image, search and storage prices are
not call-event fields and are left out.

Modules: `seed` (the CSV files), `genai` (the genai-prices source), `sync` (rebuild and diff);
the command line (`spendwatch prices sync|list`) is in `spendwatch.cli`. Used only by the CLI and
the tests: `import spendwatch` does not import this package (nor genai-prices).
"""

from spendwatch.prices.genai import GenaiModel, GenaiPrices, Unrepresentable
from spendwatch.prices.seed import (
    CATALOG_NAME,
    COLUMNS,
    DEFAULT_SEED,
    FIGURES,
    CatalogEntry,
    PriceRow,
    PricesError,
    read_catalog,
    read_seed,
    write_seed,
)
from spendwatch.prices.sync import Change, SyncResult, diff, sync, sync_model

__all__ = [
    "CATALOG_NAME",
    "COLUMNS",
    "DEFAULT_SEED",
    "FIGURES",
    "CatalogEntry",
    "Change",
    "GenaiModel",
    "GenaiPrices",
    "PriceRow",
    "PricesError",
    "SyncResult",
    "Unrepresentable",
    "diff",
    "read_catalog",
    "read_seed",
    "sync",
    "sync_model",
    "write_seed",
]
