"""Record every LLM call without ever hurting the application.

    tracker = Tracker(feature="smart-reply")
    response = client.chat.completions.create(...)
    tracker.record_response(response)

Every call is recorded (no sampling). The request thread only builds a small dict and hands it to
an in-memory bounded queue with `put_nowait`; a background daemon thread validates each event
against `CallEvent`, groups it by the event's UTC hour and appends whole lines to
`$SPENDWATCH_HOME/landing/calls/date=YYYY-MM-DD/hour=HH/<writer_id>-<pid>.jsonl`. Nothing here
raises into the application or blocks it on I/O: a full queue, a failing disk or an invalid event
drops the event, counts it in `stats()` and logs ONE warning per kind of problem.

Importing this module imports only the standard library, pydantic and `spendwatch.schema` /
`spendwatch.config`: never the provider SDKs (responses are read by shape), Dagster, dbt, pandas
or numpy.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import logging
import os
import queue
import re
import socket
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spendwatch.config import paths
from spendwatch.schema import CallEvent

__all__ = [
    "TrackedCall",
    "TrackedStream",
    "Tracker",
    "default_tracker",
    "scope",
    "track_anthropic",
    "track_openai",
    "usage_from_response",
]

log = logging.getLogger("spendwatch.tracker")

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_FLUSH_INTERVAL = 0.5  # seconds an event may wait in memory
EXIT_TIMEOUT = 2.0  # seconds the interpreter waits at exit for each tracker's last events
_MAX_BATCH = 5_000  # events per write
UNKNOWN_FEATURE = "unknown"  # the feature of calls recorded without one

_TOKEN_FIELDS = ("input_tokens", "output_tokens")
_SERVICE_TIERS = {
    "default": "standard",
    "auto": "standard",
    "standard": "standard",
    "flex": "flex",
    "priority": "priority",
    "fast": "priority",
    "batch": "batch",
}


# --------------------------------------------------------------------------------------------
# Reading usage from provider responses (by shape: the SDKs are never imported)
# --------------------------------------------------------------------------------------------


@functools.cache
def _kind_of_type(cls: type) -> str:
    """mapping / pydantic / other, cached per type (isinstance against an ABC is slow)."""
    if issubclass(cls, Mapping):
        return "mapping"
    return "pydantic" if hasattr(cls, "__pydantic_fields__") else "other"


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    kind = _kind_of_type(type(obj))
    if kind == "mapping":
        return obj.get(name)
    if kind == "pydantic":
        # Fields live in __dict__, unknown fields (an SDK older than the API) in the extras; a
        # miss through getattr would raise and catch an AttributeError, slowly.
        value = obj.__dict__.get(name)
        if value is not None:
            return value
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra and name in extra:
            return extra[name]
        if not hasattr(type(obj), name):
            return None
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"token count is a bool: {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"token count is not an integer: {value!r}")


def _has(obj: Any, name: str) -> bool:
    if obj is not None and _kind_of_type(type(obj)) == "mapping":
        return name in obj
    return _get(obj, name) is not None


def _provider_of(obj: Any) -> str | None:
    """openai / anthropic / google from the object's type, or from its shape for dicts."""
    root = type(obj).__module__.partition(".")[0]
    if root in ("openai", "anthropic", "google"):
        return root
    if isinstance(obj, Mapping):
        kind, typ = obj.get("object"), obj.get("type")
        if isinstance(kind, str) and (
            kind.startswith("chat.completion") or kind in ("response", "text_completion")
        ):
            return "openai"
        if isinstance(typ, str) and (typ == "message" or typ.startswith("message_")):
            return "anthropic"
        if isinstance(typ, str) and typ.startswith("response."):
            return "openai"
        if "usage_metadata" in obj or "usageMetadata" in obj:
            return "google"
    usage = _get(obj, "usage")
    if _has(usage, "prompt_tokens") or _has(usage, "input_tokens_details"):
        return "openai"
    if _has(usage, "cache_read_input_tokens") or _has(usage, "cache_creation_input_tokens"):
        return "anthropic"
    return None


def _fit(input_tokens: int, output_tokens: int, read: int, write: int, reasoning: int) -> dict:
    """Token fields that satisfy the schema's part-of-total rules (providers round oddly)."""
    read = min(max(read, 0), input_tokens)
    write = min(max(write, 0), input_tokens - read)
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "reasoning_tokens": min(max(reasoning, 0), output_tokens),
    }


