"""What the routes share, as FastAPI dependencies: settings, the signed links, the Python
API (``Journeys``) behind them, and the write key the ingestion routes require."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Annotated

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


def write_key(request: Request, settings: SettingsDep) -> None:
    """The write key as the HTTP Basic user name (as Segment sends it) or a Bearer token."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    key: str | None = None
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = None
    elif scheme.lower() == "bearer":
        key = value.strip()
    if not key or not hmac.compare_digest(key.encode(), settings.api_write_key.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or wrong write key: send it as the HTTP Basic user name "
            "(as Segment does) or as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Basic realm="shop-journeys"'},
        )
