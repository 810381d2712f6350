"""The little HTML the recipient sees (unsubscribe, stay) and the no-cache headers."""

from __future__ import annotations

NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


def page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"></head>
<body style="font-family:Arial,Helvetica,sans-serif;max-width:520px;margin:40px auto">
<h1>{title}</h1>
{body}
</body></html>"""
