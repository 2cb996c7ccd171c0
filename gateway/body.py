"""Reading request bodies within limits: size caps enforced while the stream arrives.

Mobile SDKs post gzip bodies with chunked transfer encoding (no Content-Length), so limits are
checked on the bytes as they arrive and on the *inflated* size while inflating: a gzip bomb is
stopped at the limit, never fully expanded.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from feedhouse.http import HttpError

# analytics.js posts JSON as text/plain to avoid a CORS preflight; some clients send no type.
ACCEPTED_CONTENT_TYPES = frozenset({"", "application/json", "text/plain", "application/x-json"})
# A compressed body larger than the inflated limit plus gzip framing cannot be valid.
_COMPRESSED_SLACK = 1024


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "request_too_large", f"request body exceeds {limit} bytes")


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ACCEPTED_CONTENT_TYPES and not media_type.endswith("+json"):
        raise HttpError(
            415,
            "unsupported_content_type",
            f"Content-Type {media_type!r} is not supported; send application/json",
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, inflated when gzip/deflate encoded, never more than ``limit`` bytes."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding in ("identity", ""):
        inflater = None
    else:
        raise HttpError(
            415, "unsupported_content_encoding", f"Content-Encoding {encoding!r} is not supported"
        )

    raw_limit = limit + _COMPRESSED_SLACK if inflater else limit
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpError(400, "invalid_content_length", "Content-Length is not a number")
        if int(declared) > raw_limit:
            raise _too_large(limit)

    chunks: list[bytes] = []
    received = 0
    produced = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > raw_limit:
                raise _too_large(limit)
            if inflater is None:
                chunks.append(chunk)
                continue
            data = chunk
            while data:
                out = inflater.decompress(data, limit + 1 - produced)
                produced += len(out)
                if produced > limit:
                    raise _too_large(limit)
                chunks.append(out)
                data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise HttpError(400, "invalid_compression", f"body is not valid {encoding}: {exc}") from None
    except ClientDisconnect:
        raise HttpError(400, "client_disconnected", "the client closed the connection mid-body") from None
    if inflater is not None:
        try:
            tail = inflater.flush()
        except zlib.error as exc:
            raise HttpError(400, "invalid_compression", f"body is not valid {encoding}: {exc}") from None
        if produced + len(tail) > limit:
            raise _too_large(limit)
        chunks.append(tail)
        if not inflater.eof:
            raise HttpError(400, "invalid_compression", f"{encoding} body is truncated")
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise HttpError(400, "invalid_json", "request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    check_content_type(request)
    value = parse_json(await read_body(request, limit))
    if not isinstance(value, dict):
        raise HttpError(400, "invalid_json", "request body must be a JSON object")
    return value
