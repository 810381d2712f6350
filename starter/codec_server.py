"""The codec server: the Temporal UI and CLI decode encrypted payloads through it.

``python -m starter.codec_server`` (started by ``make run``) serves on
CODEC_SERVER_HOST:CODEC_SERVER_PORT:

- ``POST /decode`` and ``POST /encode``: a body ``{"payloads": [{"metadata": {...}, "data":
  "<base64>"}]}`` (the protobuf JSON form of ``temporal.api.common.v1.Payloads``), answered in
  the same form; payloads that are not encrypted come back unchanged.
- CORS for CODEC_SERVER_ORIGINS (the UI's origin: the browser calls us, not the UI server).
- ``Authorization: Bearer <CODEC_SERVER_TOKEN>`` checked when the token is set (it must be
  outside development); preflight requests carry no credentials and are not checked.

Point a UI at it with the UI's codec endpoint setting (``TEMPORAL_CODEC_ENDPOINT`` of the UI
server, or the browser's "Codec Server" settings), and the CLI with ``--codec-endpoint
http://host:port --codec-auth "Bearer <token>"``. Anyone who can call /decode reads every
history: keep it on the operators' network. After temporalio/samples-python
``encryption/codec_server.py``.
"""

from __future__ import annotations

import hmac
import logging

import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from core.codec import EncryptionCodec, KeyRing, PayloadKeyError
from observability import configure_logging
from settings import Settings, get_settings

log = logging.getLogger("codec_server")


def create_app(settings: Settings) -> Starlette:
    ring = KeyRing.parse(settings.payload_keys)
    if ring is None:
        raise SystemExit("PAYLOAD_KEYS is empty: there is nothing to decode")
    codec = EncryptionCodec(ring)
    token = settings.codec_server_token

    def authorized(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    async def handle(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except (json_format.ParseError, DecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"not a Payloads JSON: {exc}"}, status_code=400)
        try:
            if request.url.path.endswith("/decode"):
                out = await codec.decode(payloads.payloads)
            else:
                out = await codec.encode(payloads.payloads)
        except PayloadKeyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except Exception:  # a payload that does not decrypt: tampered or a wrong key
            log.warning("codec: payload did not decrypt", exc_info=True)
            return JSONResponse({"error": "a payload did not decrypt"}, status_code=422)
        body = json_format.MessageToJson(Payloads(payloads=out))
        return Response(body, media_type="application/json")

    origins = [o.strip() for o in settings.codec_server_origins.split(",") if o.strip()]
    return Starlette(
        routes=[
            Route("/decode", handle, methods=["POST"]),
            Route("/encode", handle, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["POST"],
                allow_headers=["Content-Type", "X-Namespace", "Authorization"],
                allow_credentials=True,
            )
        ],
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    if not settings.codec_server_token and settings.environment not in ("development", "test"):
        raise SystemExit(
            "CODEC_SERVER_TOKEN is not set: outside development the codec server checks a "
            "bearer token (anyone who can call /decode reads every history)"
        )
    uvicorn.run(
        create_app(settings),
        host=settings.codec_server_host,
        port=settings.codec_server_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
