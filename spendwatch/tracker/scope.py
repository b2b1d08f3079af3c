"""Per-request attribution (feature, user, ...) through a context variable."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

SCOPE: ContextVar[dict | None] = ContextVar("spendwatch_scope", default=None)


@contextlib.contextmanager
def scope(**fields: Any) -> Iterator[None]:
    """Fields (feature, user_id, tags, ...) added to every call recorded inside the block.

    Works across threads and asyncio tasks (a context variable); nested scopes merge, the inner
    one winning; explicit arguments to `record()` / `track()` still win over the scope.
    """
    current = SCOPE.get() or {}
    merged = {**current, **{k: v for k, v in fields.items() if v is not None and k != "tags"}}
    if fields.get("tags"):
        merged["tags"] = {**current.get("tags", {}), **fields["tags"]}
    token = SCOPE.set(merged)
    try:
        yield
    finally:
        SCOPE.reset(token)
