"""Reconciliation with the providers' bills: `spendwatch reconcile import` loads their cost
and usage reports (formats.py: the shapes, validated; load.py: raw.provider_costs, once per
file content), a run rebuilds marts.cost_reconciliation and the invoice_drift detector for the
report's days, and `spendwatch reconcile show` prints the mart (show.py). Needs the warehouse
extra (DuckDB)."""
