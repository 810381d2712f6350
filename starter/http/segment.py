"""Segment's calls (https://segment.com/docs/connections/spec/) and how one becomes an event
of the table, validated before anything is recorded.

Every call type of the spec is accepted: ``identify`` and ``track`` with a ``userId`` are
used; ``page``, ``screen``, ``group`` and ``alias`` calls, and calls with only an
``anonymousId``, are accepted and ignored, and the answer says so per call ("ignored: page
calls are not used"), so one of them never costs a batch its good calls. Identify traits
may come in ``traits`` or ``context.traits`` (RudderStack puts them there); ``traits``
wins. ``timestamp`` is corrected for the client's clock skew with ``sentAt`` as Segment
does; other envelope fields (integrations, ...) are ignored. The event itself
(traits, properties) is validated once, by its model; an error names the field where the
caller wrote it (``body.properties.order_id``).

Names and addresses end up in email headers (To, Subject): a CR, LF, NUL or other control
character in a field named like one (email, name, firstName, ...) anywhere in traits or
properties, or in an event's name, is refused with 422 naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from starter.http.deps import CallInvalid, invalid
from starter.ingest import profiles
from starter.ingest.events import ENVELOPE, FROM_SEGMENT, Id, Identify, event_time
from starter.ingest.service import EventResult, Ingest
from starter.ingest.table import EVENTS, other, ready

T = TypeVar("T")
_LOOSE = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)
# Our names of the envelope's fields -> Segment's.
SEGMENT_NAMES = {"customer_id": "userId", "message_id": "messageId", "occurred_at": "timestamp"}
UNUSED = ("page", "screen", "group", "alias")  # call types we accept and do not use
ANONYMOUS = "ignored: calls without a userId (anonymousId only) are not used"

Loc = tuple[Any, ...]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp needs a time zone offset (e.g. 2026-11-22T10:00:00Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00:00+01:00 is before the first UTC day
        raise ValueError("timestamp out of range") from exc


Timestamp = Annotated[datetime, AfterValidator(_utc)]  # a Segment time, in UTC


def _as_text(value: Any) -> Any:
    """Some libraries send numeric ids; Segment's spec has strings."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Call(BaseModel):
    model_config = _LOOSE

    user_id: Annotated[Id | None, BeforeValidator(_as_text)] = Field(
        None, validation_alias=AliasChoices("userId", "user_id")
    )
    anonymous_id: str | int | None = Field(
        None, validation_alias=AliasChoices("anonymousId", "anonymous_id")
    )
    message_id: str | None = Field(
        None, min_length=1, max_length=200, validation_alias=AliasChoices("messageId", "message_id")
    )
    timestamp: Timestamp | None = None
    # The client's clocks and Segment's receipt: the event's time is corrected for clock
    # skew with them (starter.ingest.events.event_time).
    original_timestamp: Timestamp | None = Field(
        None, validation_alias=AliasChoices("originalTimestamp", "original_timestamp")
    )
    sent_at: Timestamp | None = Field(None, validation_alias=AliasChoices("sentAt", "sent_at"))
    received_at: Timestamp | None = Field(
        None, validation_alias=AliasChoices("receivedAt", "received_at")
    )
    context: dict[str, Any] | None = None

    def envelope(self) -> dict[str, Any]:
        out: dict[str, Any] = {"customer_id": self.user_id, "message_id": self.message_id}
        if self.timestamp is not None or self.original_timestamp is not None:
            out["occurred_at"] = event_time(
                timestamp=self.timestamp,
                original_timestamp=self.original_timestamp,
                sent_at=self.sent_at,
                received_at=self.received_at,
            )
        return out


class IdentifyCall(_Call):
    """Create or update a customer; the first identify of a customer needs an email."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None

    def all_traits(self) -> dict[str, Any]:
        """``context.traits`` (where RudderStack sends them) under ``traits``."""
        in_context = (self.context or {}).get("traits")
        return {**(in_context if isinstance(in_context, dict) else {}), **(self.traits or {})}


class TrackCall(_Call):
    """An event: one of the table's names (README "Events") or any other, recorded only."""

    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=100)
    properties: dict[str, Any] | None = None


