"""What the routes share, as FastAPI dependencies: settings, the signed links, the Python
API (``Journeys``) behind them, and the write key the ingestion routes require."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from core.links import Links
from settings import Settings
from starter.api import Journeys


def the_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def the_links(request: Request) -> Links:
    return request.app.state.links  # type: ignore[no-any-return]


def the_journeys(request: Request) -> Journeys:
    return request.app.state.journeys  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(the_settings)]
LinksDep = Annotated[Links, Depends(the_links)]
JourneysDep = Annotated[Journeys, Depends(the_journeys)]


def unauthorized() -> HTTPException:
    return HTTPException(
        status_code=401,
        detail="missing or wrong write key: send it as the HTTP Basic user name (as Segment "
        "does), as 'Authorization: Bearer <key>', or as \"writeKey\" in the JSON body",
        headers={"WWW-Authenticate": 'Basic realm="shop-journeys"'},
    )


def header_write_key(request: Request) -> str | None:
    """The write key of the Authorization header: the HTTP Basic user name (as Segment
    sends it) or a Bearer token; "" for a header that holds none; None without a header."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    if scheme.lower() == "bearer":
        return value.strip()
    return ""


class CallInvalid(Exception):
    """A body or call that must not be recorded: 422 with ``errors``, FastAPI-style
    {loc, msg, type}, naming where the caller wrote the field."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def invalid(loc: list[Any] | tuple[Any, ...], msg: str, kind: str) -> CallInvalid:
    """One error at ``loc``: ``raise invalid(["body", "batch"], "...", "too_long")``."""
    return CallInvalid([{"loc": list(loc), "msg": msg, "type": kind}])
