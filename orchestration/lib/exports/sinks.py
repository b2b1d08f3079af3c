"""Where points go: Datadog's metrics intake and CloudWatch's PutMetricData.

A sink splits the points into batches within its API's limits, sends them in order and returns
one `BatchResult` per batch (accepted, or the far end's error). It never raises for what the far
end does; after an error that says the endpoint is down or refuses this client as a whole
(network error, 5xx, 429, 401/403, no AWS credentials or region) it stops and reports the
remaining batches as not sent, so a dead endpoint is not hammered and the run ends quickly. A
batch refused on its own (400, 413, a CloudWatch parameter error) does not stop the others.

Datadog — `POST <base>/api/v2/series` with the `DD-API-KEY` header. Each point is a gauge
(`type: 3`) at the hour's start (epoch seconds) with the tags feature, model, provider,
environment (and `env`, Datadog's reserved tag for the environment, token_type for
`llm.tokens`); no host (these are not host metrics). The body is deflate-compressed
(`Content-Encoding: deflate`): at most 512,000 bytes compressed and 5,242,880 decompressed per
payload, Datadog's documented limits. A gauge resent at the same timestamp and tags replaces
the earlier value.

CloudWatch — `PutMetricData` through boto3 (credentials and region the usual boto3 way): at
most 1,000 metric data per request and 1 MB per request (the current limits; the request is
smaller than our estimate, which counts its JSON), 5 dimensions of the 30 allowed, timestamp =
the hour's start, standard resolution.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from orchestration.lib.exports.figures import METRICS, Point
from spendwatch.config import ExportSettings

log = logging.getLogger("spendwatch.exports")
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True)
class BatchResult:
    points: Sequence[Point]
    error: str | None = None  # None = accepted (not yet redacted: the caller redacts)

    @property
    def accepted(self) -> bool:
        return self.error is None


class Sink(Protocol):
    destination: str

    @property
    def target(self) -> str: ...

    def send(self, points: Sequence[Point]) -> list[BatchResult]: ...


def short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _not_sent(batches: Sequence[Sequence[Point]], why: str) -> list[BatchResult]:
    return [BatchResult(b, f"not sent: {why}") for b in batches]


# --- Datadog ------------------------------------------------------------------------------------

#: Datadog's documented payload limits for /api/v2/series
DATADOG_MAX_COMPRESSED = 512_000
DATADOG_MAX_DECOMPRESSED = 5_242_880
GAUGE = 3


def datadog_series(point: Point) -> dict[str, Any]:
    tags = [f"{k}:{v}" for k, v in point.dimensions().items()]
    tags.append(f"env:{point.environment}")
    return {
        "metric": point.metric,
        "type": GAUGE,
        "points": [{"timestamp": point.timestamp, "value": point.value}],
        "tags": tags,
    }


class DatadogSink:
    destination = "datadog"

    def __init__(
        self,
        api_key: str,
        base_url: str,
        *,
        max_compressed: int = DATADOG_MAX_COMPRESSED,
        max_decompressed: int = DATADOG_MAX_DECOMPRESSED,
    ) -> None:
        self._api_key = api_key
        self.url = f"{base_url.rstrip('/')}/api/v2/series"
        self.max_compressed = max_compressed
        self.max_decompressed = max_decompressed

    @property
    def target(self) -> str:
        return self.url

    def __repr__(self) -> str:  # never the key
        return f"DatadogSink({self.url!r})"

    def payloads(self, points: Sequence[Point]) -> list[tuple[list[Point], bytes]]:
        """(points, compressed body) per request, each within both payload limits."""
        encoded = [
            (p, json.dumps(datadog_series(p), separators=(",", ":")).encode()) for p in points
        ]
        head, tail = b'{"series":[', b"]}"
        out: list[tuple[list[Point], bytes]] = []

        def emit(chunk: list[tuple[Point, bytes]]) -> None:
            body = head + b",".join(raw for _, raw in chunk) + tail
            packed = zlib.compress(body, 6)
            if len(packed) > self.max_compressed and len(chunk) > 1:
                half = len(chunk) // 2
                emit(chunk[:half])
                emit(chunk[half:])
            else:
                out.append(([p for p, _ in chunk], packed))

        chunk: list[tuple[Point, bytes]] = []
        size = len(head) + len(tail)
        for item in encoded:
            extra = len(item[1]) + (1 if chunk else 0)
            if chunk and size + extra > self.max_decompressed:
                emit(chunk)
                chunk, size = [], len(head) + len(tail)
                extra = len(item[1])
            chunk.append(item)
            size += extra
        if chunk:
            emit(chunk)
        return out

    def send(self, points: Sequence[Point]) -> list[BatchResult]:
        payloads = self.payloads(points)
        results: list[BatchResult] = []
        headers = {
            "DD-API-KEY": self._api_key,
            "Content-Type": "application/json",
            "Content-Encoding": "deflate",
            "Accept": "application/json",
        }
        transport = httpx.HTTPTransport(retries=1)  # one more try of a refused connection
        with httpx.Client(timeout=HTTP_TIMEOUT, transport=transport) as client:
            for i, (batch, body) in enumerate(payloads):
                try:
                    response = client.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    results.append(BatchResult(batch, error))
                    results += _not_sent([b for b, _ in payloads[i + 1 :]], error)
                    break
                if response.status_code == 202 or 200 <= response.status_code < 300:
                    results.append(BatchResult(batch))
                    continue
                error = f"HTTP {response.status_code}: {short(response.text)}"
                results.append(BatchResult(batch, error))
                if response.status_code in (401, 403, 408, 429) or response.status_code >= 500:
                    results += _not_sent([b for b, _ in payloads[i + 1 :]], error)
                    break
        return results


# --- CloudWatch ---------------------------------------------------------------------------------

#: PutMetricData's limits: 1,000 metric data and 1 MB per request
CLOUDWATCH_MAX_DATA = 1000
CLOUDWATCH_MAX_BYTES = 1_000_000
_UNITS = {(m.name, m.token_type): m.cloudwatch_unit for m in METRICS}
#: errors that concern one request's data; anything else stops the run's sending
_PER_BATCH_CODES = ("InvalidParameterValue", "InvalidParameterCombination", "MissingParameter")


def cloudwatch_datum(point: Point) -> dict[str, Any]:
    return {
        "MetricName": point.metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in point.dimensions().items()],
        "Timestamp": datetime.fromtimestamp(point.timestamp, UTC),
        "Value": point.value,
        "Unit": _UNITS[(point.metric, point.token_type)],
        "StorageResolution": 60,
    }


class CloudWatchSink:
    destination = "cloudwatch"

    def __init__(
        self,
        namespace: str,
        endpoint_url: str | None = None,
        *,
        max_data: int = CLOUDWATCH_MAX_DATA,
        max_bytes: int = CLOUDWATCH_MAX_BYTES,
    ) -> None:
        self.namespace = namespace
        self.endpoint_url = endpoint_url
        self.max_data = max_data
        self.max_bytes = max_bytes

    @property
    def target(self) -> str:
        where = self.endpoint_url or "AWS"
        return f"namespace {self.namespace} at {where}"

    def batches(self, points: Sequence[Point]) -> Iterator[list[Point]]:
        batch: list[Point] = []
        size = 0
        for p in points:
            datum = cloudwatch_datum(p)
            extra = len(json.dumps(datum, default=str)) + 64  # field names, framing: generous
            if batch and (len(batch) >= self.max_data or size + extra > self.max_bytes):
                yield batch
                batch, size = [], 0
            batch.append(p)
            size += extra
        if batch:
            yield batch

    def client(self):
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30
        )
        return boto3.client("cloudwatch", endpoint_url=self.endpoint_url, config=config)

    def send(self, points: Sequence[Point]) -> list[BatchResult]:
        from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

        batches = list(self.batches(points))
        try:
            client = self.client()
        except NoRegionError:
            return _not_sent(batches, "no AWS region: set AWS_DEFAULT_REGION (or a region in "
                                      "the AWS profile, ~/.aws/config)")  # fmt: skip
        except BotoCoreError as exc:
            return _not_sent(batches, f"{type(exc).__name__}: {exc}")
        results: list[BatchResult] = []
        for i, batch in enumerate(batches):
            try:
                client.put_metric_data(
                    Namespace=self.namespace, MetricData=[cloudwatch_datum(p) for p in batch]
                )
            except ClientError as exc:
                error = short(str(exc))
                results.append(BatchResult(batch, error))
                if exc.response.get("Error", {}).get("Code") not in _PER_BATCH_CODES:
                    results += _not_sent(batches[i + 1 :], error)
                    break
                continue
            except BotoCoreError as exc:  # no credentials, endpoint unreachable, timeouts
                error = short(f"{type(exc).__name__}: {exc}")
                results.append(BatchResult(batch, error))
                results += _not_sent(batches[i + 1 :], error)
                break
            results.append(BatchResult(batch))
        return results


def make_sink(destination: str, settings: ExportSettings) -> Sink:
    missing = settings.missing(destination)
    if missing:
        raise ValueError(f"the {destination} export is not configured: {missing}")
    if destination == "datadog":
        assert settings.datadog_api_key
        return DatadogSink(settings.datadog_api_key, settings.datadog_url)
    assert settings.cloudwatch_namespace
    return CloudWatchSink(settings.cloudwatch_namespace, settings.cloudwatch_endpoint_url)
