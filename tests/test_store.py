"""The data layer under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.exc import OperationalError

from store import products
from store.db import readers
from store.models import Product


async def test_concurrent_events_about_a_new_product_neither_collide_nor_lose_counts(sessions):
    sku = f"NEW-{uuid.uuid4().hex[:8]}"
    line = {"sku": sku, "name": "Brand new", "price": "5.00", "quantity": 2, "category": "x"}

    async def order() -> None:
        async with sessions.begin() as s:
            await products.upsert_products(s, lines=[line], ordered=True)

    async def view() -> None:
        async with sessions.begin() as s:
            await products.upsert_products(s, lines=[{**line, "name": "Brand new (renamed)"}])

    await asyncio.gather(*(order() for _ in range(5)), *(view() for _ in range(5)))

    async with sessions() as s:
        product = await s.get(Product, sku)
    assert product is not None
    assert product.times_ordered == 10  # 5 orders x 2, none lost
    assert product.category == "x" and product.name in ("Brand new", "Brand new (renamed)")


async def test_a_reader_holds_up_no_writer_and_a_reader_that_writes_late_is_told(sessions):
    """SQLite: a transaction of ``readers`` takes no lock, so a writer commits while it is
    open (the commit of ``sent`` after a 250 waits for no reader); its own write after that
    commit fails at once with ``database is locked`` (it read an older snapshot).
    PostgreSQL: ``readers`` are the sessions themselves."""
    if sessions.kw["bind"].dialect.name != "sqlite":
        assert readers(sessions) is sessions
        return
    sku = f"R-{uuid.uuid4().hex[:8]}"
    line = {"sku": sku, "name": "Read me", "price": "5.00", "quantity": 1, "category": "x"}
    async with readers(sessions).begin() as reading:
        assert await reading.get(Product, sku) is None
        async with sessions.begin() as writing:  # BEGIN IMMEDIATE: would wait 30 s on a writer
            await products.upsert_products(writing, lines=[line])
        with pytest.raises(OperationalError) as late:
            await products.upsert_products(reading, lines=[{**line, "name": "Stale"}])
            await reading.flush()
    assert "database is locked" in str(late.value.orig)  # SQLITE_BUSY_SNAPSHOT
    async with sessions() as s:
        product = await s.get(Product, sku)
    assert product is not None and product.name == "Read me"
