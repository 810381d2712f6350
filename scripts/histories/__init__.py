"""The branches scripts/record_histories.py records, one module per journey.

Each module names its ``JOURNEY`` and maps branch names to ``Branch``es in ``BRANCHES``: an
``async def <branch>(stack, cid) -> handle`` that drives one customer's run the way a shop does
(and checks what it can on the way), the outcome the run must end with and, where it is fixed,
the steps it must have sent (``own_store=True``: on a fresh store of its own, for branches the
daily sweep drives). Shared checks are in ``histories.common``; the sweep's helpers (lapsed
customers, a sweep with a fixed "today") in ``histories.daily_sweep``.
"""
