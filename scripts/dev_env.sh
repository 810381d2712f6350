#!/bin/sh
# `make setup`: a checkout made for development says so in `.env` (gitignored, not in the
# image), so `uv run python -m starter ...` typed in a fresh shell accepts the placeholder
# secrets: an unset ENVIRONMENT is production (settings.py). Never over an existing .env.
set -eu
cd "$(dirname "$0")/.."
[ -e .env ] && exit 0
cat > .env <<'DOTENV'
# Written by `make setup`: this checkout is for development (README, Configuration).
# A real deployment sets ENVIRONMENT=production in its environment, which wins over this file.
ENVIRONMENT=development
DOTENV
