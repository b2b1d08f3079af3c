"""One call in flight: the `with tracker.track()` block, the decorator, tracked streams; the client
wrappers finish their calls through the same `PendingCall`."""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from spendwatch.tracker.usage import StreamUsage, usage_from_response
from spendwatch.tracker.writer import ORPHANS


class Recorder(Protocol):
    """What a call in flight needs of its tracker (`recorder.Tracker` is the one there is)."""

    def _count_recorded(self) -> None: ...

    def _enqueue(self, event: dict) -> bool: ...

    def _drop(self, count: int, reason: str, message: str) -> None: ...

    def _warn_once(self, kind: str, message: str) -> None: ...

    def _build(self, fields: Mapping[str, Any], *more: Any) -> dict: ...

    def _begin(
        self, fields: Mapping[str, Any], fallback: Mapping[str, Any] | None = None
    ) -> PendingCall: ...


_TOKEN_FIELDS = ("input_tokens", "output_tokens")


class PendingCall:
    __slots__ = ("tracker", "fields", "fallback", "scope", "t0", "occurred_at", "done")

    def __init__(
        self,
        tracker: Recorder,
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
            ORPHANS.append((tracker, event))
            return
        if problem:
            tracker._warn_once("usage", problem)
        tracker._enqueue(event)


class TrackedCall:
    """`with tracker.track(...) as call:` — times the call and records it on exit."""

    def __init__(self, tracker: Recorder, fields: dict) -> None:
        self._tracker = tracker
        self._fields = fields
        self._pending: PendingCall | None = None
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

        if inspect.iscoroutinefunction(func):

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

    def __init__(self, stream: Any, pending: PendingCall) -> None:
        self._stream = stream
        self._pending = pending
        self._state = StreamUsage()
        self._it: Any = None

    def _observe(self, chunk: Any) -> Any:
        """Read the chunk's usage (never raising) and hand the chunk on untouched."""
        try:
            self._state.observe(chunk)
            if self._state.final:
                self._finish(None)
        except Exception as exc:
            self._pending.tracker._warn_once("stream", f"cannot read a stream chunk: {exc!r}")
        return chunk

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
            return self._observe(next(self._it))
        except BaseException as exc:
            self._ended(exc)
            raise

    def __aiter__(self) -> TrackedStream:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = self._stream.__aiter__()
        try:
            return self._observe(await self._it.__anext__())
        except BaseException as exc:
            self._ended(exc)
            raise

    def _ended(self, exc: BaseException) -> None:
        """The stream ran out (its Stop[Async]Iteration) or failed: the call is recorded."""
        self._finish(None if isinstance(exc, StopIteration | StopAsyncIteration) else exc)

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
