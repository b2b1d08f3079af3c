"""`make bench`: spendwatch at scale against its floors (benchmarks/scale.py: the table of
issue 14, written into docs/benchmarks.md), then the micro-benchmarks (the generator, the ingest
and the tracker), every figure reported against a floor measured in the same run on the same
machine (never as an absolute time to assert on)."""

from __future__ import annotations

import argparse
import json
import platform
import sys

from rich.console import Console
from rich.table import Table

from benchmarks import bench_grain, bench_pipeline, bench_tracker, scale


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--only",
        choices=["scale", "generate", "ingest", "tracker", "grain"],
        help="run only this benchmark (generate and ingest share their data)",
    )
    parser.add_argument(
        "--size", choices=scale.SIZES, default="default", help="of the scale run (make bench SIZE=)"
    )
    parser.add_argument(
        "--docs", default=str(scale.DOCS), help="page for the scale table ('' for none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scale run's work folder")
    parser.add_argument(
        "--calls",
        type=int,
        default=bench_pipeline.CALLS,
        help="calls the generate and ingest benchmarks write and load",
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    if args.only in (None, "scale"):
        scale.main(["--size", args.size, "--docs", args.docs] + (["--keep"] if args.keep else []))
        if args.only:
            return 0
    console = Console(width=120)
    results = []
    if args.only in (None, "generate", "ingest"):
        console.print(f"running {bench_pipeline.__name__} ({args.calls:,} calls) ...")
        results.extend(bench_pipeline.run(args.calls))
    if args.only in (None, "tracker"):
        console.print(f"running {bench_tracker.__name__} ...")
        results.extend(bench_tracker.run())
    if args.only in (None, "grain"):
        console.print(f"running {bench_grain.__name__} ({bench_grain.BENCH_DAYS} days) ...")
        results.extend(bench_grain.run(bench_grain.BENCH_DAYS))
    if args.only and args.only != "grain":
        results = [r for r in results if r["name"] == args.only]
    table = Table(title=f"spendwatch benchmarks ({platform.processor() or platform.machine()})")
    for column in ("benchmark", "value", "unit", "floor", "ratio to floor"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for r in results:
        table.add_row(r["name"], f"{r['value']:,}", r["unit"], f"{r['floor']:,}", str(r["ratio"]))
    console.print(table)
    for r in results:
        if "file_floor" in r:  # the same read_json into a database file, as the ingest writes
            console.print(
                f"{r['name']}: floor into a database file {r['file_floor']:,} {r['unit']}, "
                f"ratio {r['file_ratio']}"
            )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
