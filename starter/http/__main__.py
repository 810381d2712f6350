"""python -m starter.http: the HTTP service on API_HOST:API_PORT."""

from __future__ import annotations

import uvicorn

from observability import configure_logging
from settings import get_settings
from starter.http import create_app


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,  # our handlers (LOG_FORMAT), not uvicorn's own
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
