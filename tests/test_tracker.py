"""spendwatch.Tracker: every call recorded from real SDK response types, never hurting the app.

Events are always checked as read back from the landing files, parsed with CallEvent.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseCompletedEvent

import spendwatch.tracker.writer as writer_mod
from spendwatch.landing import ALL_FILES, hour_dir
from spendwatch.schema import CallEvent
from spendwatch.tracker import Tracker, scope, track_anthropic, track_openai, usage_from_response

# ------------------------------------------------------------------------------------------
# fixtures: provider payloads in the providers' documented JSON shapes
# ------------------------------------------------------------------------------------------


def chat_completion_json(
    model="gpt-4o-2024-08-06",
    prompt=1200,
    completion=300,
    cached=1024,
    reasoning=128,
    service_tier="default",
) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "service_tier": service_tier,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hello"},
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
        },
    }


def responses_json() -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "model": "o4-mini-2025-04-16",
        "status": "completed",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "service_tier": "flex",
        "usage": {
            "input_tokens": 3000,
            "input_tokens_details": {"cached_tokens": 2048, "cache_write_tokens": 0},
            "output_tokens": 900,
            "output_tokens_details": {"reasoning_tokens": 640},
            "total_tokens": 3900,
        },
    }


def anthropic_message_json() -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 50,
            "cache_read_input_tokens": 4000,
            "cache_creation_input_tokens": 700,
            "output_tokens": 420,
            "output_tokens_details": {"thinking_tokens": 300},
        },
    }


OPENAI_CHAT_TOKENS = {
    "input_tokens": 1200,
    "output_tokens": 300,
    "cache_read_tokens": 1024,
    "cache_write_tokens": 0,
    "reasoning_tokens": 128,
}
RESPONSES_TOKENS = {
    "input_tokens": 3000,
    "output_tokens": 900,
    "cache_read_tokens": 2048,
    "cache_write_tokens": 0,
    "reasoning_tokens": 640,
}
# Anthropic reports cache reads/writes outside input_tokens: 50 + 4000 + 700.
ANTHROPIC_TOKENS = {
    "input_tokens": 4750,
    "output_tokens": 420,
    "cache_read_tokens": 4000,
    "cache_write_tokens": 700,
    "reasoning_tokens": 300,
}


ROOT = Path(__file__).resolve().parents[1]


def landing_files(home: Path) -> list[Path]:
    return sorted((home / "landing" / "calls").glob(ALL_FILES))


def read_events(home: Path) -> list[CallEvent]:
    events = []
    for path in landing_files(home):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{path} ends with half a line"
        for line in text.splitlines():
            event = CallEvent.model_validate_json(line)
            at = event.occurred_at.astimezone(UTC)
            assert path.parent == hour_dir(home / "landing" / "calls", at), (
                "event written outside its UTC hour folder"
            )
            events.append(event)
    return events


def tokens(event: CallEvent) -> dict:
    return {k: getattr(event, k) for k in OPENAI_CHAT_TOKENS}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def tracker(home: Path):
    t = Tracker(
        home=home,
        feature="smart-reply",
        team_id="team-a",
        writer_id="test",
        tags={"region": "eu"},
        flush_interval=0.05,
    )
    yield t
    t.close()


def only_event(tracker: Tracker, home: Path) -> CallEvent:
    assert tracker.flush(5)
    events = read_events(home)
    assert len(events) == 1, events
    return events[0]


def spendwatch_warnings(caplog) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "spendwatch.tracker" and r.levelno == logging.WARNING
    ]


# ------------------------------------------------------------------------------------------
# provider responses
# ------------------------------------------------------------------------------------------


def test_openai_chat_completion_object(tracker, home):
    response = ChatCompletion.model_validate(chat_completion_json())
    event_id = tracker.record_response(response, user_id="u-1", endpoint="/api/chat")
    event = only_event(tracker, home)
    assert event.event_id == event_id and uuid.UUID(event_id).version == 4
    assert (event.provider, event.model) == ("openai", "gpt-4o-2024-08-06")
    assert tokens(event) == OPENAI_CHAT_TOKENS
    assert (event.feature, event.team_id, event.user_id, event.endpoint) == (
        "smart-reply",
        "team-a",
        "u-1",
        "/api/chat",
    )
    assert event.service_tier == "standard"  # OpenAI's "default"
    assert event.tags == {"region": "eu"}
    assert abs((datetime.now(UTC) - event.occurred_at).total_seconds()) < 60
    assert landing_files(home)[0].name == f"test-{os.getpid()}.jsonl"


def test_openai_responses_api_object(tracker, home):
    tracker.record_response(Response.model_validate(responses_json()), feature="summarize")
    event = only_event(tracker, home)
    assert (event.provider, event.model, event.feature) == (
        "openai",
        "o4-mini-2025-04-16",
        "summarize",
    )
    assert tokens(event) == RESPONSES_TOKENS
    assert event.service_tier == "flex"


def test_anthropic_message_counts_cache_inside_input(tracker, home):
    tracker.record_response(Message.model_validate(anthropic_message_json()))
    event = only_event(tracker, home)
    assert (event.provider, event.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert tokens(event) == ANTHROPIC_TOKENS


@pytest.mark.parametrize(
    ("payload", "expected", "provider"),
    [
        (chat_completion_json(), OPENAI_CHAT_TOKENS, "openai"),
        (responses_json(), RESPONSES_TOKENS, "openai"),
        (anthropic_message_json(), ANTHROPIC_TOKENS, "anthropic"),
        (
            {
                "model_version": "gemini-2.5-flash",
                "usage_metadata": {
                    "prompt_token_count": 900,
                    "cached_content_token_count": 512,
                    "candidates_token_count": 100,
                    "thoughts_token_count": 40,
                },
            },
            {
                "input_tokens": 900,
                "output_tokens": 140,
                "cache_read_tokens": 512,
                "cache_write_tokens": 0,
                "reasoning_tokens": 40,
            },
            "google",
        ),
    ],
    ids=["openai-chat", "openai-responses", "anthropic", "gemini"],
)
def test_plain_dicts_of_the_same_shapes(tracker, home, payload, expected, provider):
    tracker.record_response(json.loads(json.dumps(payload)))
    event = only_event(tracker, home)
    assert tokens(event) == expected
    assert event.provider == provider


def test_explicit_fields_win_over_the_response(tracker, home):
    # An OpenAI-compatible service answers with openai types; the caller names the provider.
    response = ChatCompletion.model_validate(chat_completion_json(model="deepseek-chat"))
    tracker.record_response(response, provider="deepseek", service_tier="batch", attempt=2)
    event = only_event(tracker, home)
    assert (event.provider, event.model, event.service_tier, event.attempt) == (
        "deepseek",
        "deepseek-chat",
        "batch",
        2,
    )


def test_record_any_provider_fills_id_and_time_and_hour_folder(tracker, home):
    at = datetime.fromisoformat("2024-03-10T23:30:00-05:00")  # 04:30 UTC the next day
    tracker.record(
        provider="mistral",
        model="mistral-large-latest",
        input_tokens=10,
        output_tokens=5,
        occurred_at=at,
        tags={"tenant": "acme"},
    )
    event = only_event(tracker, home)
    assert event.occurred_at == at
    assert landing_files(home)[0].parent.parts[-2:] == ("date=2024-03-11", "hour=04")
    assert event.tags == {"region": "eu", "tenant": "acme"}
    assert event.environment == "production"


def test_scope_attributes_calls_and_explicit_fields_win(tracker, home):
    with scope(feature="search", user_id="u-9", tags={"request": "r1"}):
        tracker.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1)
        with tracker.scope(user_id="u-10"):
            tracker.record(
                provider="openai",
                model="gpt-4o",
                input_tokens=2,
                output_tokens=1,
                feature="explicit",
            )
    tracker.record(provider="openai", model="gpt-4o", input_tokens=3, output_tokens=1)
    assert tracker.flush(5)
    got = {e.input_tokens: (e.feature, e.user_id, e.tags) for e in read_events(home)}
    assert got == {
        1: ("search", "u-9", {"region": "eu", "request": "r1"}),
        2: ("explicit", "u-10", {"region": "eu", "request": "r1"}),
        3: ("smart-reply", None, {"region": "eu"}),
    }


def test_invalid_events_are_dropped_counted_and_warned_once(tracker, home, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    # cache parts larger than the input: the schema rejects it
    tracker.record(
        provider="openai", model="m", input_tokens=1, output_tokens=1, cache_read_tokens=5
    )
    tracker.record(model="m", input_tokens=1, output_tokens=1)  # no provider
    tracker.record(provider="openai", model="m", input_tokens="lots", output_tokens=1)
    assert tracker.record_response(object()) is None  # no usage at all
    tracker.record(provider="openai", model="m", input_tokens=7, output_tokens=1)
    assert tracker.flush(5)
    stats = tracker.stats()
    assert stats["recorded"] == 5 and stats["written"] == 1 and stats["dropped"] == 4
    assert stats["dropped_by_reason"] == {"invalid": 4}
    assert "CallEvent" in stats["last_error"]
    assert len(spendwatch_warnings(caplog)) == 1
    assert [e.input_tokens for e in read_events(home)] == [7]


def test_calls_without_a_feature_are_kept_as_unknown(home, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    with Tracker(home=home, flush_interval=0.02) as t:
        client = track_openai(FakeOpenAI(), t)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o", messages=[])
        assert t.flush(5)
    assert [e.feature for e in read_events(home)] == ["unknown"] * 3
    assert t.stats()["dropped"] == 0
    assert len(spendwatch_warnings(caplog)) == 1


def test_usage_from_response_rejects_objects_without_usage():
    with pytest.raises(ValueError, match="no token counts"):
        usage_from_response({"id": "x"})


# ------------------------------------------------------------------------------------------
# streams
# ------------------------------------------------------------------------------------------


def openai_chunks() -> list[ChatCompletionChunk]:
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    deltas = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": chat_completion_json()["usage"]},
    ]
    return [ChatCompletionChunk.model_validate(d) for d in deltas]


def anthropic_events() -> list:
    start = anthropic_message_json() | {"content": [], "stop_reason": None}
    start["usage"] = {
        "input_tokens": 50,
        "cache_read_input_tokens": 4000,
        "cache_creation_input_tokens": 700,
        "output_tokens": 1,
    }
    return [
        RawMessageStartEvent.model_validate({"type": "message_start", "message": start}),
        RawContentBlockDeltaEvent.model_validate(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "hi"},
            }
        ),
        RawMessageDeltaEvent.model_validate(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 420, "output_tokens_details": {"thinking_tokens": 300}},
            }
        ),
        RawMessageStopEvent.model_validate({"type": "message_stop"}),
    ]


def test_openai_stream_recorded_when_usage_chunk_arrives(tracker, home):
    chunks = openai_chunks()
    stream = tracker.track_stream(iter(chunks), feature="chat-stream")
    assert [next(stream), next(stream)] == chunks[:2]
    assert tracker.stats()["recorded"] == 0
    assert next(stream) is chunks[2]
    assert tracker.stats()["recorded"] == 1  # recorded with the usage chunk, before the end
    assert list(stream) == []
    event = only_event(tracker, home)
    assert (event.provider, event.model, event.feature) == ("openai", "gpt-4o-mini", "chat-stream")
    assert tokens(event) == OPENAI_CHAT_TOKENS
    assert event.latency_ms is not None


def test_anthropic_stream_events(tracker, home):
    events = anthropic_events()
    assert list(tracker.track_stream(iter(events))) == events
    event = only_event(tracker, home)
    assert (event.provider, event.model) == ("anthropic", "claude-sonnet-4-5-20250929")
    assert tokens(event) == ANTHROPIC_TOKENS


def test_responses_api_stream_events(tracker, home):
    done = ResponseCompletedEvent.model_validate(
        {"type": "response.completed", "sequence_number": 9, "response": responses_json()}
    )
    list(tracker.track_stream(iter([{"type": "response.created"}, done])))
    event = only_event(tracker, home)
    assert tokens(event) == RESPONSES_TOKENS and event.model == "o4-mini-2025-04-16"


def test_stream_failing_midway_is_an_error_and_reraised(tracker, home):
    boom = ConnectionResetError("peer went away")

    def chunks():
        yield anthropic_events()[0]
        raise boom

    stream = tracker.track_stream(chunks(), feature="f")
    next(stream)
    with pytest.raises(ConnectionResetError) as excinfo:
        next(stream)
    assert excinfo.value is boom
    event = only_event(tracker, home)
    assert event.status == "error"
    assert event.input_tokens == 4750  # what message_start already reported


def test_abandoned_stream_is_still_recorded(tracker, home):
    stream = tracker.track_stream(iter(anthropic_events()))
    next(stream)  # the consumer stops reading and drops the stream without closing it
    del stream
    gc.collect()
    event = only_event(tracker, home)
    assert event.input_tokens == 4750 and event.status == "ok"


# ------------------------------------------------------------------------------------------
# the context manager and decorator
# ------------------------------------------------------------------------------------------


def test_track_records_error_reraises_untouched_and_carries_attempt(tracker, home):
    original = TimeoutError("provider timed out")
    with (
        pytest.raises(TimeoutError) as excinfo,
        tracker.track(provider="openai", model="gpt-4o", attempt=3),
    ):
        threading.Event().wait(0.02)
        raise original
    assert excinfo.value is original
    event = only_event(tracker, home)
    assert (event.status, event.attempt, event.provider, event.model) == (
        "error",
        3,
        "openai",
        "gpt-4o",
    )
    assert (event.input_tokens, event.output_tokens) == (0, 0)
    assert event.latency_ms >= 20


def test_track_success_reads_the_response_and_times_the_call(tracker, home):
    started = datetime.now(UTC)
    with tracker.track(feature="classify") as call:
        threading.Event().wait(0.02)
        assert call.set_response(Message.model_validate(anthropic_message_json())) is not None
    event = only_event(tracker, home)
    assert tokens(event) == ANTHROPIC_TOKENS and event.status == "ok"
    assert event.latency_ms >= 20
    assert started <= event.occurred_at <= datetime.now(UTC)  # the start of the call


def test_track_without_usage_is_recorded_with_zero_and_tagged(tracker, home, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    for _ in range(2):
        with tracker.track(provider="openai", model="gpt-4o"):
            pass
    with tracker.track(provider="openai", model="gpt-4o") as call:
        call.set_usage(input_tokens=10, output_tokens=2, cache_read_tokens=4)
    assert tracker.flush(5)
    got = sorted(
        (e.input_tokens, e.cache_read_tokens, e.tags.get("usage")) for e in read_events(home)
    )
    assert got == [(0, 0, "missing"), (0, 0, "missing"), (10, 4, None)]
    assert len(spendwatch_warnings(caplog)) == 1


def test_track_as_decorator_sync_and_async(tracker, home):
    @tracker.track(feature="decorated")
    def call_model():
        return ChatCompletion.model_validate(chat_completion_json())

    @tracker.track(feature="decorated-async")
    async def call_model_async():
        return Message.model_validate(anthropic_message_json())

    assert isinstance(call_model(), ChatCompletion)
    assert isinstance(asyncio.run(call_model_async()), Message)
    assert tracker.flush(5)
    got = {e.feature: tokens(e) for e in read_events(home)}
    assert got == {"decorated": OPENAI_CHAT_TOKENS, "decorated-async": ANTHROPIC_TOKENS}


# ------------------------------------------------------------------------------------------
# client wrappers
# ------------------------------------------------------------------------------------------


class FakeCompletions:
    def __init__(self):
        self.calls = []

    def create(self, **kwargs):
        self.calls.append(kwargs)
        if kwargs.get("model") == "broken":
            raise RuntimeError("500 from provider")
        return ChatCompletion.model_validate(chat_completion_json())


class FakeChat:
    def __init__(self):
        self.completions = FakeCompletions()


class FakeOpenAI:
    """Shaped like openai.OpenAI: client.chat.completions.create(...)."""

    api_key = "sk-test"

    def __init__(self):
        self.chat = FakeChat()

    def with_options(self, **options):
        return self

    def models_list(self):
        return ["gpt-4o"]


def test_track_openai_wrapper_on_a_client_shaped_like_openai(tracker, home):
    fake = FakeOpenAI()
    client = track_openai(fake, tracker, feature="wrapped")
    response = client.chat.completions.create(model="gpt-4o", messages=[])
    assert isinstance(response, ChatCompletion)
    assert fake.chat.completions.calls == [{"model": "gpt-4o", "messages": []}]
    assert client.api_key == "sk-test" and client.models_list() == ["gpt-4o"]
    # with_options returns a client that is still tracked
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=[])
    with pytest.raises(RuntimeError, match="500 from provider"):
        client.chat.completions.create(model="broken", messages=[])
    assert tracker.flush(5)
    events = sorted(read_events(home), key=lambda e: e.status)
    assert [(e.status, e.model, e.feature) for e in events] == [
        ("error", "broken", "wrapped"),
        ("ok", "gpt-4o-2024-08-06", "wrapped"),
        ("ok", "gpt-4o-2024-08-06", "wrapped"),
    ]
    assert tokens(events[1]) == OPENAI_CHAT_TOKENS
    assert all(e.latency_ms is not None for e in events)


def sse(events: list[tuple[str | None, object]]) -> bytes:
    out = []
    for name, data in events:
        if name:
            out.append(f"event: {name}")
        out.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        out.append("")
    return ("\n".join(out) + "\n").encode()


def openai_transport(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        chunks = [c.model_dump(exclude_none=True) for c in openai_chunks()]
        payload = sse([(None, c) for c in chunks] + [(None, "[DONE]")])
        return httpx2.Response(200, content=payload, headers={"content-type": "text/event-stream"})
    if request.url.path.endswith("/responses"):
        return httpx2.Response(200, json=responses_json())
    return httpx2.Response(200, json=chat_completion_json(model=body["model"]))


def test_track_openai_real_sdk_client_sync_stream_and_async(tracker, home):
    transport = httpx2.MockTransport(openai_transport)
    real = openai.OpenAI(
        api_key="sk-test",
        base_url="http://llm.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )
    client = track_openai(real, tracker, feature="sdk")
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.responses.create(model="o4-mini", input="hi")
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[], stream=True, stream_options={"include_usage": True}
    )
    with stream:
        assert len([chunk for chunk in stream]) == 3

    async def run_async():
        areal = openai.AsyncOpenAI(
            api_key="sk-test",
            base_url="http://llm.test/v1",
            http_client=httpx2.AsyncClient(transport=transport),
        )
        aclient = track_openai(areal, tracker, feature="sdk-async")
        await aclient.chat.completions.create(model="gpt-4.1", messages=[])
        astream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=[], stream=True
        )
        return [chunk async for chunk in astream]

    assert len(asyncio.run(run_async())) == 3
    assert tracker.flush(5)
    got = Counter((e.feature, e.model, tuple(tokens(e).values())) for e in read_events(home))
    chat, resp = tuple(OPENAI_CHAT_TOKENS.values()), tuple(RESPONSES_TOKENS.values())
    assert got == Counter(
        {
            ("sdk", "gpt-4o", chat): 1,
            ("sdk", "o4-mini-2025-04-16", resp): 1,
            ("sdk", "gpt-4o-mini", chat): 1,
            ("sdk-async", "gpt-4.1", chat): 1,
            ("sdk-async", "gpt-4o-mini", chat): 1,
        }
    )


def anthropic_transport(request: httpx2.Request) -> httpx2.Response:
    if json.loads(request.content).get("stream"):
        events = [(e.type, e.model_dump(exclude_none=True)) for e in anthropic_events()]
        return httpx2.Response(
            200, content=sse(events), headers={"content-type": "text/event-stream"}
        )
    return httpx2.Response(200, json=anthropic_message_json())


def test_track_anthropic_real_sdk_client_and_stream(tracker, home):
    real = anthropic.Anthropic(
        api_key="k",
        base_url="http://llm.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(anthropic_transport)),
    )
    client = track_anthropic(real, tracker, feature="claude")
    message = client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[])
    assert isinstance(message, Message)
    stream = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=[], stream=True
    )
    assert [e.type for e in stream][-1] == "message_stop"
    assert tracker.flush(5)
    events = read_events(home)
    assert len(events) == 2
    assert all(tokens(e) == ANTHROPIC_TOKENS and e.feature == "claude" for e in events)


# ------------------------------------------------------------------------------------------
# concurrency: threads x processes
# ------------------------------------------------------------------------------------------

THREADS, PROCESSES, PER_THREAD = 8, 4, 200


def _record_from_threads(tracker: Tracker, process: int) -> None:
    def work(thread: int) -> None:
        for i in range(PER_THREAD):
            tracker.record(
                provider="openai",
                model="gpt-4o-mini",
                input_tokens=i,
                output_tokens=1,
                event_id=f"p{process}-t{thread}-{i}",
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # no flush/close here: a multiprocessing child leaves through os._exit, and the tracker
    # must still write its queue on the way out


def _spawned_worker(home: str, process: int) -> None:
    _record_from_threads(Tracker(home=home, feature="load", writer_id="load"), process)


_FORK_TRACKER: Tracker | None = None


def _forked_worker(process: int) -> None:
    _record_from_threads(_FORK_TRACKER, process)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_threads_times_processes_every_event_written_exactly_once(home, method):
    global _FORK_TRACKER
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    ctx = multiprocessing.get_context(method)
    expected = {
        f"p{p}-t{t}-{i}"
        for p in range(PROCESSES)
        for t in range(THREADS)
        for i in range(PER_THREAD)
    }
    parent = None
    if method == "fork":
        # the parent has a running writer and (maybe) pending events when it forks
        parent = _FORK_TRACKER = Tracker(
            home=home, feature="load", writer_id="load", flush_interval=5
        )
        for i in range(50):
            parent.record(
                provider="openai",
                model="m",
                input_tokens=1,
                output_tokens=1,
                event_id=f"parent-{i}",
            )
        expected |= {f"parent-{i}" for i in range(50)}
        procs = [ctx.Process(target=_forked_worker, args=(p,)) for p in range(PROCESSES)]
    else:
        procs = [ctx.Process(target=_spawned_worker, args=(str(home), p)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    if parent is not None:
        assert parent.close(5)
        assert parent.stats()["written"] == 50
    events = read_events(home)
    ids = Counter(e.event_id for e in events)
    assert set(ids) == expected
    assert max(ids.values()) == 1
    names = {path.name for path in landing_files(home)}
    assert len(names) == PROCESSES + (method == "fork")  # one file per process
    assert all(name.startswith("load-") and name.endswith(".jsonl") for name in names)


# ------------------------------------------------------------------------------------------
# failures never reach the application
# ------------------------------------------------------------------------------------------


def record_many(tracker: Tracker, n: int) -> list[str | None]:
    return [
        tracker.record(provider="openai", model="gpt-4o", input_tokens=5, output_tokens=1)
        for _ in range(n)
    ]


def test_landing_folder_unusable_drops_and_warns_once(home, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    home.mkdir(parents=True)
    (home / "landing").write_text("a file where the landing folder should be")
    t = Tracker(home=home, feature="f", flush_interval=0.02)
    try:
        ids = record_many(t, 30)
        assert t.flush(5)
        ids += record_many(t, 20)  # a second batch fails too
        assert t.flush(5)
        assert all(ids)  # the application was never told
        stats = t.stats()
        assert stats["recorded"] == 50 and stats["written"] == 0 and stats["dropped"] == 50
        assert stats["dropped_by_reason"] == {"write_failed": 50}
        assert "cannot write" in stats["last_error"] and str(home) in stats["last_error"]
        assert len(spendwatch_warnings(caplog)) == 1
    finally:
        t.close()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores chmod")
def test_read_only_landing_folder(home, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    landing = home / "landing" / "calls"
    landing.mkdir(parents=True)
    landing.chmod(0o555)
    t = Tracker(home=home, feature="f", flush_interval=0.02)
    try:
        assert all(record_many(t, 10))
        assert t.flush(5)
        assert t.stats()["dropped_by_reason"] == {"write_failed": 10}
        assert len(spendwatch_warnings(caplog)) == 1
    finally:
        landing.chmod(0o755)
        t.close()


def test_disk_failure_mid_write_leaves_only_whole_lines(tracker, home, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    record_many(tracker, 5)
    assert tracker.flush(5)
    real_write_all = writer_mod._write_all

    def disk_full(fd, data):  # half the batch reaches the disk, then ENOSPC
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer_mod, "_write_all", disk_full)
    assert all(record_many(tracker, 7))
    assert tracker.flush(5)
    monkeypatch.setattr(writer_mod, "_write_all", real_write_all)
    record_many(tracker, 3)  # the disk recovered
    assert tracker.flush(5)
    stats = tracker.stats()
    assert (stats["written"], stats["dropped"]) == (8, 7)
    assert "No space left" in stats["last_error"]
    assert len(read_events(home)) == 8  # every line whole and parseable
    assert len(spendwatch_warnings(caplog)) == 1


def test_full_queue_never_blocks_and_counts_drops(home, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, logger="spendwatch.tracker")
    entered, release = threading.Event(), threading.Event()
    real_append = writer_mod._append_lines

    def stuck_disk(path, data):
        entered.set()
        release.wait(30)
        real_append(path, data)

    monkeypatch.setattr(writer_mod, "_append_lines", stuck_disk)
    t = Tracker(home=home, feature="f", queue_size=10, flush_interval=0.01)
    try:
        record_many(t, 1)
        assert entered.wait(10), "the writer never started writing"
        app = threading.Thread(target=record_many, args=(t, 1000))
        app.start()
        app.join(10)
        assert not app.is_alive(), "record() blocked on a full queue"
        stats = t.stats()
        assert (stats["recorded"], stats["dropped"], stats["pending"]) == (1001, 990, 10)
        assert stats["dropped_by_reason"] == {"queue_full": 990}
        assert len(spendwatch_warnings(caplog)) == 1
        release.set()
        assert t.flush(10)
        assert t.stats()["written"] == 11
        assert len(read_events(home)) == 11
    finally:
        release.set()
        t.close()


def test_records_after_close_are_dropped_not_raised(tracker, home):
    tracker.record(provider="openai", model="m", input_tokens=1, output_tokens=1)
    assert tracker.close(5)
    assert tracker.record(provider="openai", model="m", input_tokens=1, output_tokens=1) is None
    stats = tracker.stats()
    assert (stats["written"], stats["dropped_by_reason"]) == (1, {"closed": 1})
    assert len(read_events(home)) == 1


def test_events_are_written_at_interpreter_exit(tmp_path):
    code = (
        "from spendwatch.tracker import Tracker\n"
        f"t = Tracker(home={str(tmp_path)!r}, feature='exit', flush_interval=60)\n"
        "for i in range(100):\n"
        "    t.record(provider='openai', model='m', input_tokens=i, output_tokens=0)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=ROOT)
    assert len(read_events(tmp_path)) == 100


def test_importing_the_tracker_stays_light():
    code = (
        "import sys, spendwatch, spendwatch.tracker, spendwatch.otel\n"
        "heavy = {'dagster', 'dbt', 'pandas', 'numpy', 'openai', 'anthropic'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "[]"
