"""Load validated provider reports into `raw.provider_costs`, once per file content.

A file is identified by the SHA-256 of its bytes: importing it again (under any name) adds
nothing. Every row keeps the file it came from (`source_file`, `file_sha256`); the load log
`raw.provider_report_log` has one row per imported file (shape, provider, days, rows). All files
of one import are validated before the warehouse is opened, and written in one transaction, so
a bad file leaves the warehouse as it was. The connection is open for the insert only
(DuckDB admits one writing process; `open_warehouse` waits for a holder and names it).

A later report replaces an earlier one for the days both cover: the reconciliation reads, per
provider, report kind and day, the rows of the file imported last (models/marts/
cost_reconciliation.sql). Both files stay in the raw table.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from spendwatch.reconcile.formats import ROW_COLUMNS, Report, ReportError, read_report
from spendwatch.warehouse import open_warehouse

DDL = """
create schema if not exists raw;
create table if not exists raw.provider_costs (
    source_file varchar not null,
    file_sha256 varchar not null,
    report_shape varchar not null,
    report_kind varchar not null,
    provider varchar not null,
    page_index integer not null,
    bucket_index integer not null,
    result_index integer,
    bucket_start_at timestamp not null,
    bucket_end_at timestamp not null,
    day_at timestamp not null,
    provider_model varchar,
    token_kind varchar,
    line_item varchar,
    amount_usd decimal(38, 15),
    amount_raw varchar,
    currency varchar,
    tokens bigint,
    requests bigint,
    project_id varchar,
    workspace_id varchar,
    service_tier varchar,
    context_window varchar,
    cost_type varchar,
    description varchar,
    imported_at timestamp not null
);
create table if not exists raw.provider_report_log (
    source_file varchar not null,
    file_sha256 varchar primary key,
    size_bytes bigint not null,
    report_shape varchar not null,
    report_kind varchar not null,
    provider varchar not null,
    pages integer not null,
    buckets integer not null,
    rows bigint not null,
    unmapped_rows bigint not null,
    first_day date not null,
    last_day date not null,
    imported_at timestamp not null
);
"""


@dataclass
class FileImport:
    """What one file of an import did."""

    path: Path
    sha256: str
    shape: str
    provider: str
    report_kind: str
    rows: int
    unmapped_rows: int
    first_day: datetime
    last_day: datetime
    #: when the same bytes were imported before: (their file, when)
    already: tuple[str, datetime] | None = None

    @property
    def imported(self) -> bool:
        return self.already is None


def read_reports(files: list[Path]) -> list[tuple[Report, bytes]]:
    """Validate every file before anything is written."""
    reports = []
    for path in files:
        if not path.is_file():
            raise ReportError(f"{path}: no such file")
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ReportError(f"{path}: not UTF-8 text ({exc.reason})") from None
        reports.append((read_report(path, text), data))
    return reports


def import_reports(warehouse: Path, files: list[Path]) -> list[FileImport]:
    """Validate `files`, then insert the ones whose content is new, in one transaction."""
    reports = read_reports(files)
    now = datetime.now(UTC).replace(tzinfo=None)
    con = open_warehouse(
        warehouse, must_exist=True, consequence="nothing was imported; try again later"
    )
    try:
        con.execute(DDL)
        con.execute("begin")
        done: list[FileImport] = []
        seen: dict[str, Path] = {}
        for report, data in reports:
            sha = hashlib.sha256(data).hexdigest()
            unmapped = sum(
                1
                for row in report.rows
                if row["result_index"] is not None and not row["token_kind"]
            )
            result = FileImport(
                report.path, sha, report.shape.name, report.shape.provider,
                report.shape.report_kind, len(report.rows), unmapped,
                report.days[0], report.days[-1],
            )  # fmt: skip
            before = con.execute(
                "select source_file, imported_at from raw.provider_report_log "
                "where file_sha256 = ?",
                [sha],
            ).fetchone()
            if before is None and sha in seen:
                before = (str(seen[sha]), now)
            if before is not None:
                result.already = (before[0], before[1])
                done.append(result)
                continue
            seen[sha] = report.path
            _insert(con, report, data, sha, unmapped, now)
            done.append(result)
        con.execute("commit")
        return done
    except BaseException:
        with contextlib.suppress(Exception):  # no transaction open yet is fine
            con.execute("rollback")
        raise
    finally:
        con.close()


def _insert(con, report: Report, data: bytes, sha: str, unmapped: int, now: datetime) -> None:
    source = str(report.path.resolve())
    fixed = (source, sha, report.shape.name, report.shape.report_kind, report.shape.provider)
    columns = ("source_file", "file_sha256", "report_shape", "report_kind", "provider",
               *ROW_COLUMNS, "imported_at")  # fmt: skip
    marks = ", ".join("?" for _ in columns)
    con.executemany(
        f"insert into raw.provider_costs ({', '.join(columns)}) values ({marks})",
        [[*fixed, *(row[c] for c in ROW_COLUMNS), now] for row in report.rows],
    )
    buckets = len({(row["page_index"], row["bucket_index"]) for row in report.rows})
    con.execute(
        "insert into raw.provider_report_log values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [source, sha, len(data), report.shape.name, report.shape.report_kind,
         report.shape.provider, len(report.pages), buckets, len(report.rows), unmapped,
         report.days[0].date(), report.days[-1].date(), now],
    )  # fmt: skip
