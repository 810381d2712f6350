"""The data layer under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

from store import products
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
