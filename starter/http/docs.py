"""The API's docs from this process alone: Swagger UI at /docs, ReDoc at /redoc, their
scripts and styles served from ``static/docs/`` (FastAPI's defaults load them from a CDN,
so /docs was a blank page on a machine without internet).

The assets are copies of the npm packages swagger-ui-dist 5.35.0 and redoc 2.5.4 (licenses
beside them); ``scripts/vendor_docs_assets.sh`` fetches them again at the versions it names.
Nothing else is loaded: no Google fonts for ReDoc, no favicon from FastAPI's site, Swagger
UI's online validator badge is off, and a Content-Security-Policy lets the browser load from
this origin only (ReDoc's sidebar asks for a Redocly logo on a CDN: the browser never sends
that request, and ReDoc hides the image).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "static" / "docs"
PREFIX = "/static/docs"
# The pages' inline bootstrap scripts and styles, the bundles' schema compilers (eval) and
# ReDoc's search worker (a blob) are allowed; anything from another origin is not.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'"
)


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def serve_docs(app: FastAPI) -> None:
    """Add /docs, /docs/oauth2-redirect, /redoc and the assets to an app created with
    ``docs_url=None, redoc_url=None``."""
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _own_origin_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url="/docs/oauth2-redirect",
                swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
                swagger_css_url=f"{PREFIX}/swagger-ui.css",
                swagger_favicon_url=f"{PREFIX}/favicon-32x32.png",
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _own_origin_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{PREFIX}/redoc.standalone.js",
                redoc_favicon_url=f"{PREFIX}/favicon-32x32.png",
                with_google_fonts=False,
            )
        )
