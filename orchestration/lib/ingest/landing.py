"""Landing files → lines, streamed: the files of an hour window, each read (plain or gzip) in
bounded chunks, checksummed and split into lines, each either readable or flagged with why it
is not (`truncated_line`, `invalid_utf8`, `line_too_long`). Nothing here judges a line's
content: that is `validate`.

Lines travel in pieces, not one by one: the whole lines of a chunk that decode as UTF-8 (all
of them, normally) are one piece of text that DuckDB splits, so Python touches a chunk a few
times (hash, find the last newline, decode) instead of every line; only a chunk with bytes that
are not UTF-8 is split here, line by line, to flag exactly those lines.

Memory stays bounded whatever the window or the file: a file is read `CHUNK_BYTES` at a time,
a line longer than `MAX_LINE_BYTES` keeps only its first `MAX_STORED_LINE_CHARS` (for the
quarantine) and the rest is skipped up to its newline, and a gzip file stops being decompressed
once it has produced more than `max_decompressed(size)` bytes (a gzip bomb).

A file that cannot be read to its end is not an error of the window but of the file: its
`file_error` (one of FILE_ERRORS, with the file's name and what went wrong) goes to the load log,
the lines read before the failure are handled as usual, and the other files load.

The load log records the size and checksum of exactly the bytes read: the file is stat-ed
first and read up to that size, so lines appended meanwhile are left for the next load (the
late-data sensor sees the file grow and asks for it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spendwatch.landing import hour_dir, is_landing_file

MAX_LINE_BYTES = 64 * 1024
#: How much of a rejected line the quarantine keeps.
MAX_STORED_LINE_CHARS = 4096
CHUNK_BYTES = 1 << 20
#: A gzip file may decompress to at most this ratio of its size (JSON lines compress 5-20×),
#: with a floor for small files and a ceiling whatever the size.
MAX_GZIP_RATIO = 200
MIN_DECOMPRESSED_LIMIT = 64 << 20
MAX_DECOMPRESSED_BYTES = 8 << 30
BOM = b"\xef\xbb\xbf"

#: Why a file could not be read to its end (raw.load_log.file_error starts with one of these).
FILE_ERRORS = {
    "unreadable_file": "the file could not be opened or read (permissions, I/O error)",
    "corrupt_gzip": "the gzip stream is truncated or damaged; the lines before the damage load",
    "gzip_too_large": "decompressed beyond the limit for its size (a gzip bomb); not read further",
    "not_utf8": "no line of the file is UTF-8 (another encoding, or binary data)",
    "landing_files_missing": "the hour's files were loaded before and are gone; its rows are kept",
}


def partition_hours(start: datetime, end: datetime) -> list[datetime]:
    hours, at = [], start
    while at < end:
        hours.append(at)
        at += timedelta(hours=1)
    return hours


def landing_files(landing: Path, start: datetime, end: datetime) -> list[tuple[datetime, Path]]:
    """Every `*.jsonl` / `*.jsonl.gz` in the hour folders of [start, end), in a stable order."""
    found = []
    for hour in partition_hours(start, end):
        folder = hour_dir(landing, hour)
        if folder.is_dir():
            files = [p for p in folder.iterdir() if is_landing_file(p)]
            found.extend((hour, p) for p in sorted(files))
    return found


def max_decompressed(size: int) -> int:
    return min(MAX_DECOMPRESSED_BYTES, max(MIN_DECOMPRESSED_LIMIT, size * MAX_GZIP_RATIO))


class _Tap(io.RawIOBase):
    """A read-only view of the first `limit` bytes of a file that hashes what passes through."""

    def __init__(self, raw, limit: int) -> None:
        self.raw, self.left, self.read_bytes, self.hash = raw, limit, 0, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer)[: min(len(buffer), self.left)]
        n = self.raw.readinto(view)
        if n:
            self.hash.update(view[:n])
            self.left -= n
            self.read_bytes += n
        return n or 0


class FileTooLarge(Exception):
    pass


@dataclass
class LandingFile:
    """One landing file being read: `pieces()` yields its lines; afterwards `log_entry()` holds
    what the load log records (size and checksum of the bytes read, and any file error)."""

    hour: datetime
    path: Path
    size_bytes: int = 0
    modified_at: datetime | None = None
    checksum: str = ""
    file_error: str | None = None
    lines_read: int = 0
    # lines that decoded as UTF-8 and that did not; whether the file starts as UTF-16
    _good: int = field(default=0, init=False, repr=False)
    _bad: int = field(default=0, init=False, repr=False)
    _utf16: bool = field(default=False, init=False, repr=False)

    def _chunks(self, tap: _Tap) -> Iterator[bytes]:
        if not self.path.name.endswith(".gz"):
            while chunk := tap.read(CHUNK_BYTES):
                yield chunk
            return
        limit, produced = max_decompressed(self.size_bytes), 0
        with gzip.GzipFile(fileobj=io.BufferedReader(tap, CHUNK_BYTES), mode="rb") as stream:
            while chunk := stream.read1(CHUNK_BYTES):  # what is there: lines before damage count
                produced += len(chunk)
                if produced > limit:
                    raise FileTooLarge(
                        f"over {limit:,} bytes decompressed from {self.size_bytes:,}"
                    )
                yield chunk

    def _line(self, number: int, data: bytes, too_long: bool, ended: bool) -> tuple:
        """One line on its own: (number, text, reason it is unreadable or None)."""
        if too_long:
            return number, data.decode("utf-8", "replace")[:MAX_STORED_LINE_CHARS], "line_too_long"
        try:
            if self._utf16:
                raise UnicodeDecodeError("utf-8", data, 0, 2, "UTF-16 text")
            text, flag = data.decode("utf-8"), None
            self._good += 1
        except UnicodeDecodeError:
            text, flag = data.decode("utf-8", "replace"), "invalid_utf8"
            self._bad += 1
        return number, text.removesuffix("\r"), flag if flag or ended else "truncated_line"

    def _block(self, data: bytes) -> Iterator[tuple]:
        """The complete lines of `data` (which ends with a newline): one piece holding them all
        when they are UTF-8, else a piece per line, each with its own verdict."""
        first = self.lines_read + 1
        if first == 1:
            data = data.removeprefix(BOM)  # a UTF-8 byte order mark is not part of the line
            self._utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        count = data.count(b"\n")
        self.lines_read += count
        if not self._utf16:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                self._good += count
                if "\r" in text:
                    text = text.replace("\r\n", "\n")  # a CR before the newline is the ending's
                yield first, text[:-1], None
                return
        for number, line in enumerate(data[:-1].split(b"\n"), first):
            yield self._line(number, line, len(line) > MAX_LINE_BYTES, ended=True)

    def pieces(self) -> Iterator[tuple[int, str, str | None]]:
        """The file's lines as (number of the first line, text, reason or None) pieces. A piece
        without a reason holds one or more whole lines joined by newlines (a run of UTF-8
        lines, read and decoded at once; a line over MAX_LINE_BYTES in it is the validation's
        to find); a piece with a reason (`truncated_line`, `invalid_utf8`, `line_too_long`) is
        one line. Afterwards `log_entry()` describes the bytes read."""
        try:
            stat = os.stat(self.path)
            self.size_bytes = stat.st_size
            self.modified_at = datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None)
            raw = open(self.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            self.file_error = f"unreadable_file: {self.path}: {exc.strerror or exc}"
            return
        tap = _Tap(raw, self.size_bytes)
        pending, overflow = b"", False  # the line not yet ended; whether it is over-long
        try:
            for chunk in self._chunks(tap):
                if overflow:  # the rest of an over-long line is skipped up to its newline
                    end = chunk.find(b"\n")
                    if end < 0:
                        continue
                    self.lines_read += 1
                    yield self._line(self.lines_read, pending, too_long=True, ended=True)
                    pending, overflow, chunk = b"", False, chunk[end + 1 :]
                data = pending + chunk if pending else chunk
                end = data.rfind(b"\n")
                if end >= 0:
                    yield from self._block(data[: end + 1])
                    data = data[end + 1 :]
                pending = data
                if len(pending) > MAX_LINE_BYTES:
                    pending, overflow = pending[: MAX_STORED_LINE_CHARS * 4], True
            if pending or overflow:
                self.lines_read += 1
                if self.lines_read == 1:
                    pending = pending.removeprefix(BOM)
                    self._utf16 = pending.startswith((b"\xff\xfe", b"\xfe\xff"))
                yield self._line(self.lines_read, pending, too_long=overflow, ended=False)
        except OSError as exc:
            if isinstance(exc, gzip.BadGzipFile):
                self.file_error = f"corrupt_gzip: {self.path}: {exc}"
            else:
                self.file_error = f"unreadable_file: {self.path}: {exc.strerror or exc}"
        except (EOFError, zlib.error) as exc:
            self.file_error = f"corrupt_gzip: {self.path}: {exc}"
        except FileTooLarge as exc:
            self.file_error = f"gzip_too_large: {self.path}: {exc}; the rest was not read"
        finally:
            raw.close()
        if self.file_error is None and self._bad and not self._good:
            what = f"none of its {self._bad} lines is UTF-8"
            if self._utf16:
                what = "a UTF-16 byte order mark"
            self.file_error = f"not_utf8: {self.path}: {what}"
        self.size_bytes = tap.read_bytes if self.file_error is None else self.size_bytes
        self.checksum = tap.hash.hexdigest()

    def log_entry(self) -> dict:
        return {
            "partition_hour": self.hour.replace(tzinfo=None),
            "source_file": str(self.path),
            "size_bytes": self.size_bytes,
            "modified_at": self.modified_at or datetime(1970, 1, 1),
            "checksum": self.checksum,
            "file_error": self.file_error,
        }
