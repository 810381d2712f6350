"""Segment's call envelope (https://segment.com/docs/connections/spec/) and how a call
becomes an event of the table, validated before anything is recorded.

The envelope fields we do not use (context, integrations, anonymousId, sentAt, ...) are
accepted and ignored, so a shop already emitting Segment events can point them here as
they are. The event itself (traits, properties) is validated once, by its model; an error
names the field where the caller wrote it (``body.properties.order_id``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from starter.ingest import profiles
from starter.ingest.events import ENVELOPE, FROM_SEGMENT, Id, Identify, Timestamp
from starter.ingest.service import EventResult, Ingest
from starter.ingest.table import EVENTS, other, ready

T = TypeVar("T")
_LOOSE = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)
# Our names of the envelope's fields -> Segment's.
SEGMENT_NAMES = {"customer_id": "userId", "message_id": "messageId", "occurred_at": "timestamp"}


class _Call(BaseModel):
    model_config = _LOOSE

    user_id: Id = Field(validation_alias=AliasChoices("userId", "user_id"))
    message_id: str | None = Field(
        None, min_length=1, max_length=200, validation_alias=AliasChoices("messageId", "message_id")
    )
    timestamp: Timestamp | None = None

    def envelope(self) -> dict[str, Any]:
        out: dict[str, Any] = {"customer_id": self.user_id, "message_id": self.message_id}
        if self.timestamp is not None:
            out["occurred_at"] = self.timestamp
        return out


class IdentifyCall(_Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(_Call):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] = Field(default_factory=dict)


Call = Annotated[IdentifyCall | TrackCall, Field(discriminator="type")]


class BatchCall(BaseModel):
    model_config = _LOOSE

    batch: list[Call] = Field(min_length=1)


class CallInvalid(Exception):
    """A call that must not be recorded; ``errors`` are FastAPI-style {loc, msg, type}."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass(frozen=True)
class Prepared:
    """A validated call, ready to run on the ingestion service."""

    customer_id: str
    introduces: bool  # an identify with an email: the customer exists after it
    run: Callable[[Ingest], Awaitable[EventResult]]


def prepare(call: IdentifyCall | TrackCall, loc: tuple[Any, ...] = ("body",)) -> Prepared:
    """Validate everything a call needs before anything is recorded."""
    envelope = call.envelope()
    if isinstance(call, IdentifyCall):
        identify = _valid(lambda: Identify.model_validate({**envelope, "traits": call.traits}), loc)
        return Prepared(
            identify.customer_id,
            identify.traits.email is not None,
            lambda ingest: profiles.identify(ingest, identify),
        )
    if call.event not in EVENTS:
        data = {**envelope, "name": call.event, "properties": call.properties}
        event = _valid(lambda: other(data), loc)
    else:
        properties = {k: v for k, v in call.properties.items() if k not in ENVELOPE}
        data = {**properties, **envelope}
        event = _valid(lambda: ready(call.event, data, context=FROM_SEGMENT), (*loc, "properties"))
    return Prepared(event.customer_id, False, event.run)


def _valid(validate: Callable[[], T], loc: tuple[Any, ...]) -> T:
    try:
        return validate()
    except ValidationError as exc:
        raise CallInvalid([_located(err, loc) for err in exc.errors()]) from exc


def _located(err: Any, loc: tuple[Any, ...]) -> dict[str, Any]:
    """Where the caller wrote the field: envelope fields by Segment's name, the rest under
    ``loc`` (``body.properties``, ``body`` for traits)."""
    where = list(err["loc"])
    if where and where[0] in SEGMENT_NAMES:
        body = [x for x in loc if x != "properties"]
        where = [*body, SEGMENT_NAMES[where[0]], *where[1:]]
    else:
        where = [*loc, *where]
    return {"loc": where, "msg": err["msg"], "type": err["type"]}