def _anthropic_tokens(raw_input: int, read: int, write: int, output: int, thinking: int) -> dict:
    # Anthropic reports cache reads and writes OUTSIDE input_tokens; the warehouse counts them in.
    return _fit(raw_input + read + write, output, read, write, thinking)


def _tokens_from_usage(usage: Any, provider: str | None) -> dict:
    """Token fields from a usage object or dict of any supported provider shape."""
    if _has(usage, "prompt_tokens"):  # OpenAI Chat Completions, Completions, Embeddings
        prompt_details = _get(usage, "prompt_tokens_details")
        completion_details = _get(usage, "completion_tokens_details")
        return _fit(
            _int(_get(usage, "prompt_tokens")),
            _int(_get(usage, "completion_tokens")),
            _int(_get(prompt_details, "cached_tokens")),
            _int(_get(prompt_details, "cache_write_tokens")),
            _int(_get(completion_details, "reasoning_tokens")),
        )
    if (
        provider == "anthropic"
        or _has(usage, "cache_read_input_tokens")
        or _has(usage, "cache_creation_input_tokens")
    ):  # Anthropic Messages
        return _anthropic_tokens(
            _int(_get(usage, "input_tokens")),
            _int(_get(usage, "cache_read_input_tokens")),
            _int(_get(usage, "cache_creation_input_tokens")),
            _int(_get(usage, "output_tokens")),
            _int(_get(_get(usage, "output_tokens_details"), "thinking_tokens")),
        )
    if _has(usage, "input_tokens") or _has(usage, "output_tokens"):  # OpenAI Responses API
        input_details = _get(usage, "input_tokens_details")
        return _fit(
            _int(_get(usage, "input_tokens")),
            _int(_get(usage, "output_tokens")),
            _int(_get(input_details, "cached_tokens")),
            _int(_get(input_details, "cache_write_tokens")),
            _int(_get(_get(usage, "output_tokens_details"), "reasoning_tokens")),
        )
    if _has(usage, "prompt_token_count") or _has(usage, "candidates_token_count"):  # Gemini
        thoughts = _int(_get(usage, "thoughts_token_count"))
        return _fit(
            _int(_get(usage, "prompt_token_count"))
            + _int(_get(usage, "tool_use_prompt_token_count")),
            _int(_get(usage, "candidates_token_count")) + thoughts,
            _int(_get(usage, "cached_content_token_count")),
            0,
            thoughts,
        )
    raise ValueError(f"no token counts found in usage of type {type(usage).__name__}")


def usage_from_response(response: Any) -> dict[str, Any]:
    """CallEvent fields (provider, model, tokens, service tier) read from a provider response.

    Understands the OpenAI Chat Completions and Responses objects, Anthropic Messages, Gemini
    `usage_metadata`, plain dicts of the same shapes, and a bare usage object/dict. Raises
    ValueError when the object carries no token counts.
    """
    provider = _provider_of(response)
    usage = _get(response, "usage")
    if usage is None:
        usage = _get(response, "usage_metadata")
        if usage is not None:
            provider = provider or "google"
        else:
            usage = response  # a bare usage object
    fields = _tokens_from_usage(usage, provider)
    if provider:
        fields["provider"] = provider
    model = _get(response, "model") or _get(response, "model_version")
    if isinstance(model, str) and model:
        fields["model"] = model
    tier = _get(response, "service_tier") or _get(usage, "service_tier")
    if isinstance(tier, str) and tier in _SERVICE_TIERS:
        fields["service_tier"] = _SERVICE_TIERS[tier]
    if _get(response, "status") == "failed":  # OpenAI Responses API
        fields["status"] = "error"
    return fields


