"""The ingest: landing files → lines (`landing`), every line typed and judged in one query
(`validate`), the window replaced in one transaction (`load`)."""

from orchestration.lib.ingest.landing import (
    FILE_ERRORS,
    MAX_LINE_BYTES,
    LandingFile,
    landing_files,
    partition_hours,
)
from orchestration.lib.ingest.load import LoadResult, connect, load_window
from orchestration.lib.ingest.validate import FUTURE_TOLERANCE

__all__ = [
    "FILE_ERRORS",
    "LandingFile",
    "FUTURE_TOLERANCE",
    "MAX_LINE_BYTES",
    "LoadResult",
    "connect",
    "landing_files",
    "load_window",
    "partition_hours",
]
