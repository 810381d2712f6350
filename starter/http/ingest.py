"""Segment-compatible ingestion: POST /v1/identify, /v1/track, /v1/page, /v1/screen,
/v1/group, /v1/alias (32 KB each) and /v1/batch (500 KB).

The write key is checked before the body is read, and the body is read within Segment's
size limits (``body``); only then is it parsed and validated (``segment``). The routes
declare no body parameter, so FastAPI reads nothing on its own; the schema of each body is
documented in OpenAPI through ``REQUEST_BODIES``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from starter.api import Journeys
from starter.http.body import BATCH_LIMIT, CALL_LIMIT, authenticated_json, too_large
from starter.http.deps import CallInvalid, JourneysDep, SettingsDep, invalid
from starter.http.segment import (
    UNUSED,
    BatchCall,
    IdentifyBody,
    Ignored,
    Prepared,
    TrackBody,
    UnusedBody,
    prepare_call,
)
from starter.ingest.service import (
    EmailRequired,
    EventResult,
    Ingest,
    UnknownCustomer,
    settled_together,
)

router = APIRouter(prefix="/v1", tags=["ingestion"])
_UNKNOWN = "unknown_customer"
# OpenAPI: each route's body and the write key's schemes (components added in create_app).
REQUEST_BODIES: dict[str, type[BaseModel]] = {
    "IdentifyBody": IdentifyBody,
    "TrackBody": TrackBody,
    "UnusedBody": UnusedBody,
    "BatchCall": BatchCall,
}
WRITE_KEY_SCHEMES = {
    "writeKeyBasic": {"type": "http", "scheme": "basic", "description": "the write key as user"},
    "writeKeyBearer": {"type": "http", "scheme": "bearer"},
}


def _documented(model: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{model}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "security": [{name: []} for name in WRITE_KEY_SCHEMES],
        "responses": {
            "401": {"description": "missing or wrong write key (the body was not read)"},
            "413": {"description": "over 32 KB per call or 500 KB per batch (after gzip too)"},
            "422": {"description": "a field is wrong: `detail` names it"},
        },
    }


class Accepted(BaseModel):
    success: bool = True
    duplicate: bool
    action: str


class BatchAccepted(BaseModel):
    success: bool = True
    results: list[Accepted]


@router.post("/identify", openapi_extra=_documented("IdentifyBody"))
async def identify(request: Request, j: JourneysDep, settings: SettingsDep) -> Accepted:
    """Create or update a customer (traits: email, firstName, lastName, timezone, ...; in
    ``traits`` or ``context.traits``)."""
    return await _single(request, j, settings.api_write_key, "identify")


@router.post("/track", openapi_extra=_documented("TrackBody"))
async def track(request: Request, j: JourneysDep, settings: SettingsDep) -> Accepted:
    """Record an event and route it to the journeys it starts or signals."""
    return await _single(request, j, settings.api_write_key, "track")


def _unused_route(kind: str) -> None:
    async def unused(request: Request, j: JourneysDep, settings: SettingsDep) -> Accepted:
        return await _single(request, j, settings.api_write_key, kind)

    unused.__doc__ = f"Accepted and not used: the answer's action says so ({kind} calls)."
    router.add_api_route(
        f"/{kind}",
        unused,
        methods=["POST"],
        name=kind,
        openapi_extra=_documented("UnusedBody"),
    )


for _kind in UNUSED:
    _unused_route(_kind)


async def _single(request: Request, j: Journeys, write_key: str, kind: str) -> Accepted:
    data = await authenticated_json(request, limit=CALL_LIMIT, write_key=write_key)
    prepared = prepare_call(data, kind)
    if isinstance(prepared, Ignored):
        return Accepted(duplicate=False, action=prepared.action)
    return _accepted(await _run(j.ingest, prepared, ("body",)))


@router.post("/batch", openapi_extra=_documented("BatchCall"))
async def batch(request: Request, j: JourneysDep, settings: SettingsDep) -> BatchAccepted:
    """Up to API_BATCH_MAX calls. All are validated first (including that each customer
    exists or is identified earlier in the batch); one bad call rejects the whole batch
    with 422 naming it, and nothing is recorded. Calls we do not use (page, screen, group,
    alias, anonymous) are answered "ignored: ..." and cost the batch nothing. Then the
    calls run in order in one transaction (one that fails rolls the batch back whole),
    and their journeys are started or signalled together after the commit (the answer
    waits for that a moment at most)."""
    data = await authenticated_json(request, limit=BATCH_LIMIT, write_key=settings.api_write_key)
    calls = _calls(data, settings.api_batch_max)
    sent_at = {"sentAt": data["sentAt"]} if "sentAt" in data else {}  # the batch's, for each
    prepared = [
        prepare_call({**sent_at, **c} if isinstance(c, dict) else c, None, ("body", "batch", i))
        for i, c in enumerate(calls)
    ]
    await _all_known(j, prepared)

    def one(i: int, p: Prepared | Ignored) -> Callable[[], Awaitable[EventResult]]:
        async def run() -> EventResult:
            if isinstance(p, Ignored):
                return EventResult(recorded=True, action=p.action)
            return await _run(j.ingest, p, ("body", "batch", i))

        return run

    # one transaction for the calls; their journeys started or signalled together after it
    named = {p.customer_id for p in prepared if isinstance(p, Prepared)}
    found = await settled_together(
        j.ingest, [one(i, p) for i, p in enumerate(prepared)], customers=named
    )
    return BatchAccepted(results=[_accepted(r) for r in found])


def _calls(data: Any, most: int) -> list[Any]:
    """The batch's calls: a list of at most ``most``, each within Segment's 32 KB per call;
    checked before any call is validated."""
    calls = data.get("batch") if isinstance(data, dict) else None
    if not isinstance(calls, list) or not calls:
        raise CallInvalid(
            [
                {
                    "loc": ["body", "batch"],
                    "msg": 'a batch is a JSON object with a non-empty list of calls in "batch"',
                    "type": "missing" if calls is None else "list_type",
                }
            ]
        )
    if len(calls) > most:
        raise CallInvalid(
            [
                {
                    "loc": ["body", "batch"],
                    "msg": f"at most {most} calls per batch, got {len(calls)}",
                    "type": "too_long",
                }
            ]
        )
    for i, call in enumerate(calls):
        if len(json.dumps(call, separators=(",", ":")).encode()) > CALL_LIMIT:
            raise too_large(CALL_LIMIT, f"call {i} of the batch")
    return calls


async def _all_known(j: Journeys, prepared: list[Prepared | Ignored]) -> None:
    """Every call's customer exists, or an identify earlier in the batch introduces it."""
    used = [p for p in prepared if isinstance(p, Prepared)]
    known = await j.known_customers({p.customer_id for p in used})
    for i, p in enumerate(prepared):
        if isinstance(p, Ignored):
            continue
        if p.introduces:
            known.add(p.customer_id)
        elif p.customer_id not in known:
            msg = f"unknown customer {p.customer_id!r}: identify it (with an email) before "
            raise invalid(["body", "batch", i, "userId"], msg + "or earlier in the batch", _UNKNOWN)


async def _run(ingest: Ingest, prepared: Prepared, loc: tuple[Any, ...]) -> EventResult:
    try:
        return await prepared.run(ingest)
    except UnknownCustomer as exc:
        raise _unknown(loc, exc) from exc


def _accepted(result: EventResult) -> Accepted:
    return Accepted(duplicate=result.duplicate, action=result.action)


def _unknown(loc: tuple[Any, ...], exc: UnknownCustomer) -> CallInvalid:
    if isinstance(exc, EmailRequired):
        return invalid([*loc, "traits", "email"], str(exc), "missing")
    return invalid([*loc, "userId"], str(exc), _UNKNOWN)
