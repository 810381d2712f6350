#!/usr/bin/env bash
# Fetch the API docs' assets again (starter/http/static/docs/, served by starter/http/docs.py):
# Swagger UI and ReDoc from the npm registry, at the versions named here, with their licenses.
#
#   scripts/vendor_docs_assets.sh        (needs npm; bump the versions, run, commit the files)
set -euo pipefail

SWAGGER_UI=5.35.0
REDOC=2.5.4
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/starter/http/static/docs"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "swagger-ui-dist@$SWAGGER_UI" "redoc@$REDOC" >/dev/null
mkdir swagger redoc
tar xzf "swagger-ui-dist-$SWAGGER_UI.tgz" -C swagger
tar xzf "redoc-$REDOC.tgz" -C redoc
mkdir -p "$OUT"
cp swagger/package/swagger-ui-bundle.js swagger/package/swagger-ui-bundle.js.LICENSE.txt \
  swagger/package/swagger-ui.css swagger/package/favicon-32x32.png "$OUT/"
cp swagger/package/LICENSE "$OUT/swagger-ui.LICENSE"
cp redoc/package/bundles/redoc.standalone.js redoc/package/bundles/redoc.standalone.js.LICENSE.txt \
  "$OUT/"
cp redoc/package/LICENSE "$OUT/redoc.LICENSE"
echo "swagger-ui-dist $SWAGGER_UI and redoc $REDOC in $OUT"
