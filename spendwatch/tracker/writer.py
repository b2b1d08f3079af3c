"""The writing half of the tracker: a bounded in-memory queue, one background thread per tracker
that validates events and appends whole lines to the landing files, and the process-wide
plumbing around them (flush at exit and on SIGTERM, fork safety, one file lock, events finished
by finalizers).

Nothing here raises into the application or blocks it on I/O: a full queue, a failing disk or
an invalid event drops the event, counts it in `stats()` and logs ONE warning per kind.

A file never gets an event glued onto a half-written line: before appending, the writer looks
at the file's last byte, and when a crashed predecessor with the same file name (a container
restarts the application under the same PID) left a half line there, it continues in a fresh
file (`<writer>-<pid>.1.jsonl`, `.2.jsonl`, ...). The half line stays the old file's last line,
which the ingest quarantines as `truncated_line`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import weakref
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from spendwatch.config import Paths
from spendwatch.landing import landing_file
from spendwatch.schema import CallEvent

log = logging.getLogger("spendwatch.tracker")

EXIT_TIMEOUT = 2.0  # seconds the interpreter waits at exit for each tracker's last events
_MAX_BATCH = 5_000  # events per write
UNKNOWN_FEATURE = "unknown"  # the feature of calls recorded without one

_LIVE: weakref.WeakSet[Writer] = weakref.WeakSet()
_FILE_LOCK = threading.Lock()  # one writer per file at a time within the process
# Events finished from a finalizer (an abandoned stream) wait here: deque.append takes no lock,
# so a finalizer running inside the garbage collector can never deadlock on the queue's lock.
ORPHANS: deque[tuple[Writer, dict]] = deque()
_MP_HOOKED = False
# A landing file whose last line a crashed writer left unfinished → the file written instead.
_FRESH_FILES: dict[Path, Path] = {}
#: Set SPENDWATCH_FLUSH_ON_SIGTERM=0 to leave SIGTERM alone (the tracker then flushes only at a
#: normal exit, and a SIGTERM'd process loses what was still queued).
SIGTERM_ENV = "SPENDWATCH_FLUSH_ON_SIGTERM"
_SIGTERM_HOOKED = False
_SIGTERM_PREVIOUS: Any = None
_SIGTERM_FLUSHING = False
# Hooks other modules register to re-create their own locks in a forked child.
AFTER_FORK: list = []


def _close_all() -> None:
    for tracker in list(_LIVE):
        with contextlib.suppress(Exception):
            tracker.close(timeout=EXIT_TIMEOUT)


def _flush_all(timeout: float) -> None:
    """Write what every tracker has queued, from a helper thread, waiting at most `timeout`.

    Called from a signal handler: the interrupted main thread may hold a tracker's or a
    queue's lock, so the flush runs on another thread and the wait is bounded — at worst the
    events are lost, never the process's ability to terminate.
    """

    def flush() -> None:
        deadline = time.monotonic() + timeout
        for tracker in list(_LIVE):
            with contextlib.suppress(Exception):
                tracker.flush(max(deadline - time.monotonic(), 0.001))

    helper = threading.Thread(target=flush, name="spendwatch-sigterm-flush", daemon=True)
    helper.start()
    helper.join(timeout)


def _on_sigterm(signum: int, frame: Any) -> None:
    """Flush the queued events, then do what SIGTERM did before the tracker was imported: call
    the application's own handler, or terminate the process by the default action."""
    global _SIGTERM_FLUSHING
    if not _SIGTERM_FLUSHING:  # a second SIGTERM while flushing: go straight on
        _SIGTERM_FLUSHING = True
        try:
            _flush_all(EXIT_TIMEOUT)
        finally:
            _SIGTERM_FLUSHING = False
    previous = _SIGTERM_PREVIOUS
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _hook_sigterm() -> None:
    """Chain a flush in front of the SIGTERM handler (once per process, from the main thread).

    Left alone: an ignored SIGTERM (nothing is lost), a handler installed outside Python (it
    cannot be chained), and SPENDWATCH_FLUSH_ON_SIGTERM=0. An application that installs its own
    handler later replaces this one; exiting from it (sys.exit) still flushes at exit.
    """
    global _SIGTERM_HOOKED, _SIGTERM_PREVIOUS
    if _SIGTERM_HOOKED or os.environ.get(SIGTERM_ENV, "1").strip().lower() in ("0", "false", "no"):
        return
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    _SIGTERM_HOOKED = True
    if previous is _on_sigterm or previous is None or previous == signal.SIG_IGN:
        return
    _SIGTERM_PREVIOUS = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


