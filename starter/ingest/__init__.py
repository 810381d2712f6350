"""The ingestion service: one table from Segment event name to (model, handler).

``events`` holds one model per event kind, ``table`` maps names to them, and each concern
has its handlers (``profiles``, ``carts``, ``orders``, ``browsing``, ``consent``,
``engagement``); ``runs`` is how they reach Temporal and ``service`` what they share.
"""
