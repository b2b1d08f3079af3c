"""OTLP/JSON decoding: trace-export files (a JSON document or JSON lines, optionally gzip) into
their spans with plain attribute dicts. Knows nothing of GenAI or call events."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "attributes", "field", "hex_id", "read_requests", "spans", "status_code", "zstd_frames",
]  # fmt: skip


def field(obj: dict, camel: str) -> Any:
    """OTLP JSON uses lowerCamelCase; protobuf JSON parsers also accept the snake_case names."""
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_HEX = re.compile(r"[0-9a-fA-F]*")
#: Span status codes: the enum's names (protobuf's JSON mapping) and numbers (the Collector's).
_STATUS_CODES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def hex_id(value: Any, size: int, name: str = "id") -> str:
    """A trace id (`size` 16) or span id (8) as the spec writes it: lower-case hex.

    The OTLP/JSON spec and the Collector's file exporter write ids as hex; protobuf's JSON mapping
    (`MessageToJson`, what SDK-side tools produce) writes the same bytes in base64. The two are
    told apart by length (hex: 2 × size characters; base64: 4 × ceil(size / 3)), so an id reads
    the same whichever way it was exported. "" (no parent) stays "". Raises ValueError otherwise.
    """
    if value is None or value == "":
        return ""
    text = str(value).strip()
    if len(text) == 2 * size and _HEX.fullmatch(text):
        raw = bytes.fromhex(text)
    else:
        try:
            padded = text + "=" * (-len(text) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != size:
            raise ValueError(
                f"{name} {text!r} is neither {2 * size} hex digits nor base64 of {size} bytes"
            )
    if not any(raw):
        raise ValueError(f"{name} is all zeros (an invalid id in OpenTelemetry)")
    return raw.hex()


def status_code(span: dict) -> int:
    """The span's status code as a number (0 unset, 1 ok, 2 error), from a name or a number."""
    code = (field(span, "status") or {}).get("code")
    if code in (None, ""):
        return 0
    if isinstance(code, str) and code.upper() in _STATUS_CODES:
        return _STATUS_CODES[code.upper()]
    try:
        return int(code)
    except (TypeError, ValueError):
        raise ValueError(f"status code {code!r} is not a StatusCode name or number") from None


def _any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "bytesValue"):
        got = field(value, kind)
        if got is not None:
            return got
    got = field(value, "intValue")
    if got is not None:
        return int(got)  # a string in OTLP JSON (64-bit integers)
    got = field(value, "doubleValue")
    if got is not None:
        return float(got)
    array = field(value, "arrayValue")
    if array is not None:
        return [_any_value(v) for v in array.get("values", [])]
    kvlist = field(value, "kvlistValue")
    if kvlist is not None:
        return attributes(kvlist.get("values", []))
    return None


def attributes(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        if isinstance(item, dict) and "key" in item:
            out[item["key"]] = _any_value(item.get("value"))
    return out


def is_zstd_framed(stream: bytes) -> bool:
    """The Collector's file exporter with `compression: zstd`: each request compressed, behind
    its length as 4 big-endian bytes."""
    return len(stream) >= 8 and stream[4:8] == ZSTD_MAGIC


def zstd_frames(stream: bytes) -> tuple[list[tuple[int, int, bytes]], bool]:
    """(start, end, decompressed request) of every whole frame, and whether a partial one
    follows (a file still being written)."""
    try:
        import zstandard
    except ImportError:
        raise ValueError(
            "a zstd-compressed Collector export: install zstandard (`pip install zstandard`, "
            "part of spendwatch[warehouse])"
        ) from None
    frames, position = [], 0
    decompressor = zstandard.ZstdDecompressor()
    while position + 4 <= len(stream):
        end = position + 4 + int.from_bytes(stream[position : position + 4], "big")
        if end > len(stream):
            break
        try:
            payload = decompressor.decompressobj().decompress(stream[position + 4 : end])
        except zstandard.ZstdError as exc:
            raise ValueError(f"damaged zstd frame at byte {position}: {exc}") from None
        frames.append((position, end, payload))
        position = end
    return frames, position < len(stream)


def read_requests(data: bytes) -> list[dict]:
    """ExportTraceServiceRequest objects from one file: a JSON document or JSON lines, or the
    Collector's zstd frames; any of them may be gzipped."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if is_zstd_framed(data):
        frames, partial = zstd_frames(data)
        if partial:
            raise ValueError("its last zstd frame is incomplete (still being written?)")
        data = b"\n".join(payload for _, _, payload in frames)
    text = data.decode("utf-8-sig")
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        document = None
        requests = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    requests.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"line {number} is not JSON: {exc.msg}") from None
    else:
        requests = document if isinstance(document, list) else [document]
    for request in requests:
        if not isinstance(request, dict) or field(request, "resourceSpans") is None:
            raise ValueError(
                "not an OTLP/JSON trace export (expected objects with resourceSpans); export "
                "spans with the OpenTelemetry collector's file exporter or an OTLP/JSON exporter"
            )
    return requests


def spans(requests: Iterable[dict]) -> Iterator[tuple[dict, dict]]:
    """(span, resource attributes) for every span of the export."""
    for request in requests:
        for resource_spans in field(request, "resourceSpans") or ():
            resource = attributes((field(resource_spans, "resource") or {}).get("attributes"))
            scopes = field(resource_spans, "scopeSpans")
            if scopes is None:
                scopes = field(resource_spans, "instrumentationLibrarySpans") or ()
            for scope_spans in scopes:
                for span in field(scope_spans, "spans") or ():
                    if isinstance(span, dict):
                        yield span, resource