def _after_fork_in_child() -> None:
    """Every lock of the tracker is new in a forked child: a lock another thread of the parent
    held at fork time would stay locked forever here. The child's writers start afresh."""
    global _FILE_LOCK, _MP_HOOKED, _SIGTERM_FLUSHING
    _FILE_LOCK = threading.Lock()
    _MP_HOOKED = False
    _SIGTERM_FLUSHING = False
    _FRESH_FILES.clear()
    ORPHANS.clear()
    for tracker in list(_LIVE):
        tracker._reset_after_fork()
    for hook in AFTER_FORK:
        with contextlib.suppress(Exception):
            hook()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _hook_multiprocessing_exit() -> None:
    """multiprocessing children leave through os._exit (no atexit): flush in its finalizers."""
    global _MP_HOOKED
    mp = sys.modules.get("multiprocessing")
    if _MP_HOOKED or mp is None or mp.parent_process() is None:
        return
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _close_all, exitpriority=100)
    _MP_HOOKED = True


def _adopt_orphans() -> None:
    """Queue the events finished by finalizers (called from ordinary code, never a finalizer)."""
    while ORPHANS:
        try:
            owner, event = ORPHANS.popleft()
        except IndexError:
            break
        owner._enqueue(event)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fresh_name(path: Path, n: int) -> Path:
    """`<writer>-<pid>.jsonl` → `<writer>-<pid>.<n>.jsonl`: still a landing file, same hour."""
    stem = path.name.removesuffix(".jsonl")
    return path.with_name(f"{stem}.{n}.jsonl")


def _ends_mid_line(fd: int) -> bool:
    """True when the file is not empty and its last byte is not a newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _open_for_append(path: Path) -> int:
    """Open the file this writer appends to, never one that ends in a half line: such a file
    (a crashed writer of the same name) is left as it is and a fresh one is used instead."""
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    target = _FRESH_FILES.get(path, path)
    n = int(target.name.removesuffix(".jsonl").rpartition(".")[2] or 0) if target != path else 0
    while True:
        fd = os.open(target, flags, 0o644)
        try:
            if not _ends_mid_line(fd):
                if target != path:
                    _FRESH_FILES[path] = target
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        n += 1
        target = _fresh_name(path, n)


def _append_lines(path: Path, data: bytes) -> None:
    """Append complete lines; on failure cut the file back so no half line is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _FILE_LOCK:
        fd = _open_for_append(path)
        try:
            start = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


class _Marker:
    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