class _StreamUsage:
    """Accumulates usage from streamed chunks/events of any supported provider."""

    __slots__ = ("provider", "model", "fields", "anthropic", "final")

    def __init__(self) -> None:
        self.provider: str | None = None
        self.model: str | None = None
        self.fields: dict | None = None
        self.anthropic: dict | None = None
        self.final = False

    def observe(self, chunk: Any) -> None:
        kind = _get(chunk, "type")
        if kind == "message_start":  # Anthropic: input and cache counts arrive first
            message = _get(chunk, "message")
            self.provider = "anthropic"
            self.model = _get(message, "model") or self.model
            self.anthropic = {}
            self._anthropic_usage(_get(message, "usage"))
        elif kind == "message_delta":  # Anthropic: cumulative counts, output at the end
            self.provider = "anthropic"
            self.anthropic = self.anthropic if self.anthropic is not None else {}
            self._anthropic_usage(_get(chunk, "usage"))
        elif kind == "message_stop":
            self.final = self.anthropic is not None
        elif kind in ("response.completed", "response.failed", "response.incomplete"):
            self.fields = usage_from_response(_get(chunk, "response"))
            self.provider = self.fields.get("provider") or "openai"
            self.final = True
        elif isinstance(kind, str) and kind.startswith("response."):
            self.model = _get(_get(chunk, "response"), "model") or self.model
        else:  # OpenAI chat chunks (usage on the last one), Gemini chunks (cumulative)
            model = _get(chunk, "model") or _get(chunk, "model_version")
            if isinstance(model, str) and model:
                self.model = model
            usage = _get(chunk, "usage")
            if usage is not None:
                self.provider = self.provider or _provider_of(chunk)
                self.fields = _tokens_from_usage(usage, self.provider)
                self.final = True
            elif _get(chunk, "usage_metadata") is not None:
                self.provider = "google"
                self.fields = _tokens_from_usage(_get(chunk, "usage_metadata"), "google")

    def _anthropic_usage(self, usage: Any) -> None:
        if usage is None:
            return
        parts = {
            "raw_input": _get(usage, "input_tokens"),
            "read": _get(usage, "cache_read_input_tokens"),
            "write": _get(usage, "cache_creation_input_tokens"),
            "output": _get(usage, "output_tokens"),
            "thinking": _get(_get(usage, "output_tokens_details"), "thinking_tokens"),
        }
        self.anthropic.update({key: _int(v) for key, v in parts.items() if v is not None})

    def result(self) -> dict | None:
        if self.fields is not None:
            out = dict(self.fields)
        elif self.anthropic:
            out = _anthropic_tokens(
                *(self.anthropic.get(k, 0) for k in ("raw_input", "read", "write", "output")),
                self.anthropic.get("thinking", 0),
            )
        else:
            return None
        if self.provider:
            out.setdefault("provider", self.provider)
        if self.model:
            out.setdefault("model", self.model)
        return out


# --------------------------------------------------------------------------------------------
# Per-request attribution (feature, user, ...) through a context variable
# --------------------------------------------------------------------------------------------

_SCOPE: ContextVar[dict | None] = ContextVar("spendwatch_scope", default=None)


@contextlib.contextmanager
def scope(**fields: Any) -> Iterator[None]:
    """Fields (feature, user_id, tags, ...) added to every call recorded inside the block.

    Works across threads and asyncio tasks (a context variable); nested scopes merge, the inner
    one winning; explicit arguments to `record()` / `track()` still win over the scope.
    """
    current = _SCOPE.get() or {}
    merged = {**current, **{k: v for k, v in fields.items() if v is not None and k != "tags"}}
    if fields.get("tags"):
        merged["tags"] = {**current.get("tags", {}), **fields["tags"]}
    token = _SCOPE.set(merged)
    try:
        yield
    finally:
        _SCOPE.reset(token)


# --------------------------------------------------------------------------------------------
# Process-wide plumbing: exit flush, fork safety, one file lock
# --------------------------------------------------------------------------------------------

_LIVE: weakref.WeakSet[Tracker] = weakref.WeakSet()
_FILE_LOCK = threading.Lock()  # one writer per file at a time within the process
# Events finished from a finalizer (an abandoned stream) wait here: deque.append takes no lock,
# so a finalizer running inside the garbage collector can never deadlock on the queue's lock.
_ORPHANS: deque[tuple[Tracker, dict]] = deque()
_MP_HOOKED = False


