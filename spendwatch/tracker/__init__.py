"""Record every LLM call without ever hurting the application.

    tracker = Tracker(feature="smart-reply")
    response = client.chat.completions.create(...)
    tracker.record_response(response)

Events land in `$SPENDWATCH_HOME/landing/calls/date=YYYY-MM-DD/hour=HH/<writer_id>-<pid>.jsonl`
(`spendwatch.landing`). The package, one job per module: `usage` (token counts read from
responses and streams, shared with the OTel import), `scope` (per-request attribution),
`writer` (queue, background thread, files), `recorder` (the `Tracker`), `calls` (tracked calls
and streams), `wrappers` (`track_openai`, `track_anthropic`).

Importing it imports only the standard library, pydantic and `spendwatch.schema` /
`spendwatch.config` / `spendwatch.landing`: never the provider SDKs (responses are read by
shape), Dagster, dbt, pandas or numpy.
"""

from spendwatch.tracker.calls import TrackedCall, TrackedStream
from spendwatch.tracker.recorder import Tracker
from spendwatch.tracker.scope import scope
from spendwatch.tracker.usage import usage_from_response
from spendwatch.tracker.wrappers import default_tracker, track_anthropic, track_openai

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
