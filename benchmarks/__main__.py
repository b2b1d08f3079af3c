"""`make bench`: every benchmark, each reported as a ratio against a floor measured in the same
run on the same machine (never as an absolute time to assert on)."""

from __future__ import annotations

import json
import platform
import sys

from rich.console import Console
from rich.table import Table

from benchmarks import bench_pipeline, bench_tracker


def main() -> int:
    console = Console(width=120)
    results = []
    for module in (bench_pipeline, bench_tracker):
        console.print(f"running {module.__name__} ...")
        results.extend(module.run())
    table = Table(title=f"spendwatch benchmarks ({platform.processor() or platform.machine()})")
    for column in ("benchmark", "value", "unit", "floor", "ratio to floor"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['value']:,}", r["unit"], f"{r['floor']:,}", str(r["ratio"]))
    console.print(table)
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