class Writer:
    """Queue, writer thread and accounting of one tracker (`Tracker` records through it)."""

    def __init__(
        self, landing_paths: Paths, writer_id: str, queue_size: int, flush_interval: float
    ) -> None:
        self._paths = landing_paths
        self.writer_id = writer_id
        self._queue_size = max(1, int(queue_size))
        self._flush_interval = max(0.01, float(flush_interval))
        self._closed = False
        self._init_runtime()
        _LIVE.add(self)
        with contextlib.suppress(Exception):
            _hook_sigterm()

    # -- state that belongs to one process -------------------------------------------------

    def _init_runtime(self) -> None:
        self._queue: queue.Queue = queue.Queue(self._queue_size)
        self._wake_at = max(1, self._queue_size // 4)
        self._wake = threading.Event()
        self._lock = threading.Lock()  # counters and warnings
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._recorded = 0
        self._written = 0
        self._drops: dict[str, int] = {}
        self._last_error: str | None = None
        self._warned: set[str] = set()

    def _reset_after_fork(self) -> None:
        # The child starts clean: the parent's pending events are the parent's to write, and any
        # lock another thread held at fork time would stay locked forever here.
        self._init_runtime()

    def _count_recorded(self) -> None:
        with self._lock:
            self._recorded += 1

    def _enqueue(self, event: dict) -> bool:
        """Queue without ever blocking; False when the event was dropped at once."""
        try:
            with self._lock:
                self._recorded += 1
            if self._closed:
                self._drop(1, "closed", "the tracker is closed; call events are no longer written")
                return False
            if self._thread is None:
                self._start_writer()
            q = self._queue
            try:
                q.put_nowait(event)
            except queue.Full:
                self._drop(
                    1,
                    "queue_full",
                    f"the queue is full ({self._queue_size} events): the writer cannot keep up "
                    "or is stuck; check the disk, or raise queue_size",
                )
                self._wake.set()
                return False
            if len(q.queue) >= self._wake_at:
                self._wake.set()
            return True
        except Exception as exc:
            self._drop(1, "internal", f"could not queue a call event: {exc!r}")
            return False

    # -- accounting --------------------------------------------------------------------------

    def _drop(self, count: int, reason: str, message: str) -> None:
        with self._lock:
            self._drops[reason] = self._drops.get(reason, 0) + count
            self._last_error = message
            first = reason not in self._warned
            self._warned.add(reason)
        if first:
            log.warning(
                "spendwatch dropped %d call event(s): %s. Further drops of this kind are only "
                "counted (tracker.stats()).",
                count,
                message,
            )

    def _warn_once(self, kind: str, message: str) -> None:
        with self._lock:
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            log.warning("spendwatch: %s", message)

    def stats(self) -> dict[str, Any]:
        """recorded = written + dropped + pending once the writer has caught up."""
        with self._lock:
            return {
                "recorded": self._recorded,
                "written": self._written,
                "dropped": sum(self._drops.values()),
                "dropped_by_reason": dict(self._drops),
                "pending": self._queue.qsize(),
                "last_error": self._last_error,
            }

    # -- the writer thread -------------------------------------------------------------------

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name=f"spendwatch-writer-{self.writer_id}", daemon=True
            )
            thread.start()
            self._thread = thread
        with contextlib.suppress(Exception):
            _hook_multiprocessing_exit()
        with contextlib.suppress(Exception):
            _hook_sigterm()

    def _run(self) -> None:
        q, wake = self._queue, self._wake
        while True:
            wake.wait(self._flush_interval)
            wake.clear()
            try:
                if self._drain(q):
                    return
            except Exception as exc:  # never let the thread die
                self._warn_once("writer", f"the writer thread hit an unexpected error: {exc!r}")

    def _drain(self, q: queue.Queue) -> bool:
        """Write everything queued; True when told to stop."""
        _adopt_orphans()
        batch: list[dict] = []
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Marker):
                self._write_batch(batch)
                batch = []
                item.done.set()
                if item.stop:
                    return True
                continue
            batch.append(item)
            if len(batch) >= _MAX_BATCH:
                self._write_batch(batch)
                batch = []
        self._write_batch(batch)
        return False

    def _write_batch(self, batch: list[dict]) -> None:
        if not batch:
            return
        groups: dict[tuple[int, int, int, int], tuple[datetime, list[str]]] = {}
        invalid = 0
        error = ""
        for item in batch:
            if not item.get("feature"):
                # Spend nobody attributed is still spend: record it, visibly, under "unknown".
                item["feature"] = UNKNOWN_FEATURE
                self._warn_once(
                    "feature",
                    f"calls recorded without a feature are attributed to {UNKNOWN_FEATURE!r}; "
                    "pass feature= to Tracker(), the client wrapper, scope() or the call",
                )
            try:
                event = CallEvent.model_validate(item)
                line = event.to_json_line()
            except Exception as exc:
                invalid += 1
                error = " ".join(str(exc).split())[:300]
                continue
            at = event.occurred_at.astimezone(UTC)
            key = (at.year, at.month, at.day, at.hour)
            group = groups.get(key)
            if group is None:
                group = groups[key] = (at, [])
            group[1].append(line)
        if invalid:
            self._drop(invalid, "invalid", f"invalid call event ({error})")
        writer = f"{self.writer_id}-{os.getpid()}"
        for at, lines in groups.values():
            path = landing_file(self._paths.landing, at, writer)
            try:
                _append_lines(path, ("\n".join(lines) + "\n").encode("utf-8"))
            except Exception as exc:
                self._drop(
                    len(lines),
                    "write_failed",
                    f"cannot write {path}: {exc}; check that the landing folder "
                    f"{self._paths.landing} is writable and the disk has room",
                )
                continue
            with self._lock:
                self._written += len(lines)

    # -- flush and close ---------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to `timeout` seconds until everything recorded so far is written (or dropped).

        Returns False on timeout. Never raises.
        """
        return self._send_marker(_Marker(), timeout)

    def _send_marker(self, marker: _Marker, timeout: float) -> bool:
        try:
            _adopt_orphans()  # so that flush() covers abandoned streams too
            thread = self._thread
            if thread is None or not thread.is_alive():
                return self._queue.empty() and not ORPHANS
            if threading.current_thread() is thread:
                return False
            deadline = time.monotonic() + timeout
            self._queue.put(marker, timeout=max(timeout, 0.001))
            self._wake.set()
            return marker.done.wait(max(deadline - time.monotonic(), 0))
        except Exception:
            return False

    def close(self, timeout: float = 5.0) -> bool:
        """Write what is queued, stop the writer thread; later records are dropped and counted."""
        try:
            deadline = time.monotonic() + timeout
            ok = self.flush(timeout)
            self._closed = True
            thread = self._thread
            if thread is not None and thread.is_alive():
                ok = self._send_marker(_Marker(stop=True), max(deadline - time.monotonic(), 0))
                thread.join(max(deadline - time.monotonic(), 0))
            _LIVE.discard(self)
            return ok
        except Exception:
            return False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