def _close_all() -> None:
    for tracker in list(_LIVE):
        with contextlib.suppress(Exception):
            tracker.close(timeout=EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    global _FILE_LOCK, _MP_HOOKED
    _FILE_LOCK = threading.Lock()
    _MP_HOOKED = False
    _ORPHANS.clear()
    for tracker in list(_LIVE):
        tracker._reset_after_fork()


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
    while _ORPHANS:
        try:
            owner, event = _ORPHANS.popleft()
        except IndexError:
            break
        owner._enqueue(event)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _append_lines(path: Path, data: bytes) -> None:
    """Append complete lines; on failure cut the file back so no half line is ever left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    with _FILE_LOCK:
        fd = os.open(path, flags, 0o644)
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


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "app"


class _Marker:
    __slots__ = ("done", "stop")

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


# --------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------


class Tracker:
    """Records LLM calls to the landing folder from a background thread.

    Defaults given here (feature, environment, team_id, ...) are merged into every event; a
    `scope()` and the arguments of each call override them. `stats()` says what happened.
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        feature: str | None = None,
        environment: str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        endpoint: str | None = None,
        prompt_version: str | None = None,
        tags: Mapping[str, str] | None = None,
        writer_id: str | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        self._paths = paths(home)
        defaults = {
            "feature": feature,
            "environment": environment,
            "team_id": team_id,
            "user_id": user_id,
            "endpoint": endpoint,
            "prompt_version": prompt_version,
        }
        self._defaults = {k: v for k, v in defaults.items() if v is not None}
        self._tags = dict(tags or {})
        self.writer_id = _safe_name(writer_id or socket.gethostname())
        self._queue_size = max(1, int(queue_size))
        self._flush_interval = max(0.01, float(flush_interval))
        self._closed = False
        self._init_runtime()
        _LIVE.add(self)

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

    @property
    def landing(self) -> Path:
        return self._paths.landing

    # -- recording --------------------------------------------------------------------------

    def record(
        self,
        provider: str | None = None,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        feature: str | None = None,
        **fields: Any,
    ) -> str | None:
        """Record one call of any provider; returns its event_id (None if dropped at once).

        Any other CallEvent field may be given (cache_read_tokens, status, attempt, latency_ms,
        occurred_at, tags, ...). event_id (uuid4) and occurred_at (now, UTC) are filled when
        absent. Invalid events are dropped and counted, never raised.
        """
        try:
            fields.update(
                provider=provider,
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                feature=feature,
            )
            event = self._build(fields)
        except Exception as exc:
            self._count_recorded()
            self._drop(1, "internal", f"could not record a call: {exc!r}")
            return None
        return event["event_id"] if self._enqueue(event) else None

    def record_response(self, response: Any, **fields: Any) -> str | None:
        """Record a call from the provider's response object (or a dict of the same shape).

        Provider, model, tokens (cached and reasoning included) and service tier are read from
        the response; fields given here win over what the response says.
        """
        try:
            event = self._build(fields, usage_from_response(response))
        except Exception as exc:
            self._count_recorded()
            self._drop(
                1,
                "invalid",
                f"cannot read usage from a {type(response).__name__}: {exc}. Pass a provider "
                "response (or its usage) or call record() with the token counts",
            )
            return None
        return event["event_id"] if self._enqueue(event) else None

    def track(self, **fields: Any) -> TrackedCall:
        """Time a call: `with tracker.track(feature=..., attempt=n) as call: call.set_response(r)`.

        Also a decorator (`@tracker.track(feature=...)`; the function's return value is taken as
        the response). An exception inside the block is recorded with status `error` and
        re-raised untouched.
        """
        return TrackedCall(self, fields)

    def track_stream(self, chunks: Any, **fields: Any) -> TrackedStream:
        """Wrap a stream of chunks/events; the call is recorded when its usage appears.

        For OpenAI chat streams pass `stream_options={"include_usage": True}` to the request,
        otherwise the stream carries no token counts.
        """
        return TrackedStream(chunks, self._begin(fields))

    scope = staticmethod(scope)

    def _build(
        self,
        fields: Mapping[str, Any],
        detected: Mapping[str, Any] | None = None,
        fallback: Mapping[str, Any] | None = None,
        scope_fields: Mapping[str, Any] | None | bool = False,
    ) -> dict:
        """Merge defaults < scope < explicit fields; detected and fallback fill what is unset."""
        event = self._defaults.copy()
        current = _SCOPE.get() if scope_fields is False else scope_fields
        if current:
            event.update(current)
        for key, value in fields.items():
            if value is not None:
                event[key] = value
        call_tags = fields.get("tags")
        scope_tags = current.get("tags") if current else None
        if self._tags or scope_tags or call_tags is not None:
            tags = dict(self._tags)
            if scope_tags:
                tags.update(scope_tags)
            if call_tags:
                tags.update(call_tags)
            event["tags"] = tags
        for extra in (detected, fallback):
            if extra:
                for key, value in extra.items():
                    if value is not None and key not in event:
                        event[key] = value
        if "event_id" not in event:
            event["event_id"] = str(uuid.uuid4())
        if "occurred_at" not in event:
            event["occurred_at"] = datetime.now(UTC)
        return event

    def _begin(
        self, fields: Mapping[str, Any], fallback: Mapping[str, Any] | None = None
    ) -> _PendingCall:
        if self._thread is None and not self._closed:
            with contextlib.suppress(Exception):
                self._start_writer()
        return _PendingCall(self, dict(fields), fallback, _SCOPE.get())

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
        groups: dict[tuple[int, int, int, int], tuple[Path, list[str]]] = {}
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
                group = groups[key] = (self._paths.partition_dir(at), [])
            group[1].append(line)
        if invalid:
            self._drop(invalid, "invalid", f"invalid call event ({error})")
        name = f"{self.writer_id}-{os.getpid()}.jsonl"
        for folder, lines in groups.values():
            path = folder / name
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
                return self._queue.empty() and not _ORPHANS
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

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tracker(home={str(self._paths.home)!r}, writer_id={self.writer_id!r})"


# --------------------------------------------------------------------------------------------
# One call in flight: the context manager, streams and client wrappers share this
# --------------------------------------------------------------------------------------------


class _PendingCall:
    __slots__ = ("tracker", "fields", "fallback", "scope", "t0", "occurred_at", "done")

    def __init__(
        self,
        tracker: Tracker,
        fields: dict,
        fallback: Mapping[str, Any] | None,
        scope_fields: dict | None,
    ) -> None:
        self.tracker = tracker
        self.fields = fields
        self.fallback = fallback
        self.scope = scope_fields
        self.done = False
        self.occurred_at = datetime.now(UTC)
        self.t0 = time.perf_counter()

    def finish(
        self,
        response: Any = None,
        error: BaseException | None = None,
        detected: dict | None = None,
        deferred: bool = False,
    ) -> None:
        """Record the call once. `deferred` (from a finalizer) takes no lock at all."""
        if self.done:
            return
        self.done = True
        tracker = self.tracker
        fields = dict(self.fields)
        fields.setdefault("occurred_at", self.occurred_at)
        fields.setdefault("latency_ms", round((time.perf_counter() - self.t0) * 1000, 3))
        if error is not None:
            fields["status"] = "error"
        problem = None
        if response is not None and detected is None:
            try:
                detected = usage_from_response(response)
            except Exception as exc:
                problem = f"cannot read usage from a {type(response).__name__}: {exc}"
        detected = dict(detected or {})
        if not all(fields.get(k) is not None or k in detected for k in _TOKEN_FIELDS):
            detected.setdefault("input_tokens", 0)
            detected.setdefault("output_tokens", 0)
            if error is None:
                fields["tags"] = {**(fields.get("tags") or {}), "usage": "missing"}
                problem = problem or (
                    "a tracked call ended without token usage; it is recorded with 0 tokens and "
                    "tag usage=missing. Call set_response()/set_usage(), or for OpenAI streams "
                    'pass stream_options={"include_usage": True}'
                )
        try:
            event = tracker._build(fields, detected, self.fallback, self.scope)
        except Exception as exc:
            if not deferred:
                tracker._count_recorded()
                tracker._drop(1, "internal", f"could not record a call: {exc!r}")
            return
        if deferred:
            _ORPHANS.append((tracker, event))
            return
        if problem:
            tracker._warn_once("usage", problem)
        tracker._enqueue(event)


def _is_coroutine_function(func: Any) -> bool:
    return inspect.iscoroutinefunction(func)


class TrackedCall:
    """`with tracker.track(...) as call:` — times the call and records it on exit."""

    def __init__(self, tracker: Tracker, fields: dict) -> None:
        self._tracker = tracker
        self._fields = fields
        self._pending: _PendingCall | None = None
        self._response: Any = None
        self._usage: dict = {}

    def set_response(self, response: Any) -> Any:
        """The provider response whose usage to record; returns it unchanged."""
        self._response = response
        return response

    def set_usage(
        self, input_tokens: int | None = None, output_tokens: int | None = None, **more: Any
    ) -> None:
        """Token counts (and any other CallEvent field) when there is no response object."""
        more.update(input_tokens=input_tokens, output_tokens=output_tokens)
        self._usage.update({k: v for k, v in more.items() if v is not None})

    def __enter__(self) -> TrackedCall:
        self._pending = self._tracker._begin(self._fields)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        try:
            if self._pending is not None:
                self._pending.fields.update(self._usage)
                self._pending.finish(self._response, exc)
        except Exception as internal:
            self._tracker._warn_once("internal", f"could not record a call: {internal!r}")
        return False  # the application's exception propagates untouched

    async def __aenter__(self) -> TrackedCall:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable) -> Callable:
        tracker, fields = self._tracker, self._fields

        if _is_coroutine_function(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with TrackedCall(tracker, fields) as call:
                    return call.set_response(await func(*args, **kwargs))

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with TrackedCall(tracker, fields) as call:
                return call.set_response(func(*args, **kwargs))

        return wrapper


class TrackedStream:
    """A stream of chunks passed through untouched; the call is recorded when its usage appears,
    when the stream ends, fails or is closed (or, if abandoned, when it is garbage-collected).
    Supports iteration, async iteration, `with`/`async with`; other attributes are the stream's.
    """

    def __init__(self, stream: Any, pending: _PendingCall) -> None:
        self._stream = stream
        self._pending = pending
        self._state = _StreamUsage()
        self._it: Any = None

    def _observe(self, chunk: Any) -> None:
        try:
            self._state.observe(chunk)
            if self._state.final:
                self._finish(None)
        except Exception as exc:
            self._pending.tracker._warn_once("stream", f"cannot read a stream chunk: {exc!r}")

    def _finish(self, error: BaseException | None, deferred: bool = False) -> None:
        if self._pending.done:
            return
        try:
            self._pending.finish(error=error, detected=self._state.result(), deferred=deferred)
        except Exception as exc:
            if not deferred:
                self._pending.tracker._warn_once("internal", f"could not record a call: {exc!r}")

    def __iter__(self) -> TrackedStream:
        return self

    def __next__(self) -> Any:
        if self._it is None:
            self._it = iter(self._stream)
        try:
            chunk = next(self._it)
        except StopIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        self._observe(chunk)
        return chunk

    def __aiter__(self) -> TrackedStream:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._stream.__aiter__()
        try:
            chunk = await self._it.__anext__()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException as exc:
            self._finish(exc)
            raise
        self._observe(chunk)
        return chunk

    def close(self) -> Any:
        self._finish(None)
        close = getattr(self._stream, "close", None)
        return close() if close is not None else None

    def __enter__(self) -> TrackedStream:
        enter = getattr(self._stream, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._finish(exc)
        exit_ = getattr(self._stream, "__exit__", None)
        return exit_(exc_type, exc, tb) if exit_ is not None else None

    async def __aenter__(self) -> TrackedStream:
        enter = getattr(self._stream, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Any:
        self._finish(exc)
        exit_ = getattr(self._stream, "__aexit__", None)
        return await exit_(exc_type, exc, tb) if exit_ is not None else None

    def __getattr__(self, name: str) -> Any:
        if name in ("_stream", "_pending", "_state", "_it"):  # half-built: no recursion
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._pending.done:
                self._finish(None, deferred=True)


# --------------------------------------------------------------------------------------------
# Client wrappers
# --------------------------------------------------------------------------------------------

_OPENAI_CALLS = frozenset(
    {
        ("chat", "completions", "create"),
        ("chat", "completions", "parse"),
        ("beta", "chat", "completions", "parse"),
        ("responses", "create"),
        ("responses", "parse"),
        ("completions", "create"),
        ("embeddings", "create"),
    }
)
_ANTHROPIC_CALLS = frozenset({("messages", "create"), ("beta", "messages", "create")})


@functools.cache
def _prefixes(calls: frozenset) -> frozenset:
    return frozenset(call[:i] for call in calls for i in range(1, len(call)))


_default_lock = threading.Lock()
_default: Tracker | None = None


def default_tracker() -> Tracker:
    """The process-wide tracker the wrappers use when none is given (home from the env)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Tracker()
        return _default


def _tracked_method(method: Callable, tracker: Tracker, defaults: dict, provider: str) -> Callable:
    def begin(kwargs: dict) -> _PendingCall | None:
        try:
            fallback = {"provider": provider, "model": kwargs.get("model")}
            return tracker._begin(defaults, fallback)
        except Exception:
            return None

    def finish(call: _PendingCall | None, result: Any, kwargs: dict) -> Any:
        if call is None:
            return result
        if kwargs.get("stream") is True:
            return TrackedStream(result, call)
        try:
            call.finish(result)
        except Exception as exc:
            tracker._warn_once("internal", f"could not record a call: {exc!r}")
        return result

    def fail(call: _PendingCall | None, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            if call is not None:
                call.finish(error=exc)

    async def finish_later(call: _PendingCall | None, pending: Any, kwargs: dict) -> Any:
        try:
            result = await pending
        except BaseException as exc:
            fail(call, exc)
            raise
        return finish(call, result, kwargs)

    @functools.wraps(method)
    def create(*args: Any, **kwargs: Any) -> Any:
        call = begin(kwargs)
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            fail(call, exc)
            raise
        if inspect.isawaitable(result):  # async clients: record when the coroutine completes
            return finish_later(call, result, kwargs)
        return finish(call, result, kwargs)

    return create


class _ClientProxy:
    """Behaves as the wrapped client; the tracked create methods record each call."""

    def __init__(
        self,
        target: Any,
        tracker: Tracker,
        defaults: dict,
        provider: str,
        calls: frozenset,
        path: tuple[str, ...] = (),
    ) -> None:
        object.__setattr__(self, "_sw", (target, tracker, defaults, provider, calls, path))
        object.__setattr__(self, "_sw_cache", {})

    def __getattr__(self, name: str) -> Any:
        target, tracker, defaults, provider, calls, path = object.__getattribute__(self, "_sw")
        value = getattr(target, name)
        here = (*path, name)
        if here in calls or here in _prefixes(calls):
            cache = object.__getattribute__(self, "_sw_cache")
            hit = cache.get(name)
            if hit is not None and hit[0] == value:  # same resource / same bound method
                return hit[1]
            if here in calls:
                wrapped = _tracked_method(value, tracker, defaults, provider)
            else:
                wrapped = _ClientProxy(value, tracker, defaults, provider, calls, here)
            cache[name] = (value, wrapped)
            return wrapped
        if not path and name in ("with_options", "copy") and callable(value):

            @functools.wraps(value)
            def rewrap(*args: Any, **kwargs: Any) -> Any:
                return _ClientProxy(value(*args, **kwargs), tracker, defaults, provider, calls)

            return rewrap
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_sw")[0], name, value)

    def __dir__(self) -> list[str]:
        return dir(object.__getattribute__(self, "_sw")[0])

    def __repr__(self) -> str:
        return f"<spendwatch tracked {object.__getattribute__(self, '_sw')[0]!r}>"

    def __enter__(self) -> _ClientProxy:
        object.__getattribute__(self, "_sw")[0].__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return object.__getattribute__(self, "_sw")[0].__exit__(*exc)

    async def __aenter__(self) -> _ClientProxy:
        await object.__getattribute__(self, "_sw")[0].__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        return await object.__getattribute__(self, "_sw")[0].__aexit__(*exc)


def track_openai(client: Any, tracker: Tracker | None = None, **defaults: Any) -> Any:
    """An OpenAI (or AsyncOpenAI, or OpenAI-compatible) client that records every call.

    `chat.completions.create/parse`, `responses.create/parse`, `completions.create` and
    `embeddings.create` are recorded (streams when their usage arrives); everything else is the
    client's own. `defaults` (feature, provider for OpenAI-compatible services, ...) apply to
    every call.
    """
    tracker = tracker or default_tracker()
    return _ClientProxy(client, tracker, defaults, "openai", _OPENAI_CALLS)


def track_anthropic(client: Any, tracker: Tracker | None = None, **defaults: Any) -> Any:
    """An Anthropic (or AsyncAnthropic) client whose `messages.create` calls are recorded."""
    tracker = tracker or default_tracker()
    return _ClientProxy(client, tracker, defaults, "anthropic", _ANTHROPIC_CALLS)