class UnusedCall(_Call):
    """A page, screen, group or alias call: accepted and ignored."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["page", "screen", "group", "alias"]


class SingleCall(BaseModel):
    """What every single-call endpoint also reads: the write key, if not in a header."""

    write_key: str | None = Field(None, validation_alias=AliasChoices("writeKey", "write_key"))


class IdentifyBody(IdentifyCall, SingleCall):
    pass


class TrackBody(TrackCall, SingleCall):
    pass


class UnusedBody(SingleCall):
    model_config = ConfigDict(extra="allow")


Call = Annotated[IdentifyCall | TrackCall | UnusedCall, Field(discriminator="type")]


class BatchCall(SingleCall):
    """Up to API_BATCH_MAX calls, each with its ``type``, run in order."""

    model_config = _LOOSE

    batch: list[Call] = Field(min_length=1)


@dataclass(frozen=True)
class Prepared:
    """A validated call, ready to run on the ingestion service."""

    customer_id: str
    introduces: bool  # an identify with an email: the customer exists after it
    run: Callable[[Ingest], Awaitable[EventResult]]


@dataclass(frozen=True)
class Ignored:
    """A call accepted and not used; ``action`` says why."""

    action: str


def prepare_call(data: Any, kind: str | None, loc: Loc = ("body",)) -> Prepared | Ignored:
    """Validate one call before anything is recorded. ``kind`` is the endpoint's call type;
    None (a batch) reads the call's own ``type``."""
    if not isinstance(data, dict):
        raise invalid(loc, "a call is a JSON object", "dict_type")
    kind = kind or data.get("type")
    if kind in UNUSED:
        return Ignored(f"ignored: {kind} calls are not used")
    if kind not in ("identify", "track"):
        msg = "type must be one of identify, track, page, screen, group, alias"
        raise invalid([*loc, "type"], msg, "literal_error")
    model = IdentifyCall if kind == "identify" else TrackCall
    call = _valid(lambda: model.model_validate(data), loc)
    if call.user_id is None:
        if call.anonymous_id is None:
            raise invalid([*loc, "userId"], "userId or anonymousId is required", "missing")
        return Ignored(ANONYMOUS)
    if isinstance(call, IdentifyCall):
        return _prepare_identify(call, loc)
    return _prepare_track(call, loc)


def _prepare_identify(call: IdentifyCall, loc: Loc) -> Prepared:
    _header_safe(call.traits or {}, (*loc, "traits"))
    _header_safe((call.context or {}).get("traits"), (*loc, "context", "traits"))
    data = {**call.envelope(), "traits": call.all_traits()}
    identify = _valid(lambda: Identify.model_validate(data), loc)
    return Prepared(
        identify.customer_id,
        identify.traits.email is not None,
        lambda ingest: profiles.identify(ingest, identify),
    )


def _prepare_track(call: TrackCall, loc: Loc) -> Prepared:
    _header_safe({"event": call.event}, loc, frozenset({"event"}))
    _header_safe(call.properties or {}, (*loc, "properties"))
    envelope = call.envelope()
    if call.event not in EVENTS:
        data = {**envelope, "name": call.event, "properties": call.properties or {}}
        event = _valid(lambda: other(data), loc)
    else:
        properties = {k: v for k, v in (call.properties or {}).items() if k not in ENVELOPE}
        data = {**properties, **envelope}
        event = _valid(lambda: ready(call.event, data, context=FROM_SEGMENT), (*loc, "properties"))
    assert call.user_id is not None  # checked by prepare_call
    return Prepared(call.user_id, False, event.run)


# -- control characters in what goes into an email header ----------------------------------

HEADER_BOUND = frozenset({"email", "name", "firstName", "first_name", "lastName", "last_name"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _header_safe(value: Any, loc: Loc, names: frozenset[str] = HEADER_BOUND) -> None:
    """Refuse a control character in a string under one of ``names``, at any depth."""
    stack: list[tuple[Any, Loc]] = [(value, loc)] if isinstance(value, dict | list) else []
    while stack:
        node, where = stack.pop()
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str) and key in names and (bad := _CONTROL.search(item)):
                msg = f"control character U+{ord(bad.group()):04X} is not allowed: names and "
                msg += "addresses go into email headers"
                raise invalid([*where, key], msg, "control_character")
            if isinstance(item, dict | list):
                stack.append((item, (*where, key)))


# -- errors where the caller wrote the field ------------------------------------------------


def _valid(validate: Callable[[], T], loc: Loc) -> T:
    try:
        return validate()
    except ValidationError as exc:
        raise CallInvalid([_located(err, loc) for err in exc.errors()]) from exc


def _located(err: Any, loc: Loc) -> dict[str, Any]:
    """Where the caller wrote the field: envelope fields by Segment's name, the rest under
    ``loc`` (``body.properties``, ``body`` for traits)."""
    where = list(err["loc"])
    if where and where[0] in SEGMENT_NAMES:
        body = [x for x in loc if x != "properties"]
        where = [*body, SEGMENT_NAMES[where[0]], *where[1:]]
    else:
        where = [*loc, *where]
    return {"loc": where, "msg": err["msg"], "type": err["type"]}
