"""The Tracker: what an application calls to record LLM calls.

    tracker = Tracker(feature="smart-reply")
    response = client.chat.completions.create(...)
    tracker.record_response(response)

Every call is recorded (no sampling). The request thread only builds a small dict and hands it to
the writer's bounded queue (`writer.Writer`), whose background thread writes the landing files.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spendwatch.config import paths
from spendwatch.tracker.calls import PendingCall, TrackedCall, TrackedStream
from spendwatch.tracker.scope import SCOPE, scope
from spendwatch.tracker.usage import usage_from_response
from spendwatch.tracker.writer import Writer

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_FLUSH_INTERVAL = 0.5  # seconds an event may wait in memory


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "app"


class Tracker(Writer):
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
        landing_paths = paths(home)
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
        super().__init__(
            landing_paths, _safe_name(writer_id or socket.gethostname()), queue_size, flush_interval
        )

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
        current = SCOPE.get() if scope_fields is False else scope_fields
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
    ) -> PendingCall:
        if self._thread is None and not self._closed:
            with contextlib.suppress(Exception):
                self._start_writer()
        return PendingCall(self, dict(fields), fallback, SCOPE.get())

    def __repr__(self) -> str:
        return f"Tracker(home={str(self._paths.home)!r}, writer_id={self.writer_id!r})"
