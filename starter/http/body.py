"""The body of an ingestion call, read the way a hostile client cannot abuse.

Order: the write key in a header is checked before a byte of the body is read; then the
size (Content-Length, then while streaming, then after gzip while inflating), then JSON,
then how deep it nests. Without a header the key must be in the body (``writeKey``, as
Segment's libraries also send it), so such a body is read, but never past the size limit,
and anything wrong with it answers 401: nothing is said about a body from an unknown sender.

Limits are Segment's for its HTTP API: 32 KB per call, 500 KB per batch request.
"""

from __future__ import annotations

import hmac
import json
import zlib
from typing import Any

from fastapi import HTTPException, Request

from starter.http.deps import CallInvalid, header_write_key, invalid, unauthorized

KB = 1024
CALL_LIMIT = 32 * KB  # one call: /v1/identify, /v1/track, ... and each call of a batch
BATCH_LIMIT = 500 * KB  # one /v1/batch request
MAX_DEPTH = 32  # objects and arrays nested in one another, the body itself counting as 1
GZIP = ("gzip", "x-gzip")


async def authenticated_json(request: Request, *, limit: int, write_key: str) -> Any:
    """The parsed body of a call from a sender holding ``write_key`` (401, 413, 415, 400,
    422 otherwise: see the module's docstring for the order)."""
    key = header_write_key(request)
    if key is not None:
        if not _same(key, write_key):
            raise unauthorized()
        return parse(await read_limited(request, limit))
    try:  # no key in a header: it must be in the body, and nothing else is said
        data = parse(await read_limited(request, limit))
    except (HTTPException, CallInvalid) as exc:
        raise unauthorized() from exc
    body_key = data.get("writeKey") if isinstance(data, dict) else None
    if not isinstance(body_key, str) or not _same(body_key, write_key):
        raise unauthorized()
    return data


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def too_large(limit: int, what: str = "the body") -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"{what} is over {limit // KB} KB, the most this endpoint takes (Segment's "
        "limits: 32 KB per call, 500 KB per batch); split it into smaller batches",
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, decoded from gzip if so sent, refused (413) past ``limit`` bytes before
    and after decoding: a declared length is believed only to refuse early."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(status_code=400, detail="Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity", *GZIP):
        raise HTTPException(
            status_code=415,
            detail=f"Content-Encoding {encoding!r} is not supported: send gzip or plain JSON",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    return gunzip(raw, limit) if encoding in GZIP else raw


def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate gzip members, never past ``limit`` bytes of output (a small bomb stays small)."""
    out = bytearray()
    rest = data
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise HTTPException(
                status_code=400, detail="Content-Encoding is gzip but the body is not gzip data"
            ) from exc
        if len(out) > limit:
            raise too_large(limit, "the body inflated from gzip")
        if not inflater.eof:
            raise HTTPException(status_code=400, detail="the gzip body is cut short")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # some writers pad the end with zero bytes
            return bytes(out)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(raw: bytes) -> Any:
    """JSON (no NaN or Infinity), nested at most MAX_DEPTH deep; else CallInvalid (422)."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError as exc:
        raise _too_deep(["body"]) from exc
    except json.JSONDecodeError as exc:
        raise invalid(["body", exc.pos], f"JSON decode error: {exc.msg}", "json_invalid") from exc
    except ValueError as exc:  # not UTF-8, NaN, a number too long to read
        raise invalid(["body"], f"JSON decode error: {exc}", "json_invalid") from exc
    if (where := too_deep(data)) is not None:
        raise _too_deep(where)
    return data


def too_deep(data: Any, limit: int = MAX_DEPTH) -> list[Any] | None:
    """Where ``data`` first nests deeper than ``limit`` (["body", "properties", ...]), or None."""
    stack: list[tuple[Any, list[Any]]] = [(data, ["body"])]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if len(where) > limit:
            return where
        stack.extend((v, [*where, k]) for k, v in items if isinstance(v, dict | list))
    return None


def _too_deep(where: list[Any]) -> CallInvalid:
    return invalid(where, f"nested deeper than {MAX_DEPTH} objects and arrays", "too_deep")
