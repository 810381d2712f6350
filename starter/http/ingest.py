"""Segment-compatible ingestion: POST /v1/identify, /v1/track, /v1/batch (write key as
HTTP Basic user or Bearer token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from starter.api import Journeys
from starter.http.deps import JourneysDep, SettingsDep, write_key
from starter.http.segment import (
    BatchCall,
    CallInvalid,
    IdentifyCall,
    Prepared,
    TrackCall,
    prepare,
)
from starter.ingest.service import EmailRequired, EventResult, Ingest, UnknownCustomer

router = APIRouter(prefix="/v1", tags=["ingestion"], dependencies=[Depends(write_key)])


class Accepted(BaseModel):
    success: bool = True
    duplicate: bool
    action: str


class BatchAccepted(BaseModel):
    success: bool = True
    results: list[Accepted]


@router.post("/identify")
async def identify(call: IdentifyCall, j: JourneysDep) -> Accepted:
    """Create or update a customer (traits: email, firstName, lastName, timezone, ...)."""
    return await _run(j.ingest, prepare(call), ("body",))


@router.post("/track")
async def track(call: TrackCall, j: JourneysDep) -> Accepted:
    """Record an event and route it to the journeys it starts or signals."""
    return await _run(j.ingest, prepare(call), ("body",))


@router.post("/batch")
async def batch(call: BatchCall, j: JourneysDep, settings: SettingsDep) -> BatchAccepted:
    """Up to API_BATCH_MAX calls. All are validated first (including that each customer
    exists or is identified earlier in the batch); one bad call rejects the whole batch
    with 422 naming it, and nothing is recorded. Then they run in order."""
    if len(call.batch) > settings.api_batch_max:
        raise CallInvalid(
            [
                {
                    "loc": ["body", "batch"],
                    "msg": f"at most {settings.api_batch_max} calls per batch, "
                    f"got {len(call.batch)}",
                    "type": "too_long",
                }
            ]
        )
    prepared = [prepare(c, ("body", "batch", i)) for i, c in enumerate(call.batch)]
    await _all_known(j, prepared)
    return BatchAccepted(
        results=[await _run(j.ingest, p, ("body", "batch", i)) for i, p in enumerate(prepared)]
    )


async def _all_known(j: Journeys, prepared: list[Prepared]) -> None:
    """Every call's customer exists, or an identify earlier in the batch introduces it."""
    known = await j.known_customers({p.customer_id for p in prepared})
    for i, p in enumerate(prepared):
        if p.introduces:
            known.add(p.customer_id)
        elif p.customer_id not in known:
            raise CallInvalid(
                [
                    {
                        "loc": ["body", "batch", i, "userId"],
                        "msg": f"unknown customer {p.customer_id!r}: identify it (with an "
                        "email) before or earlier in the batch",
                        "type": "unknown_customer",
                    }
                ]
            )


async def _run(ingest: Ingest, prepared: Prepared, loc: tuple[Any, ...]) -> Accepted:
    try:
        result: EventResult = await prepared.run(ingest)
    except UnknownCustomer as exc:
        raise _unknown(loc, exc) from exc
    return Accepted(duplicate=result.duplicate, action=result.action)


def _unknown(loc: tuple[Any, ...], exc: UnknownCustomer) -> CallInvalid:
    if isinstance(exc, EmailRequired):
        return CallInvalid([{"loc": [*loc, "traits", "email"], "msg": str(exc), "type": "missing"}])
    return CallInvalid([{"loc": [*loc, "userId"], "msg": str(exc), "type": "unknown_customer"}])
