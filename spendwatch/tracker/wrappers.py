"""Client wrappers: an OpenAI or Anthropic client (sync or async) that records every call."""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

from spendwatch.tracker.calls import PendingCall, TrackedStream
from spendwatch.tracker.recorder import Tracker
from spendwatch.tracker.writer import AFTER_FORK

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


def _new_default_lock() -> None:
    """In a forked child: the parent's lock may have been held by another thread at fork."""
    global _default_lock
    _default_lock = threading.Lock()


AFTER_FORK.append(_new_default_lock)


def default_tracker() -> Tracker:
    """The process-wide tracker the wrappers use when none is given (home from the env)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Tracker()
        return _default


def _tracked_method(method: Callable, tracker: Tracker, defaults: dict, provider: str) -> Callable:
    def begin(kwargs: dict) -> PendingCall | None:
        try:
            fallback = {"provider": provider, "model": kwargs.get("model")}
            return tracker._begin(defaults, fallback)
        except Exception:
            return None

    def finish(call: PendingCall | None, result: Any, kwargs: dict) -> Any:
        if call is None:
            return result
        if kwargs.get("stream") is True:
            return TrackedStream(result, call)
        try:
            call.finish(result)
        except Exception as exc:
            tracker._warn_once("internal", f"could not record a call: {exc!r}")
        return result

    def fail(call: PendingCall | None, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            if call is not None:
                call.finish(error=exc)

    async def finish_later(call: PendingCall | None, pending: Any, kwargs: dict) -> Any:
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
